"""Wan 2.1 text-to-video (flow, 16-channel 5-D latents [B, 16, T', H/8, W/8], T' = 1 + (T - 1) / 4).

Loaded as a user's model: the tiny Wan DiT through UNETLoader (ComfyUI detects WAN21_T2V from the
keys) and the tiny Wan 2.1 VAE through VAELoader; the UMT5-XXL prompts are conditioning of the right
shape from TestFamilyModel (outputs 1..3; see ``_wan``).  The image is 5 frames of 32x32 pixels
(EmptyImage batch = frames), which the video VAE encodes to one [1, 16, 2, 4, 4] latent.
"""
from . import Family, Refs, _wan

SIZE = 32
DIT = "dream_tiny_wan21_t2v.safetensors"
VAE = "dream_tiny_wan21_vae.safetensors"


def files():
    return {"diffusion_models": [_wan.dit_file(DIT, 16, seed=11)], "vae": [_wan.vae21_file(VAE, seed=12)]}


def build():
    positive, negative, alt = _wan.prompts(13)
    return None, positive, negative, alt, None          # MODEL / VAE: UNETLoader / VAELoader


def load(p) -> Refs:
    model = p.add("UNETLoader", unet_name=DIT, weight_dtype="default")
    vae = p.add("VAELoader", vae_name=VAE)
    conds = p.add("TestFamilyModel", family="wan21")
    image = p.add("EmptyImage", width=SIZE, height=SIZE, batch_size=_wan.FRAMES, color=0x4080C0)
    return Refs(model=model, vae=vae, image=image, latent=p.add("VAEEncode", pixels=image, vae=vae),
                positive=p.out(conds, 1), negative=p.out(conds, 2), alt_positive=p.out(conds, 3), cfg=1.0,
                extra={"width": SIZE, "height": SIZE, "frames": _wan.FRAMES})


FAMILY = Family(
    name="wan21", title="Wan 2.1 T2V", load=load, files=files, build=build, video=True,
    latent_shape=(1, 16, 2, SIZE // 8, SIZE // 8), conditioning_checks=_wan.shift_checks,
    notes={"scheduler": "simple", "steps": "30-50 (Wan's own default: 30 at shift 8, ModelSamplingSD3)",
           "refine_steps": "3: a flow model, inversion starts at sigma = 1 where one fixed-point pass is not "
                           "enough; measured at 30 steps "
                           "(simple, the model's shift) 1.5e-1 / 3.7e-2 / 8.6e-3 / 1.9e-3 / 9.1e-5 at refine "
                           "0 / 1 / 2 / 3 / 5 (one frame)",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real Wan weights",
           "frames": "1 + 4k frames (5, 9, ..., 81): the causal VAE keeps the first frame and groups of 4; "
                     "Data Consistency's measurement is the degraded frames (same count)"})
