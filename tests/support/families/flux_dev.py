"""Flux.1-dev (guidance-distilled flow DiT, 16-channel Flux latent, ModelSamplingFlux's
resolution-dependent shift, timestep = sigma).

Built in the server: ComfyUI's Flux detection fixes 24 heads with rotary axes [16, 56, 56] (hidden
3072), so the DiT is ``supported_models.Flux`` (``model_base.Flux``, guidance embedding on) with the
same layout at small dims: 2 heads of 32 with axes [4, 14, 14], one double and one single block; its
T5-XXL and CLIP-L text encoders are fixed-size, so the conditioning has CLIPTextEncode's Flux shapes
(T5 context [1, 256, 4096], CLIP-L pooled_output [1, 768]; guidance from FluxGuidance, 3.5 when
absent).  The VAE is the 16-channel KL autoencoder (the Flux / SD3 architecture: no quant convs)
built in the server as VAELoader does, at width 32 (``_build.small_kl_vae``).  Distilled: sampled at cfg 1.
"""
from . import Family, Refs
from ._build import ROUND_TRIP, conditioning, family_refs, in_server_model, in_server_refs, sample, small_kl_vae

SIZE = 64
DIT = {"image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16, "vec_in_dim": 768,
       "context_in_dim": 4096, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": 1,
       "depth_single_blocks": 1, "axes_dim": [4, 14, 14], "theta": 10000, "patch_size": 2, "qkv_bias": True}


def flux_cond(seed, pooled=True):
    return conditioning(seed, 256, 4096, pooled=768 if pooled else None)


def flux_build(config_name: str, unet_config: dict, seed: int, variant: str = ""):
    """(MODEL, positive, negative, alt_positive, VAE) of a Flux-layout family; variant ``pooled``:
    the positive's T5 context with another CLIP-L pooled output (and no model or VAE)."""
    import comfy.supported_models
    if variant == "pooled":
        pos = flux_cond(seed + 1)
        pos[0][1]["pooled_output"] = flux_cond(seed + 4)[0][1]["pooled_output"]
        return None, pos, flux_cond(seed + 2), flux_cond(seed + 3), None
    model = in_server_model(getattr(comfy.supported_models, config_name), unet_config, seed=seed)
    return model, flux_cond(seed + 1), flux_cond(seed + 2), flux_cond(seed + 3), small_kl_vae(16, seed + 5)


def flux_load(name: str, cfg: float = 1.0):
    def load(p) -> Refs:
        return family_refs(p, name, cfg, SIZE)
    return load


def pooled_check(name: str):
    return ("pooled_output", lambda p, r: sample(p, r),
            lambda p, r: sample(p, r, positive=in_server_refs(p, name, "pooled")["positive"]))


def conditioning_checks():
    def guidance(g):
        return lambda p, r: sample(p, r, positive=p.add("FluxGuidance", conditioning=r.positive, guidance=g))

    def flux_shift(width):
        return lambda p, r: sample(p, r, model=p.add("ModelSamplingFlux", model=r.model, max_shift=1.15,
                                                     base_shift=0.5, width=width, height=width))
    return [("FluxGuidance_1_vs_4", guidance(1.0), guidance(4.0)),
            ("ModelSamplingFlux_256_vs_1024", flux_shift(256), flux_shift(1024)),
            pooled_check("flux_dev")]


FAMILY = Family(
    name="flux_dev", title="Flux.1-dev", load=flux_load("flux_dev"),
    build=lambda variant="": flux_build("Flux", DIT, 30, variant),
    latent_shape=(1, 16, SIZE // 8, SIZE // 8),
    conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.Flux, 2 x 32 heads); conditioning of Flux's shapes "
                     "(T5 [1, 256, 4096] + pooled 768; FluxGuidance); the 16-channel KL VAE in the server",
           "cfg": "1 (guidance-distilled: the guidance is FluxGuidance's, 3.5 when absent)",
           "steps": "28 simple (ModelSamplingFlux's resolution shift; 50 for a closer inversion)",
           "refine_steps": "3: measured at 28 steps 4.7e-2 / 6.1e-3 / 1.3e-3 / 2.6e-4 / 1.1e-5 at refine 0 / 1 / "
                           "2 / 3 / 5, at 50 steps 2.6e-2 / 1.8e-3 / 2.1e-4 / 2.4e-5 at 0-3",
           "edit_strength": "0.3-0.8 (flow, README table); at cfg 1 the edit term is the only prompt push"})
