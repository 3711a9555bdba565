"""Wan 2.2 text-to-video, the TI2V-5B model (flow, 48-channel 5-D latents [B, 48, T', H/16, W/16]) with
its own VAE (``comfy.ldm.wan.vae2_2``: patchified input, 16x spatial compression).

Wan 2.2's A14B text-to-video pair is the Wan 2.1 architecture (16 channels, the Wan 2.1 VAE: the
wan21 row); this row is the architecture that differs.  The tiny DiT loads through UNETLoader
(ComfyUI detects WAN22_T2V from ``out_dim`` 48); the VAE is built in the server by TestFamilyModel
(ComfyUI's detection hard-codes the 2.2 VAE's widths, see ``_wan``), as are the UMT5-XXL-shaped
prompts.  The image: 5 frames of 64x64 pixels -> one [1, 48, 2, 4, 4] latent.
"""
from . import Family, Refs, _wan

SIZE = 64
DIT = "dream_tiny_wan22_ti2v.safetensors"


def files():
    return {"diffusion_models": [_wan.dit_file(DIT, 48, seed=21)]}


def build():
    positive, negative, alt = _wan.prompts(23)
    return None, positive, negative, alt, _wan.vae22(seed=22)      # MODEL: UNETLoader


def load(p) -> Refs:
    model = p.add("UNETLoader", unet_name=DIT, weight_dtype="default")
    built = p.add("TestFamilyModel", family="wan22")
    vae = p.out(built, 4)
    image = p.add("EmptyImage", width=SIZE, height=SIZE, batch_size=_wan.FRAMES, color=0x4080C0)
    return Refs(model=model, vae=vae, image=image, latent=p.add("VAEEncode", pixels=image, vae=vae),
                positive=p.out(built, 1), negative=p.out(built, 2), alt_positive=p.out(built, 3), cfg=1.0,
                extra={"width": SIZE, "height": SIZE, "frames": _wan.FRAMES})


FAMILY = Family(
    name="wan22", title="Wan 2.2 TI2V-5B", load=load, files=files, build=build, video=True,
    latent_shape=(1, 48, 2, SIZE // 16, SIZE // 16), conditioning_checks=_wan.shift_checks,
    notes={"scheduler": "simple", "steps": "30-50 (ComfyUI's Wan 2.2 5B template: 30 steps at shift 8)",
           "refine_steps": "3: a flow model at sigma = 1; measured at 30 steps "
                           "(simple, the model's shift) 1.4e-1 / 3.4e-2 / 8.1e-3 / 1.9e-3 / 9.9e-5 "
                           "at refine 0 / 1 / 2 / 3 / 5 (one frame)",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real weights",
           "frames": "1 + 4k frames; sides multiples of 32 px (16x VAE, 2x2 DiT patches)"})
