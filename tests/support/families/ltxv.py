"""LTX-Video (flow with Flux-style sampling, 128-channel 5-D latents [B, 128, T', H/32, W/32],
T' = 1 + (T - 1) / 8) with its causal video VAE.

* DiT: ComfyUI's ``comfy.ldm.lightricks.model.LTXVModel`` through UNETLoader (detection: 32 heads of
  ``to_k`` rows / 32, cross-attention width from ``to_k``): 32 heads of 4 (width 128), one block;
  ``caption_channels`` stays 4096 (T5-XXL, not detected).
* VAE: ``comfy.ldm.lightricks.vae.causal_video_autoencoder.VideoVAE`` (patch 4, three 2x2x2
  compressions: 32x spatial, 8x temporal, 128 latent channels).  VAELoader in 0.3.75 passes no file
  metadata, so it would build the full-size version-0 VAE; the tiny one is built in the server by
  ``comfy.sd.VAE(sd, metadata={"config": ...})`` exactly as the checkpoint loader does for a file
  whose metadata carries the VAE config (blocks: 3 x compress_all + one res block; the encoder /
  decoder base width of 128 is fixed by ComfyUI).
* Text: T5-XXL (a fixed 24-layer config in ComfyUI, no tiny encoder loads): conditioning of the right
  shape [1, tokens, 4096] with its token attention_mask, from TestFamilyModel.
The image: 9 frames of 64x64 pixels -> one [1, 128, 2, 2, 2] latent.
"""
import json

import torch

from . import Family, Refs, _wan
from tools.tiny_models import seeded_init_

SIZE = 64
FRAMES = 9
DIT = "dream_tiny_ltxv.safetensors"
VAE_CONFIG = {"_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3,
              "latent_channels": 128, "blocks": [["compress_all", 1], ["compress_all", 1], ["compress_all", 1],
                                                 ["res_x", 1]],
              "scaling_factor": 1.0, "norm_layer": "pixel_norm", "patch_size": 4, "latent_log_var": "uniform",
              "use_quant_conv": False, "causal_decoder": False}


def files():
    def build():
        import comfy.ldm.lightricks.model
        import comfy.ops
        m = comfy.ldm.lightricks.model.LTXVModel(in_channels=128, cross_attention_dim=128, attention_head_dim=4,
                                                 num_attention_heads=32, caption_channels=_wan.TEXT_DIM, num_layers=1,
                                                 operations=comfy.ops.disable_weight_init)
        return seeded_init_(m, 31).state_dict()
    return {"diffusion_models": [_wan._cached("diffusion_models", DIT, build)]}


def vae():
    import comfy.ldm.lightricks.vae.causal_video_autoencoder as cva
    import comfy.sd
    sd = seeded_init_(cva.VideoVAE(config=VAE_CONFIG), 32, std=1.0).state_dict()
    stats = "per_channel_statistics."                  # torch.empty buffers: identity latent statistics
    for k in list(sd):
        if k.startswith(stats):
            sd[k] = torch.ones_like(sd[k]) if k.endswith("std-of-means") else torch.zeros_like(sd[k])
    return comfy.sd.VAE(sd=sd, metadata={"config": json.dumps({"vae": VAE_CONFIG})})


def build():
    positive, negative, alt = _wan.prompts(33, attention_mask=True)
    return None, positive, negative, alt, vae()                    # MODEL: UNETLoader


def load(p) -> Refs:
    model = p.add("UNETLoader", unet_name=DIT, weight_dtype="default")
    built = p.add("TestFamilyModel", family="ltxv")
    v = p.out(built, 4)
    image = p.add("EmptyImage", width=SIZE, height=SIZE, batch_size=FRAMES, color=0x4080C0)
    return Refs(model=model, vae=v, image=image, latent=p.add("VAEEncode", pixels=image, vae=v),
                positive=p.out(built, 1), negative=p.out(built, 2), alt_positive=p.out(built, 3), cfg=1.0,
                extra={"width": SIZE, "height": SIZE, "frames": FRAMES})


def conditioning_checks():
    """LTXVConditioning's frame rate (the temporal RoPE scale) and ModelSamplingLTXV's shift reach the model."""
    def rate(fps):
        def build(p, r):
            cond = p.add("LTXVConditioning", positive=r.positive, negative=r.negative, frame_rate=fps)
            return p.add("DreamSampler", model=r.model, seed=0, steps=3, cfg=r.cfg, scheduler="simple",
                         positive=cond, negative=p.out(cond, 1), latent_image=r.latent, denoise=1.0, eta=0.0,
                         eta_schedule="constant")
        return build

    def shift(max_shift):
        return lambda p, r: _wan.sample(p, r, model=p.add("ModelSamplingLTXV", model=r.model, max_shift=max_shift,
                                                          base_shift=0.95))
    return [("frame_rate", rate(25.0), rate(8.0)), ("shift", shift(2.05), shift(0.5))]


FAMILY = Family(
    name="ltxv", title="LTX-Video", load=load, files=files, build=build, video=True,
    latent_shape=(1, 128, 2, SIZE // 32, SIZE // 32), conditioning_checks=conditioning_checks,
    notes={"scheduler": "simple (or LTXVScheduler's grid through SamplerCustomAdvanced)",
           "steps": "30-40 (ComfyUI's LTX-Video templates: 30)",
           "refine_steps": "3-5: a flow model at sigma = 1; measured at 30 steps "
                           "(simple, the model's shift) 2.2e-1 / 7.1e-2 / 2.1e-2 / 5.6e-3 / 4.0e-4 "
                           "at refine 0 / 1 / 2 / 3 / 5 (one frame)",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real weights",
           "frames": "1 + 8k frames (9, 17, ..., 97); sides multiples of 32 px"})
