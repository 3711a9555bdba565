"""HunyuanVideo 1.5 text-to-video (flow, 32-channel 5-D latents [B, 32, T', H/16, W/16],
T' = 1 + (T - 1) / 4) with its VAE (``comfy.ldm.hunyuan_video.vae_refiner``).

* DiT: ComfyUI's ``comfy.ldm.hunyuan_video.model.HunyuanVideo`` through UNETLoader (detection reads
  widths from the keys; heads = width / 128): width 128 (one head, RoPE axes 16/56/56), one double and
  one single block, the 1.5 keys (cond-type embedding, 1152-wide vision projection) and 65 input
  channels (noise 32 + image 32 + mask 1, zero for text-to-video), the text width 3584 (Qwen2.5-VL 7B).
* VAE: ComfyUI's detection hard-codes the encoder / decoder widths (128 ... 1024); ``comfy.sd.VAE(sd=...)``
  builds it exactly as VAELoader does, with the classes' ``block_out_channels`` set to 32, 32, 32, 64,
  64 (the smallest ComfyUI's group norms and the 2 x z-channel skip allow) for the duration of the build.
* Text: Qwen2.5-VL 7B is far from tiny (and its config is fixed): conditioning of the right shape
  [1, tokens, 3584] (see ``text``), from TestFamilyModel.
The image: 5 frames of 32x32 pixels -> one [1, 32, 2, 2, 2] latent.
"""
import torch

from . import Family, Refs, _wan
from tools.tiny_models import seeded_init_

SIZE = 32
DIT = "dream_tiny_hunyuan_video15.safetensors"
TEXT_DIM = 3584
VAE_WIDTHS = [32, 32, 32, 64, 64]
DIT_CONFIG = dict(image_model="hunyuan_video", in_channels=65, out_channels=32, patch_size=[1, 1, 1], vec_in_dim=None,
                  axes_dim=[16, 56, 56], meanflow=False, context_in_dim=TEXT_DIM, hidden_size=128, mlp_ratio=4.0,
                  num_heads=1, depth=1, depth_single_blocks=1, theta=256, qkv_bias=True, byt5=False,
                  guidance_embed=False, use_cond_type_embedding=True, vision_in_dim=1152)


def files():
    def build():
        import comfy.ldm.hunyuan_video.model
        import comfy.ops
        m = comfy.ldm.hunyuan_video.model.HunyuanVideo(operations=comfy.ops.disable_weight_init, **DIT_CONFIG)
        return seeded_init_(m, 41).state_dict()
    return {"diffusion_models": [_wan._cached("diffusion_models", DIT, build)]}


def vae():
    import comfy.ldm.hunyuan_video.vae_refiner as refiner
    import comfy.ldm.models.autoencoder as ae
    import comfy.sd
    enc, dec = refiner.Encoder, refiner.Decoder
    small = {"block_out_channels": VAE_WIDTHS}
    ddconfig = {"in_channels": 3, "out_channels": 3, "num_res_blocks": 2, "ffactor_spatial": 16, "ffactor_temporal": 4,
                "downsample_match_channel": True, "upsample_match_channel": True, "z_channels": 32, **small}
    module = ae.AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.EmptyRegularizer"},
        encoder_config={"target": "comfy.ldm.hunyuan_video.vae_refiner.Encoder", "params": ddconfig},
        decoder_config={"target": "comfy.ldm.hunyuan_video.vae_refiner.Decoder", "params": ddconfig})
    sd = seeded_init_(module, 42, std=1.0).state_dict()
    refiner.Encoder = lambda **kw: enc(**{**kw, **small})
    refiner.Decoder = lambda **kw: dec(**{**kw, **small})
    try:
        return comfy.sd.VAE(sd=sd)
    finally:
        refiner.Encoder, refiner.Decoder = enc, dec


def text(seed: int, words: int):
    """Qwen2.5-VL-shaped conditioning as ComfyUI's encoder returns it for HunyuanVideo 1.5: one state
    per token, no padding (so no attention mask: the model drops an all-ones mask), pooled_output None
    (the LLM has none; HunyuanVideo reads the key)."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, words, TEXT_DIM, generator=g), {"pooled_output": None}]]


def build():
    return None, text(43, 6), text(44, 1), text(45, 6), vae()        # MODEL: UNETLoader


def load(p) -> Refs:
    model = p.add("UNETLoader", unet_name=DIT, weight_dtype="default")
    built = p.add("TestFamilyModel", family="hunyuan_video15")
    v = p.out(built, 4)
    image = p.add("EmptyImage", width=SIZE, height=SIZE, batch_size=_wan.FRAMES, color=0x4080C0)
    return Refs(model=model, vae=v, image=image, latent=p.add("VAEEncode", pixels=image, vae=v),
                positive=p.out(built, 1), negative=p.out(built, 2), alt_positive=p.out(built, 3), cfg=1.0,
                extra={"width": SIZE, "height": SIZE, "frames": _wan.FRAMES})


FAMILY = Family(
    name="hunyuan_video15", title="HunyuanVideo 1.5 T2V", load=load, files=files, build=build, video=True,
    latent_shape=(1, 32, 2, SIZE // 16, SIZE // 16), conditioning_checks=_wan.shift_checks,
    notes={"scheduler": "simple", "steps": "30-50 (ComfyUI's HunyuanVideo 1.5 templates: shift 7, ModelSamplingSD3)",
           "refine_steps": "3: a flow model at sigma = 1; measured at 30 steps "
                           "(simple, the model's shift) 1.3e-1 / 2.7e-2 / 5.7e-3 / 1.2e-3 / 4.6e-5 "
                           "at refine 0 / 1 / 2 / 3 / 5 (one frame)",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real weights",
           "frames": "1 + 4k frames; sides multiples of 16 px"})
