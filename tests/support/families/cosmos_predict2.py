"""Cosmos Predict2 text-to-image (``ModelType.FLOW_COSMOS``: rectified flow on EDM-style sigmas up to
80, x = (x0 + sigma eps) / (1 + sigma); the Wan 2.1 latent format: 5-D one-frame latents; T5 (1024)
captions).

Loaded as a user's model: ComfyUI's Cosmos Predict2 detection reads the width and input channels
from the keys and takes the class defaults for any width but the real 2048 / 5120 (10 blocks of 16
heads), so the tiny DiT (``MiniTrainDIT``, width 192: 16 heads of 12, the narrowest its 3-D rotary
split takes; AdaLN-LoRA 256, 3-D rotary positions, the padding-mask channel) goes through UNETLoader,
which detects CosmosT2IPredict2.  The
VAE is the Wan 2.1 architecture at base width 8 through VAELoader.  Cosmos's T5 config is fixed in
ComfyUI, so the prompts are conditioning of its shape [1, tokens, 1024].  Not distilled: cfg 4.
"""
from . import Family, Refs, _wan
from ._build import ROUND_TRIP, cached_file, conditioning, image_refs, in_server_refs, init_

SIZE = 64
TOKENS = 12
DIT_FILE = "dream_tiny_cosmos_predict2_t2i.safetensors"
VAE = "dream_tiny_cosmos_predict2_vae.safetensors"
#: what ComfyUI's detection makes of the file (comfy.model_detection, "Cosmos predict2", width 192)
DIT = {"max_img_h": 240, "max_img_w": 240, "max_frames": 128, "in_channels": 16, "out_channels": 16,
       "patch_spatial": 2, "patch_temporal": 1, "model_channels": 192, "concat_padding_mask": True,
       "crossattn_emb_channels": 1024, "pos_emb_cls": "rope3d", "pos_emb_learnable": True,
       "pos_emb_interpolation": "crop", "min_fps": 1, "max_fps": 30, "use_adaln_lora": True, "adaln_lora_dim": 256,
       "extra_per_block_abs_pos_emb": False, "rope_h_extrapolation_ratio": 4.0, "rope_w_extrapolation_ratio": 4.0,
       "rope_t_extrapolation_ratio": 1.0, "extra_h_extrapolation_ratio": 1.0, "extra_w_extrapolation_ratio": 1.0,
       "extra_t_extrapolation_ratio": 1.0, "rope_enable_fps_modulation": False}


def dit_file():
    def make():
        import comfy.ldm.cosmos.predict2
        import comfy.ops
        m = comfy.ldm.cosmos.predict2.MiniTrainDIT(**DIT, operations=comfy.ops.disable_weight_init)
        return init_(m, 90).state_dict()
    return cached_file("diffusion_models", DIT_FILE, "v1", make)


def build():
    return (None, conditioning(91, TOKENS, 1024), conditioning(92, TOKENS, 1024), conditioning(93, TOKENS, 1024),
            None)                                   # MODEL / VAE: UNETLoader / VAELoader


def load(p) -> Refs:
    model = p.add("UNETLoader", unet_name=DIT_FILE, weight_dtype="default")
    vae = p.add("VAELoader", vae_name=VAE)
    conds = in_server_refs(p, "cosmos_predict2")
    image, latent = image_refs(p, vae, SIZE)
    return Refs(model=model, positive=conds["positive"], negative=conds["negative"],
                alt_positive=conds["alt_positive"], vae=vae, image=image, latent=latent, cfg=4.0,
                extra={"width": SIZE, "height": SIZE})


FAMILY = Family(
    name="cosmos_predict2", title="Cosmos Predict2 (text-to-image)", load=load, build=build,
    files=lambda: {"diffusion_models": [dit_file()], "vae": [_wan.vae21_file(VAE, seed=94)]},
    latent_shape=(1, 16, 1, SIZE // 8, SIZE // 8),
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "UNETLoader (CosmosT2IPredict2 detected from the keys: MiniTrainDIT width 192, 10 blocks) and "
                     "VAELoader (Wan 2.1 VAE architecture); conditioning of Cosmos's T5 shape [1, tokens, 1024]",
           "cfg": "4 (not distilled)",
           "scheduler": "simple (no Cosmos Predict2 template in the pinned ComfyUI's template package)",
           "steps": "30-35",
           "refine_steps": "3-5: measured at 30 steps (sigmas up to 80) 2.4e-1 / 6.8e-2 / 1.8e-2 / 4.7e-3 / 3.2e-4 at"
                           " refine 0 / 1 / 2 / 3 / 5",
           "edit_strength": "0.3-0.8 (invariant), as the flow models (rectified flow on EDM sigmas); not measured on "
                            "real weights"})
