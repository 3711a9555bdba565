"""HunyuanImage 2.1 (flow DiT of HunyuanVideo's design with 2-D patches, shift 5; its own latent: 64
channels at 1/32 of the image, scale 0.75289; Qwen2.5-VL-7B captions plus ByT5 glyph features for
quoted text).

Loaded as a user's model where ComfyUI allows it: the DiT's detection reads the width (heads = width
/ 128), the blocks, the patch, the caption width and the ByT5 mapper from the keys, so the tiny DiT
(``HunyuanVideo``: one head of 128 with the real rotary axes [64, 64], one double and one single
block, the token refiner, the ByT5 mapper) goes through UNETLoader, which detects HunyuanImage21.
The VAE's detection hard-codes its widths ([128 ... 1024] channels: hundreds of millions of
weights), so ``comfy.sd.VAE(sd=...)`` builds it exactly as VAELoader does, in the server, with the
same 32x encoder / decoder at widths [32, 32, 64, 64, 128, 128] (the narrowest its group norms and
latent skip take).  256 px images give the 8 x 8 latent SDE-Drag needs.  The text encoders' configs
are fixed, so the prompts are conditioning of their shapes: Qwen [1, tokens, 3584] and, for the
glyph check, conditioning_byt5small [1, tokens, 1472].  The base model is not distilled: cfg 3.5.
"""
from __future__ import annotations

import torch

from . import Family, Refs
from ._build import ROUND_TRIP, cached_file, conditioning, image_refs, in_server_refs, init_, sample, shift_check

SIZE = 256
TOKENS = 12
DIT_FILE = "dream_tiny_hunyuan_image21.safetensors"
DIT = {"image_model": "hunyuan_video", "in_channels": 64, "out_channels": 64, "patch_size": [1, 1],
       "vec_in_dim": None, "axes_dim": [64, 64], "meanflow": False, "context_in_dim": 3584, "hidden_size": 128,
       "mlp_ratio": 4.0, "num_heads": 1, "depth": 1, "depth_single_blocks": 1, "theta": 256, "qkv_bias": True,
       "byt5": True, "guidance_embed": False, "use_cond_type_embedding": False, "vision_in_dim": None}
VAE_WIDTHS = [32, 32, 64, 64, 128, 128]


def dit_file():
    def make():
        import comfy.ldm.hunyuan_video.model
        import comfy.ops
        m = comfy.ldm.hunyuan_video.model.HunyuanVideo(**DIT, operations=comfy.ops.disable_weight_init)
        return init_(m, 100).state_dict()
    return cached_file("diffusion_models", DIT_FILE, "v1", make)


def vae():
    """HunyuanImage 2.1's VAE as ComfyUI's VAE object: comfy.sd.VAE detects it from the state dict
    (64 latent channels), its encoder / decoder classes held to VAE_WIDTHS while it builds."""
    import comfy.ldm.hunyuan_video.vae as hv
    import comfy.ldm.models.autoencoder as ae
    import comfy.sd
    enc_cls, dec_cls = hv.Encoder, hv.Decoder
    small = {"block_out_channels": VAE_WIDTHS}
    hv.Encoder = lambda **kw: enc_cls(**{**kw, **small})
    hv.Decoder = lambda **kw: dec_cls(**{**kw, **small})
    try:
        ddconfig = {"block_out_channels": VAE_WIDTHS, "in_channels": 3, "out_channels": 3, "num_res_blocks": 2,
                    "ffactor_spatial": 32, "downsample_match_channel": True, "upsample_match_channel": True,
                    "z_channels": 64}
        model = ae.AutoencodingEngine(
            regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
            encoder_config={"target": "comfy.ldm.hunyuan_video.vae.Encoder", "params": ddconfig},
            decoder_config={"target": "comfy.ldm.hunyuan_video.vae.Decoder", "params": ddconfig})
        sd = init_(model, 101).state_dict()
        out = comfy.sd.VAE(sd=sd)
    finally:
        hv.Encoder, hv.Decoder = enc_cls, dec_cls
    return out


def prompt(seed: int, glyph: bool = False):
    cond = conditioning(seed, TOKENS, 3584)
    if glyph:                                # a prompt with quoted text: its ByT5 glyph features
        g = torch.Generator().manual_seed(seed + 500)
        cond[0][1]["conditioning_byt5small"] = torch.randn(1, TOKENS, 1472, generator=g)
    return cond


def build(variant: str = ""):
    """(None, positive, negative, alt_positive, VAE): the model comes from UNETLoader; variant
    ``glyph``: the positive with ByT5 glyph features."""
    if variant == "glyph":
        return None, prompt(111, glyph=True), prompt(112), prompt(113), None
    return None, prompt(111), prompt(112), prompt(113), vae()


def load(p) -> Refs:
    model = p.add("UNETLoader", unet_name=DIT_FILE, weight_dtype="default")
    fam = in_server_refs(p, "hunyuan_image21")
    image, latent = image_refs(p, fam["vae"], SIZE)
    return Refs(model=model, positive=fam["positive"], negative=fam["negative"], alt_positive=fam["alt_positive"],
                vae=fam["vae"], image=image, latent=latent, cfg=3.5, extra={"width": SIZE, "height": SIZE})


def conditioning_checks():
    glyph = lambda p, r: sample(p, r, positive=in_server_refs(p, "hunyuan_image21", "glyph")["positive"])
    return [shift_check("ModelSamplingSD3", 5.0, 1.0), ("conditioning_byt5small", lambda p, r: sample(p, r), glyph)]


FAMILY = Family(
    name="hunyuan_image21", title="HunyuanImage 2.1", load=load, build=build,
    files=lambda: {"diffusion_models": [dit_file()]},
    latent_shape=(1, 64, SIZE // 32, SIZE // 32), conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "UNETLoader (HunyuanImage21 detected from the keys: one head of 128, ByT5 mapper); the VAE "
                     "built in the server by comfy.sd.VAE at widths [32 ... 128] (its detection fixes [128 ... "
                     "1024]); conditioning of Qwen2.5-VL's shape [1, tokens, 3584] (+ ByT5 [1, tokens, 1472])",
           "cfg": "3.5 (the base model; the distilled one runs at cfg 1)",
           "scheduler": "simple (no HunyuanImage 2.1 template in the pinned ComfyUI's template package)",
           "steps": "30-50 (base); the distilled model 8",
           "refine_steps": "2: measured at 30 steps (shift 5) 9.2e-2 / 1.4e-2 / 2.2e-3 / 3.3e-4 / 9.1e-6 at refine 0 "
                           "/ 1 / 2 / 3 / 5",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real weights"})
