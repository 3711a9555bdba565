"""Z-Image (Turbo: a distilled flow NextDiT with Z-Image's modulation, 16-channel Flux latent, shift 3,
Qwen3-4B captions).

Built in the server: ComfyUI detects Z-Image only at its real width (``supported_models.ZImage``
matches dim 3840, which also sets its 30 heads, rotary axes [32, 48, 48], FFN 8/3 and caption pad
token), so the DiT is ``supported_models.ZImage`` with that layout at small dims (see ``lumina2``): 2
heads of 128 with the real axes [32, 48, 48] (width 256: Z-Image's modulation input is 256 wide,
so no narrower model builds), rope theta 256, time scale 1000, caption / image pad tokens every
32; the caption input stays 2560 wide (Qwen3-4B's hidden size; its config is fixed in ComfyUI, so
the prompts are conditioning of that shape with the encoder's attention_mask).  The VAE is Flux's
16-channel KL autoencoder built in the server as VAELoader does, at width 32 (``_build.small_kl_vae``).
Distilled: cfg 1.
"""
from . import Family
from ._build import ROUND_TRIP, shift_check
from .lumina2 import SIZE, nextdit_build, nextdit_load

DIT = {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 256, "cap_feat_dim": 2560,
       "n_layers": 1, "n_refiner_layers": 1, "qk_norm": True, "n_heads": 2, "n_kv_heads": 2,
       "axes_dims": [32, 48, 48], "axes_lens": [1536, 512, 512], "rope_theta": 256.0,
       "ffn_dim_multiplier": 8.0 / 3.0, "z_image_modulation": True, "time_scale": 1000.0, "pad_tokens_multiple": 32}


FAMILY = Family(
    name="z_image", title="Z-Image", load=nextdit_load("z_image", cfg=1.0),
    build=lambda: nextdit_build("ZImage", DIT, 2560, seed=60),
    latent_shape=(1, 16, SIZE // 8, SIZE // 8),
    conditioning_checks=lambda: [shift_check("ModelSamplingAuraFlow", 3.0, 1.0)],
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.ZImage: NextDiT 2 x 128 heads with Z-Image's modulation and "
                     "pad tokens); conditioning of Qwen3-4B's shape [1, tokens, 2560] + attention_mask; the "
                     "16-channel KL VAE in the server",
           "cfg": "1 (Z-Image Turbo is distilled)",
           "scheduler": "simple (ComfyUI's Z-Image Turbo template: res_multistep / simple, ModelSamplingAuraFlow 3)",
           "steps": "9 (the template; distilled), inversion on the same 9",
           "refine_steps": "3-5: at the template's 9 steps (shift 3) the plain inversion is the furthest off of these"
                           " rows: 2.4e-1 / 6.7e-2 / 2.0e-2 / 6.4e-3 / 7.8e-4 at refine 0 / 1 / 2 / 3 / 5",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real weights"})
