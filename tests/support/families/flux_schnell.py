"""Flux.1-schnell (timestep-distilled flow DiT without guidance embedding, 16-channel Flux latent,
plain flow sampling: ``ModelSamplingDiscreteFlow`` shift 1, multiplier 1).

Built in the server as Flux.1-dev is (``flux_dev``: the same small layout, detection fixes 24 heads
of 128) from ``supported_models.FluxSchnell`` (``guidance_embed`` off, model type FLOW); the same
conditioning shapes (T5 [1, 256, 4096], CLIP-L pooled [1, 768]) and the real 16-channel VAE through
VAELoader.  Distilled: sampled at cfg 1 and few steps.
"""
from . import Family
from ._build import kl_vae
from .flux_dev import DIT, SIZE, flux_build, flux_load, pooled_check

SCHNELL_DIT = dict(DIT, guidance_embed=False)


def conditioning_checks():
    # schnell has no guidance input (FluxGuidance changes nothing) and no shift node of its own
    # (ModelSamplingSD3 would set the multiplier to 1000, its DiT takes timestep = sigma): its own
    # conditioning is the pooled CLIP-L vector
    return [pooled_check("flux_schnell")]


FAMILY = Family(
    name="flux_schnell", title="Flux.1-schnell", load=flux_load("flux_schnell"),
    build=lambda variant="": flux_build("FluxSchnell", SCHNELL_DIT, 50, variant),
    files=lambda: {"vae": [kl_vae(16)]}, latent_shape=(1, 16, SIZE // 8, SIZE // 8),
    conditioning_checks=conditioning_checks,
    notes={"loaded": "in the server (supported_models.FluxSchnell, the flux_dev layout without guidance); "
                     "conditioning of Flux's shapes; VAELoader with the real 16-channel VAE",
           "cfg": "1 (distilled)"})
