"""Qwen-Image (flow DiT, ``ModelType.FLUX``: timestep = sigma, ModelSamplingFlux's shift 1.15; the
Wan 2.1 latent format: 16-channel 5-D latents [B, 16, 1, H/8, W/8] normalized by per-channel mean / std).

Built in the server: ComfyUI's detection reads only ``in_channels`` and the block count from the keys
(24 heads of 128, joint attention width 3584 are the class defaults), so the DiT is
``supported_models.QwenImage`` (``model_base.QwenImage``) with the same layout at small dims: 2 heads
of 32 with rotary axes [8, 12, 12], one block; the text input stays 3584 wide.  Qwen2.5-VL-7B's config
is fixed in ComfyUI (no tiny text encoder loads), so the prompts are conditioning of its shape
[1, tokens, 3584].  The VAE is the real Wan 2.1 architecture (Qwen-Image's VAE) at base width 8,
through VAELoader.  Not distilled: sampled at cfg 2.5 as ComfyUI's Qwen-Image template.
"""
from . import Family, Refs, _wan
from ._build import ROUND_TRIP, conditioning, image_refs, in_server_model, in_server_refs, shift_check

SIZE = 64
TEXT_DIM = 3584                   # Qwen2.5-VL-7B hidden size
TOKENS = 12
VAE = "dream_tiny_qwen_image_vae.safetensors"
DIT = {"image_model": "qwen_image", "in_channels": 64, "out_channels": 16, "num_layers": 1, "patch_size": 2,
       "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": TEXT_DIM,
       "axes_dims_rope": (8, 12, 12)}


def build():
    import comfy.supported_models
    model = in_server_model(comfy.supported_models.QwenImage, DIT, seed=40)
    return (model, conditioning(41, TOKENS, TEXT_DIM), conditioning(42, TOKENS, TEXT_DIM),
            conditioning(43, TOKENS, TEXT_DIM), None)


def load(p) -> Refs:
    fam = in_server_refs(p, "qwen_image")
    vae = p.add("VAELoader", vae_name=VAE)
    image, latent = image_refs(p, vae, SIZE)
    return Refs(model=fam["model"], positive=fam["positive"], negative=fam["negative"],
                alt_positive=fam["alt_positive"], vae=vae, image=image, latent=latent, cfg=2.5,
                extra={"width": SIZE, "height": SIZE})


def conditioning_checks():
    # ComfyUI's Qwen-Image template patches the model with ModelSamplingAuraFlow (shift 3.1)
    return [shift_check("ModelSamplingAuraFlow", 3.1, 1.0)]


FAMILY = Family(
    name="qwen_image", title="Qwen-Image", load=load, build=build,
    files=lambda: {"vae": [_wan.vae21_file(VAE, seed=44)]},
    latent_shape=(1, 16, 1, SIZE // 8, SIZE // 8), conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.QwenImage, 2 x 32 heads, one block); conditioning of "
                     "Qwen2.5-VL-7B's shape [1, tokens, 3584]; VAELoader with the Wan 2.1 VAE architecture",
           "cfg": "2.5 (ComfyUI's template; not distilled)",
           "scheduler": "simple (ComfyUI's template: euler / simple, ModelSamplingAuraFlow shift 3.1)",
           "steps": "20 (ComfyUI's template); inversion and DreamSampler on the same steps / scheduler / shift",
           "refine_steps": "2-3: measured at 20 steps (simple, shift 1.15) 5.3e-2 / 1.1e-2 / 2.9e-3 / 7.9e-4 / 5.2e-5"
                           " at refine 0 / 1 / 2 / 3 / 5; a flow model: the step into sigma = 1 needs the refinement",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; cfg 1 on the base when editing an "
                            "inverted image (2.5 is the generation cfg); not measured on real Qwen-Image weights",
           "unsampling": "DreamSampler / the Dream SAMPLERs start from the inverted latent as it is; a sampler that "
                         "noise-scales it by 1 - sigma (0 at sigma = 1) starts from the zero latent, whose Wan 2.1 "
                         "mean decodes to a flat (black) image: the reported 'black images' "
                         "(tests/comfy/test_qwen_image.py)"})
