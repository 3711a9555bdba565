"""Flux.1 Kontext [dev] (guidance-distilled flow DiT; the Flux latent): Flux.1-dev's architecture, whose
prompts carry the image to edit as a reference latent.  ComfyUI detects the Kontext checkpoint as
``supported_models.Flux``; the reference reaches the DiT as ``model_base.Flux``'s ``ref_latents`` (from
the conditioning's ``reference_latents``, core ReferenceLatent), its tokens appended to the image
tokens at a rotary offset (Flux's default 'offset' method).

Built in the server as the Flux.1-dev row (2 heads of 32, one double and one single block, Flux's
conditioning shapes, the 16-channel KL VAE at width 32) with other seeded weights; every prompt of
the row goes through ReferenceLatent with the VAE Encode of the source image, as ComfyUI's Kontext
template does (FluxGuidance 2.5, cfg 1, 20 steps).
"""
from . import Family
from ._build import (EDIT_CELLS, NOT_EDIT_CELLS, OTHER_REFERENCE, ROUND_TRIP, family_refs, on_prompts, sample,
                     with_reference)
from .flux_dev import DIT, SIZE, flux_build


def load(p):
    return with_reference(p, family_refs(p, "flux_kontext", 1.0, SIZE))


def conditioning_checks():
    def method(name):
        # the reference tokens' rotary placement (FluxKontextMultiReferenceLatentMethod; Kontext: 'offset')
        return lambda p, r: sample(p, on_prompts(p, r, "FluxKontextMultiReferenceLatentMethod",
                                                 reference_latents_method=name))
    return [("ReferenceLatent_source_vs_other_image", lambda p, r: sample(p, r),
             lambda p, r: sample(p, with_reference(p, r, OTHER_REFERENCE))),
            ("reference_method_offset_vs_uxo", method("offset"), method("uxo/uno"))]


FAMILY = Family(
    name="flux_kontext", title="Flux.1 Kontext", load=load,
    build=lambda variant="": flux_build("Flux", DIT, 150, variant),
    latent_shape=(1, 16, SIZE // 8, SIZE // 8), conditioning_checks=conditioning_checks, reference=True,
    skip_features=NOT_EDIT_CELLS, extra_features=("keep_known",),
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.Flux as the Flux.1-dev row, other weights); every prompt "
                     "through ReferenceLatent with the source image's VAE Encode",
           "skipped": "the row runs the edit cells of issue 25 (" + ", ".join(EDIT_CELLS) + "); the other "
                      "features run on the Flux.1-dev row, the same DiT without a reference",
           "cfg": "1 (guidance-distilled: FluxGuidance, 2.5 in ComfyUI's Kontext template)",
           "steps": "20 simple (the template)",
           "refine_steps": "3 (as Flux.1-dev, the same DiT; not measured with a reference)",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real weights"})
