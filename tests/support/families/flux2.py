"""Flux.2 (guidance-distilled flow DiT, ModelSamplingFlux shift 2.02, timestep = sigma; the Flux.2
latent: the VAE's 32 channels patchified 2 x 2 and batch-normalized, 128 channels at 1/16 of the
image; Mistral-3-Small-24B captions, three hidden layers per token).

Built in the server: ComfyUI's Flux.2 detection fixes 48 heads with four rotary axes of 32 (hidden
6144), so the DiT is ``supported_models.Flux2`` (``model_base.Flux2``) with the same layout at small
dims: 2 heads of 32 with axes [8, 8, 8, 8], one double and one single block, global modulation, SiLU
MLPs and no biases, guidance embedding on; the caption input stays 15360 wide (3 x 5120).  The
Mistral config is fixed, so the prompts are conditioning of that shape [1, tokens, 15360]
(``model_base.Flux2`` pads them to 512 tokens).  The VAE is the Flux.2 architecture (the KL
autoencoder with 32 channels, its quant convs and the latent batch norm with seeded running
statistics) built in the server by ``comfy.sd.VAE`` as VAELoader does, at width 32 (``vae``); 128 px
images give the 8 x 8 latent SDE-Drag needs.  Distilled: cfg 1, FluxGuidance (4 in
ComfyUI's template).
"""
from __future__ import annotations

import torch

from . import Family, Refs
from ._build import (KL_DDCONFIG, ROUND_TRIP, SMALL_KL_CH, conditioning, family_refs, in_server_model, init_,
                     sample)

SIZE = 128
TOKENS = 8
TEXT_DIM = 3 * 5120
DIT = {"image_model": "flux2", "in_channels": 128, "out_channels": 128, "vec_in_dim": None, "context_in_dim": TEXT_DIM,
       "hidden_size": 64, "mlp_ratio": 3.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
       "axes_dim": [8, 8, 8, 8], "theta": 2000, "patch_size": 1, "qkv_bias": False, "guidance_embed": True,
       "global_modulation": True, "mlp_silu_act": True, "ops_bias": False, "default_ref_method": "index",
       "ref_index_scale": 10.0}


def vae():
    """The Flux.2 VAE as ComfyUI's VAE object: ``comfy.sd.VAE`` detects it from a seeded state dict (32
    channels, quant convs, the latent batch norm's running statistics -> 128 channels at 1/16) exactly
    as VAELoader does, the autoencoder's width held at SMALL_KL_CH while it builds (the loader fixes 128:
    seconds per 128 x 128 decode on a CI CPU)."""
    import comfy.ldm.models.autoencoder as ae
    import comfy.sd
    module = ae.AutoencoderKL(ddconfig=dict(KL_DDCONFIG, z_channels=32, batch_norm_latent=True, ch=SMALL_KL_CH),
                              embed_dim=32)
    init_(module, 132, std=1.0)                    # 1 / sqrt(fan_in): the signal survives the layers
    g = torch.Generator().manual_seed(133)
    with torch.no_grad():                          # the latent batch norm's statistics
        module.bn.running_mean.copy_(torch.randn(module.bn.running_mean.shape, generator=g) * 0.1)
        module.bn.running_var.copy_(0.5 + torch.rand(module.bn.running_var.shape, generator=g))
    sd = module.state_dict()
    kl = comfy.sd.AutoencoderKL
    comfy.sd.AutoencoderKL = lambda ddconfig, **kw: kl(ddconfig=dict(ddconfig, ch=SMALL_KL_CH), **kw)
    try:
        out = comfy.sd.VAE(sd=sd)
    finally:
        comfy.sd.AutoencoderKL = kl
    assert type(out.first_stage_model) is ae.AutoencoderKL and out.latent_channels == 128
    return out


def prompt(seed: int):
    """CLIPTextEncode's Flux.2 conditioning: the Mistral hidden states, and no pooled output (None)."""
    return conditioning(seed, TOKENS, TEXT_DIM, pooled_output=None)


def build():
    import comfy.supported_models
    model = in_server_model(comfy.supported_models.Flux2, DIT, seed=80)
    return model, prompt(81), prompt(82), prompt(83), vae()


def load(p) -> Refs:
    return family_refs(p, "flux2", 1.0, SIZE)


def conditioning_checks():
    def guidance(g):
        return lambda p, r: sample(p, r, positive=p.add("FluxGuidance", conditioning=r.positive, guidance=g))

    def reference(on):
        # Flux.2's multi-reference editing: the source latent's tokens join the prompt's
        return lambda p, r: sample(p, r, positive=p.add("ReferenceLatent", conditioning=r.positive, latent=r.latent)
                                   if on else r.positive)

    def flux2_schedule(width):
        # ComfyUI's Flux.2 template: SamplerCustomAdvanced with Flux2Scheduler's sigmas; here with the
        # Dream samplers (inversion, then the sampler from the inverted latent)
        def build(p, r):
            sigmas = p.add("Flux2Scheduler", steps=3, width=width, height=width)
            guider = p.add("BasicGuider", model=r.model, conditioning=r.positive)
            noise = p.add("DisableNoise")
            inv = p.add("SamplerCustomAdvanced", noise=noise, guider=guider, sigmas=sigmas, latent_image=r.latent,
                        sampler=p.add("DreamInversionSampler", refine_steps=1))
            return p.add("SamplerCustomAdvanced", noise=noise, guider=guider, sigmas=sigmas, latent_image=inv,
                         sampler=p.add("DreamSamplerSelect", eta=0.0))
        return build
    return [("FluxGuidance_1_vs_4", guidance(1.0), guidance(4.0)),
            ("ReferenceLatent", reference(False), reference(True)),
            ("Flux2Scheduler_256_vs_1024", flux2_schedule(256), flux2_schedule(1024))]


FAMILY = Family(
    name="flux2", title="Flux.2", load=load, build=build,
    latent_shape=(1, 128, SIZE // 16, SIZE // 16), conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.Flux2, 2 x 32 heads, four rotary axes); conditioning of "
                     "Mistral-3's shape [1, tokens, 15360]; the Flux.2 VAE (32 channels, latent batch norm -> "
                     "128-channel latents at 1/16) in the server at width 32",
           "cfg": "1 (guidance-distilled: FluxGuidance, 4 in ComfyUI's template)",
           "scheduler": "Flux2Scheduler's sigmas through SamplerCustomAdvanced with the Dream SAMPLERs (ComfyUI's "
                        "template: 20 steps, euler, FluxGuidance 4), or simple in DreamSampler",
           "steps": "20 (the template)",
           "refine_steps": "3-5: measured at the template's 20 steps (shift 2.02) 1.8e-1 / 6.2e-2 / 1.9e-2 / 5.8e-3 /"
                           " 4.9e-4 at refine 0 / 1 / 2 / 3 / 5",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real weights"})
