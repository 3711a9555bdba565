"""Shared pieces of the Wan families (wan21.py, wan22.py): the tiny Wan DiT as a diffusion_models file
UNETLoader detects, the Wan 2.1 VAE as a vae file VAELoader detects, the Wan 2.2 VAE built in the
server, and UMT5-XXL-shaped conditioning.

* DiT: ComfyUI's ``comfy.ldm.wan.model.WanModel`` with dim 128 (detection: heads = dim / 128, so one
  head of 128), ffn 256, one block; ``text_dim`` stays 4096 (not detected: the umt5-xxl width).
* Wan 2.1 VAE: ``comfy.ldm.wan.vae.WanVAE``, base width 8 (detection reads it from
  ``decoder.head.0.gamma``), z 16, the real dim_mult / res blocks / temporal downsampling.
* Wan 2.2 VAE: ``comfy.ldm.wan.vae2_2.WanVAE`` (z 48, 16x spatial, patchified input).  ComfyUI's VAE
  detection hard-codes its widths (dim 160 / dec_dim 256: hundreds of millions of weights), so
  ``comfy.sd.VAE(sd=...)`` builds it exactly as VAELoader does, with the class's widths set to 8.
* Text: ComfyUI's UMT5-XXL config is a fixed json (24 layers of 4096), so no tiny text encoder
  loads; the prompts are conditioning of the right shape [1, tokens, 4096] (seeded, the tokens after
  the prompt zero as UMT5's masked output), made in the server by TestFamilyModel.
"""
from __future__ import annotations

import torch


from ._build import cached_file
from tools.tiny_models import seeded_init_

VERSION = "v1"
DIT = {"dim": 128, "ffn_dim": 256, "num_heads": 1, "num_layers": 1}
VAE21_DIM = 8
VAE22_DIM = 8
TEXT_DIM = 4096
TOKENS = 16
FRAMES = 5                        # pixels frames: the Wan VAEs' causal 1 + 4k frames -> T' = 2


def _cached(folder: str, name: str, build) -> "Path":  # noqa: F821
    """The Wan-family files, kept in float32 (``_build.cached_file``)."""
    return cached_file(folder, name, VERSION, build, dtype=torch.float32)


def dit_file(name: str, channels: int, seed: int):
    """The tiny Wan DiT (t2v) with ``channels`` latent channels (16: Wan 2.1, 48: Wan 2.2 TI2V-5B)."""
    def build():
        import comfy.ldm.wan.model
        import comfy.ops
        m = comfy.ldm.wan.model.WanModel(model_type="t2v", in_dim=channels, out_dim=channels, text_dim=TEXT_DIM,
                                         operations=comfy.ops.disable_weight_init, **DIT)
        return seeded_init_(m, seed).state_dict()
    return _cached("diffusion_models", name, build)


def _vae_state(module, seed: int) -> dict:
    seeded_init_(module, seed, std=1.0)                    # 1 / sqrt(fan_in): the signal survives the layers
    sd = module.state_dict()
    for k in sd:                                           # RMS_norm scales (not named "norm")
        if k.endswith("gamma"):
            sd[k] = torch.ones_like(sd[k])
    return sd


def vae21_file(name: str, seed: int):
    def build():
        import comfy.ldm.wan.vae
        v = comfy.ldm.wan.vae.WanVAE(dim=VAE21_DIM, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                     attn_scales=[], temperal_downsample=[False, True, True])
        return _vae_state(v, seed)
    return _cached("vae", name, build)


def vae22(seed: int):
    """The Wan 2.2 VAE as ComfyUI's VAE object, built by ``comfy.sd.VAE`` from a state dict (as
    VAELoader) with the class's widths set to VAE22_DIM for the duration of the build."""
    import comfy.ldm.wan.vae2_2 as wan22
    import comfy.sd
    cls = wan22.WanVAE
    small = {"dim": VAE22_DIM, "dec_dim": VAE22_DIM}
    sd = _vae_state(cls(z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                        temperal_downsample=[False, True, True], **small), seed)
    wan22.WanVAE = lambda **kw: cls(**{**kw, **small})
    try:
        vae = comfy.sd.VAE(sd=sd)
    finally:
        wan22.WanVAE = cls
    return vae


def text(seed: int, words: int, attention_mask: bool = False):
    """UMT5-XXL / T5-XXL-shaped conditioning: ``words`` seeded tokens, then zeros (the masked padding);
    with ``attention_mask`` also the token mask [1, tokens] (int, 1 = a word) that ComfyUI's T5 encoders
    for LTX-Video / Mochi return."""
    g = torch.Generator().manual_seed(seed)
    ctx = torch.zeros(1, TOKENS, TEXT_DIM)
    ctx[:, :words] = torch.randn(1, words, TEXT_DIM, generator=g)
    extra = {}
    if attention_mask:
        extra["attention_mask"] = (torch.arange(TOKENS) < words).long()[None]
    return [[ctx, extra]]


def prompts(seed: int, attention_mask: bool = False):
    """(positive, negative, alt_positive)."""
    return tuple(text(seed + k, words, attention_mask) for k, words in enumerate((6, 1, 6)))


def sample(p, r, model=None, steps: int = 3):
    """DreamSampler from the source latent with the positive prompt (for conditioning checks)."""
    return p.add("DreamSampler", model=model or r.model, seed=0, steps=steps, cfg=r.cfg, scheduler="simple",
                 positive=r.positive, negative=r.negative, latent_image=r.latent, denoise=1.0, eta=0.0,
                 eta_schedule="constant")


def shift_checks():
    """ModelSamplingSD3's shift (Wan's default 8 vs 3) reaches the model."""
    def at(shift):
        return lambda p, r: sample(p, r, model=p.add("ModelSamplingSD3", model=r.model, shift=shift))
    return [("shift", at(8.0), at(3.0))]
