"""Qwen-Image-Edit (2509 / 2511): Qwen-Image's flow DiT (``ModelType.FLUX``, the Wan 2.1 latent) whose
prompts carry the image to edit as a reference latent.  ComfyUI detects the edit checkpoints as
``supported_models.QwenImage`` (the same keys); the reference reaches the DiT as
``model_base.QwenImage``'s ``ref_latents`` (from the conditioning's ``reference_latents``, what core
ReferenceLatent and TextEncodeQwenImageEdit(Plus) set), whose tokens join the image tokens with
their own rotary index ('index', the 2509 method).

Built in the server as the Qwen-Image row (2 heads of 32, rotary axes [8, 12, 12], one block, the
3584-wide text input, the Wan 2.1 VAE at base width 8) with other seeded weights; every prompt of the
row goes through ReferenceLatent with the VAE Encode of the source image, as in ComfyUI's
Qwen-Image-Edit templates (cfg 2.5, 20 steps, ModelSamplingAuraFlow shift 3).
"""
from . import Family, Refs
from ._build import (EDIT_CELLS, NOT_EDIT_CELLS, OTHER_REFERENCE, ROUND_TRIP, conditioning, image_refs,
                     in_server_model, in_server_refs, on_prompts, other_reference_latent, sample,
                     with_reference)
from .qwen_image import DIT, SIZE, TEXT_DIM, TOKENS, VAE
from .qwen_image import FAMILY as QWEN_IMAGE



def build():
    import comfy.supported_models
    model = in_server_model(comfy.supported_models.QwenImage, DIT, seed=140)
    return (model, conditioning(141, TOKENS, TEXT_DIM), conditioning(142, TOKENS, TEXT_DIM),
            conditioning(143, TOKENS, TEXT_DIM), None)


def load(p) -> Refs:
    fam = in_server_refs(p, "qwen_image_edit")
    vae = p.add("VAELoader", vae_name=VAE)
    image, latent = image_refs(p, vae, SIZE)
    refs = Refs(model=fam["model"], positive=fam["positive"], negative=fam["negative"],
                alt_positive=fam["alt_positive"], vae=vae, image=image, latent=latent, cfg=2.5,
                extra={"width": SIZE, "height": SIZE})
    return with_reference(p, refs)


def conditioning_checks():
    def two_references(method=None):
        # TextEncodeQwenImageEditPlus's multi-image edit: a second reference appended (ReferenceLatent chains)
        def build(p, r):
            r = on_prompts(p, r, "ReferenceLatent", latent=other_reference_latent(p, r))
            return sample(p, r if method is None else on_prompts(p, r, "FluxKontextMultiReferenceLatentMethod",
                                                                  reference_latents_method=method))
        return build
    return [("ReferenceLatent_source_vs_other_image", lambda p, r: sample(p, r),
             lambda p, r: sample(p, with_reference(p, r, OTHER_REFERENCE))),
            ("ReferenceLatent_one_vs_two_images", lambda p, r: sample(p, r), two_references()),
            ("two_references_index_vs_offset", two_references("index"), two_references("offset"))]


FAMILY = Family(
    name="qwen_image_edit", title="Qwen-Image-Edit", load=load, build=build, files=QWEN_IMAGE.files,
    latent_shape=QWEN_IMAGE.latent_shape, conditioning_checks=conditioning_checks, reference=True,
    skip_features=NOT_EDIT_CELLS, extra_features=("keep_known",),
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.QwenImage as the Qwen-Image row, other weights); every "
                     "prompt through ReferenceLatent with the source image's VAE Encode",
           "skipped": "the row runs the edit cells of issue 25 (" + ", ".join(EDIT_CELLS) + "); the other "
                      "features run on the Qwen-Image row, the same DiT without a reference",
           "cfg": "2.5 (ComfyUI's Qwen-Image-Edit templates)",
           "scheduler": "simple (the templates: euler / simple 20, ModelSamplingAuraFlow shift 3)",
           "steps": "20 (the templates)",
           "refine_steps": "3 (as Qwen-Image, the same DiT; not measured with a reference)",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real weights",
           "reference": "the source image, as the same latent the edit starts from (ReferenceLatent of the "
                        "VAE Encode): the reference and the edited latent share size and grid"})
