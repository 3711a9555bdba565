"""Chroma (Flux-derived flow DiT: no pooled vector, modulations from the distilled-guidance
approximator, T5 only; real CFG with a negative prompt; 16-channel Flux latent).

Built in the server: ComfyUI's Chroma detection fixes the approximator (in 64, hidden 5120, out
3072, 5 layers) and Flux's 24 heads of 128, so the DiT is ``supported_models.Chroma``
(``model_base.Chroma``) with the same layout at small dims (hidden 64 = 2 heads of 32, axes
[4, 14, 14], one double and one single block, a 2-layer approximator of width 64; 64 input channels:
16 latent channels packed 2 x 2).  The T5-XXL encoder is fixed-size, so the conditioning has
Chroma's CLIPTextEncode shapes: T5 without padding, so the prompts differ in length (positive 12
tokens, the empty negative 1, the other prompt 9 x 4096).  The VAE is Flux's 16-channel KL
autoencoder built in the server as VAELoader does, at width 32 (``_build.small_kl_vae``).
"""
from . import Family
from ._build import ROUND_TRIP, conditioning, sample, small_kl_vae
from .flux_dev import SIZE, flux_load

DIT = {"image_model": "chroma", "in_channels": 64, "out_channels": 64, "context_in_dim": 4096, "hidden_size": 64,
       "mlp_ratio": 4.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "axes_dim": [4, 14, 14],
       "theta": 10000, "patch_size": 2, "qkv_bias": True, "in_dim": 64, "out_dim": 64, "hidden_dim": 64,
       "n_layers": 2}
CFG = 4.0


def _t5(seed, tokens):
    """CLIPTextEncode's output for a T5-only encoder: no pooled vector (``pooled_output`` None)."""
    return conditioning(seed, tokens, 4096, pooled_output=None)


def build(variant: str = ""):
    import comfy.supported_models

    from ._build import in_server_model
    model = in_server_model(comfy.supported_models.Chroma, DIT, seed=60)
    return model, _t5(61, 12), _t5(62, 1), _t5(63, 9), small_kl_vae(16, 65)


def conditioning_checks():
    # not distilled: at Chroma's CFG the negative prompt reaches the model
    return [("negative_prompt_at_cfg", lambda p, r: sample(p, r, cfg=CFG),
             lambda p, r: sample(p, r, cfg=CFG, negative=r.alt_positive))]


FAMILY = Family(
    name="chroma", title="Chroma", load=flux_load("chroma", cfg=CFG), build=build,
    latent_shape=(1, 16, SIZE // 8, SIZE // 8),
    conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.Chroma, small approximator and DiT); unpadded T5 "
                     "conditioning of three lengths; the 16-channel KL VAE in the server",
           "cfg": "4 (Chroma is not guidance-distilled: real CFG with a negative prompt)",
           "steps": "28-40 simple (Flux's shifted flow grid)",
           "refine_steps": "3: measured at 28 steps 4.1e-2 / 6.6e-3 / 1.4e-3 / 2.7e-4 / 1.1e-5 at refine 0 / 1 / 2 "
                           "/ 3 / 5",
           "edit_strength": "0.3-0.8 (flow, README table)"})
