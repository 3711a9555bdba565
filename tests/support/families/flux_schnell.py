"""Flux.1-schnell (timestep-distilled flow DiT without guidance embedding, 16-channel Flux latent,
plain flow sampling: ``ModelSamplingDiscreteFlow`` shift 1, multiplier 1).

Built in the server as Flux.1-dev is (``flux_dev``: the same small layout, detection fixes 24 heads
of 128) from ``supported_models.FluxSchnell`` (``guidance_embed`` off, model type FLOW); the same
conditioning shapes (T5 [1, 256, 4096], CLIP-L pooled [1, 768]) and the 16-channel KL VAE.
Distilled: sampled at cfg 1 and few steps.
"""
from . import Family
from ._build import ROUND_TRIP
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
    latent_shape=(1, 16, SIZE // 8, SIZE // 8),
    conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.FluxSchnell, the flux_dev layout without guidance); "
                     "conditioning of Flux's shapes; the 16-channel KL VAE in the server",
           "cfg": "1 (distilled)",
           "steps": "4 simple to generate; 28 for inversion-based edits (its 4 large steps make the inversion "
                    "inexact)",
           "refine_steps": "5 at 4 steps, 3 at 28: measured at 4 steps 1.6e-1 / 5.3e-2 / 2.1e-2 / 6.2e-3 at refine "
                           "0 / 1 / 3 / 5; at 28 steps 1.3e-1 / 3.4e-2 / 2.4e-3 / 2.2e-4 at 0 / 1 / 3 / 5: "
                           "its unshifted grid converges more slowly than dev's",
           "edit_strength": "0.3-0.8 (flow, README table)"})
