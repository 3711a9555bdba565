"""Shared pieces of the family modules: cached model files for ComfyUI's loaders, in-server models
built from a family's ``supported_models`` class as ComfyUI's loader builds them, conditioning of the
right shapes, and a DreamSampler cell for conditioning checks.

Nothing here imports ComfyUI at import time: the test process imports the family modules for
``load`` / ``files``; ComfyUI is imported where a file is written (``import_comfy``) or, in the
server, where ``build`` runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from tools.host import cache_dir, import_comfy
from tools.tiny_models import seeded_init_

#: what the notes' refine_steps numbers measure (scripted in-process on each family's tiny model)
ROUND_TRIP = ("max |round trip - source| of Dream DDIM Inversion -> DreamSampler (eta 0, cfg 1, same steps, "
              "'simple' or 'ddim_uniform' as noted) from a N(0, 1) model-space latent [1, C, 8, 8], the empty prompt")


# ----------------------------------------------------------------------------- weights
def init_(module: torch.nn.Module, seed: int, std: float = 0.02, buffers=()) -> torch.nn.Module:
    """``seeded_init_`` plus what it leaves: RMS/QK norm ``scale`` parameters get ones (a zero scale
    would switch attention off), and the named ``buffers`` the model creates with ``torch.empty``
    and a real file carries (MMDiT's ``pos_embed``) get seeded values.  Asserts the module is finite
    afterwards."""
    seeded_init_(module, seed, std)
    g = torch.Generator().manual_seed(seed + 7919)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("scale") and "norm" in name.lower():
                p.fill_(1.0)
        for name, b in sorted(module.named_buffers(), key=lambda kv: kv[0]):
            if name in buffers:
                b.copy_(torch.randn(b.shape, generator=g, dtype=torch.float32) * std)
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if t.is_floating_point():
            assert torch.isfinite(t).all(), name
    return module


def cached_file(folder: str, name: str, version: str, make_sd: Callable[[], dict], dtype=torch.float16) -> Path:
    """``cache_dir()/folder/name``: the state dict ``make_sd()`` saved as ``dtype`` .safetensors, rebuilt
    when ``version`` changes (deterministic: every builder seeds its weights)."""
    out = cache_dir() / folder / name
    stamp = out.with_suffix(".version")
    if out.exists() and stamp.exists() and stamp.read_text() == version:
        return out
    import_comfy()
    import comfy.utils
    sd = {k: v.detach().to(dtype).contiguous() for k, v in make_sd().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    comfy.utils.save_torch_file(sd, str(tmp))
    tmp.replace(out)
    stamp.write_text(version)
    return out


# ----------------------------------------------------------------------------- VAEs
#: the KL autoencoder every family here uses, at its real size (ComfyUI's VAE loader fixes it)
KL_DDCONFIG = {"double_z": True, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
               "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def kl_vae(latent_channels: int) -> Path:
    """The VAE file of an 8x-downsampling KL autoencoder as ComfyUI's VAELoader detects it:
    4 channels with quant convs (SD1.x / SD2.x / SDXL / AuraFlow VAE), 16 channels without (SD3 and
    Flux VAE; ``AutoencodingEngine``)."""
    name = {4: "dream_tiny_vae_kl4.safetensors", 16: "dream_tiny_vae_kl16.safetensors"}[latent_channels]

    def make():
        import comfy.ldm.models.autoencoder as ae
        ddconfig = dict(KL_DDCONFIG, z_channels=latent_channels)
        if latent_channels == 4:
            vae = ae.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
        else:
            vae = ae.AutoencodingEngine(
                regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
                encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": ddconfig},
                decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": ddconfig})
        return init_(vae, 100 + latent_channels).state_dict()
    return cached_file("vae", name, "v1", make)


#: the width of ``small_kl_vae``: ComfyUI's VAE detection reads a KL autoencoder's latent channels and
#: quant convs from the keys but fixes its width at 128 (83 M weights, seconds per 64 x 64 decode on
#: a loaded CI CPU); 32 is the least GroupNorm's 32 groups allow
SMALL_KL_CH = 32


def small_kl_vae(latent_channels: int, seed: int):
    """ComfyUI's VAE object of the KL autoencoder with ``latent_channels`` (4: with quant convs,
    ``AutoencoderKL``, the SD1.x / SD2.x / SDXL / AuraFlow VAE; 16: without, ``AutoencodingEngine``,
    the SD3 / Flux VAE), built by ``comfy.sd.VAE`` from a seeded state dict exactly as VAELoader
    does, with the classes' width set to SMALL_KL_CH for the duration of the build (as ``_wan``'s
    Wan 2.2 VAE)."""
    import comfy.ldm.models.autoencoder as ae
    import comfy.sd
    ddconfig = dict(KL_DDCONFIG, z_channels=latent_channels, ch=SMALL_KL_CH)
    regularizer = {"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"}
    if latent_channels == 4:
        module = ae.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    else:
        module = ae.AutoencodingEngine(
            regularizer_config=regularizer,
            encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": ddconfig},
            decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": ddconfig})
    sd = init_(module, seed, std=1.0).state_dict()          # 1 / sqrt(fan_in): the signal survives the layers

    def small(config):
        return dict(config, params=dict(config["params"], ch=SMALL_KL_CH))

    kl, engine = comfy.sd.AutoencoderKL, comfy.sd.AutoencodingEngine
    comfy.sd.AutoencoderKL = lambda ddconfig, **kw: kl(ddconfig=dict(ddconfig, ch=SMALL_KL_CH), **kw)
    comfy.sd.AutoencodingEngine = lambda encoder_config, decoder_config, **kw: engine(
        encoder_config=small(encoder_config), decoder_config=small(decoder_config), **kw)
    try:
        vae = comfy.sd.VAE(sd=sd)
    finally:
        comfy.sd.AutoencoderKL, comfy.sd.AutoencodingEngine = kl, engine
    assert type(vae.first_stage_model) is type(module) and vae.latent_channels == latent_channels
    return vae


# ----------------------------------------------------------------------------- in-server models
def in_server_model(config_cls, unet_config: dict, seed: int, sampling_settings: dict | None = None):
    """A ModelPatcher of ``config_cls(unet_config)`` (a ``comfy.supported_models`` class) with seeded
    weights, built as ``comfy.sd.load_diffusion_model_state_dict`` builds a detected model: inference
    dtype from the model management, ``get_model``, offload device, ModelPatcher."""
    import comfy.model_management as mm
    import comfy.model_patcher
    mc = config_cls(dict(unet_config))
    if sampling_settings:
        mc.sampling_settings = dict(mc.sampling_settings, **sampling_settings)
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    dtype = mm.unet_dtype(supported_dtypes=list(mc.supported_inference_dtypes))
    mc.set_inference_dtype(dtype, mm.unet_manual_cast(dtype, load_device, mc.supported_inference_dtypes))
    model = mc.get_model({}, "")
    init_(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    model = model.to(offload_device)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def conditioning(seed: int, tokens: int, dim: int, pooled: int | None = None, scale: float = 1.0, **extra):
    """A CONDITIONING of the right shapes: [[context [1, tokens, dim], {pooled_output [1, pooled], ...}]]
    with seeded values (``extra``: more entries of the options dict, e.g. SDXL's size conds)."""
    g = torch.Generator().manual_seed(seed)
    opts = dict(extra)
    ctx = torch.randn(1, tokens, dim, generator=g) * scale
    if pooled is not None:
        opts["pooled_output"] = torch.randn(1, pooled, generator=g) * scale
    return [[ctx, opts]]


# ----------------------------------------------------------------------------- prompt pieces
def in_server_refs(p, family: str, variant: str = "") -> dict:
    """The TestFamilyModel node of a family (``variant``: another set of conditionings the family's
    ``build(variant)`` makes) as refs: model, positive, negative, alt_positive, vae (the model is
    None where the family's prompt loads it with a loader node)."""
    node = p.add("TestFamilyModel", family=family, **({"variant": variant} if variant else {}))
    return {"model": node, "positive": p.out(node, 1), "negative": p.out(node, 2),
            "alt_positive": p.out(node, 3), "vae": p.out(node, 4)}


def family_refs(p, family: str, cfg: float, size: int, model=None):
    """Refs of a family whose prompts (and VAE) TestFamilyModel builds: its MODEL (or ``model``, the
    family's loader node), prompts, VAE, a plain ``size`` x ``size`` image and its VAE Encode."""
    from . import Refs
    fam = in_server_refs(p, family)
    image, latent = image_refs(p, fam["vae"], size)
    return Refs(model=model or fam["model"], positive=fam["positive"], negative=fam["negative"],
                alt_positive=fam["alt_positive"], vae=fam["vae"], image=image, latent=latent, cfg=cfg,
                extra={"width": size, "height": size})


def image_refs(p, vae, size: int) -> tuple[list, list]:
    """(IMAGE, its VAE Encode) of a plain colour image of ``size`` pixels."""
    image = p.add("EmptyImage", width=size, height=size, batch_size=1, color=0x4080C0)
    return image, p.add("VAEEncode", pixels=image, vae=vae)


def sample(p, r, model=None, positive=None, negative=None, cfg=None, steps: int = 3):
    """DreamSampler from the source latent with the prompt, as the matrix's ``sample`` cell."""
    return p.add("DreamSampler", model=model or r.model, seed=0, steps=steps, cfg=r.cfg if cfg is None else cfg,
                 scheduler="simple", positive=positive or r.positive, negative=negative or r.negative,
                 latent_image=r.latent, denoise=1.0, eta=0.0, eta_schedule="constant")


def shift_check(node: str, a: float, b: float, **inputs):
    """A check that the model-sampling node ``node`` (ModelSamplingSD3 / AuraFlow / Flux ...) with
    shift ``a`` vs ``b`` changes DreamSampler's output."""
    def make(shift):
        return lambda p, r: sample(p, r, model=p.add(node, model=r.model, **{"shift": shift, **inputs}))
    return (f"{node}_{a:g}_vs_{b:g}", make(a), make(b))


#: the matrix cells of an instruction-edit row (issue 25); its base family's row runs the other features
EDIT_CELLS = ("sample", "invert_sample", "cfg_edit", "mask_inpaint", "keep_known", "data_consistency")
NOT_EDIT_CELLS = ("cyclediffusion", "cycle_sde", "sde_drag", "distill_latent", "distill_svg", "distill_image", "csd")
#: the plain colour of another reference image (the source image is ``image_refs``' 0x4080C0)
OTHER_REFERENCE = 0xC06020


def with_reference(p, refs, image_color: int | None = None):
    """``refs`` with every prompt (positive, negative, alt_positive) carrying a reference latent, as
    an instruction-edit model's prompts do (core ReferenceLatent: the conditioning's
    ``reference_latents``, which the model base turns into the DiT's ``ref_latents``).  The reference
    is the source latent, or the VAE Encode of a plain ``image_color`` image of the same size; the
    prompts without it stay in ``extra["unreferenced"]`` (for a test that swaps the reference)."""
    import dataclasses
    latent = refs.latent if image_color is None else other_reference_latent(p, refs, image_color)
    raw = refs.extra.get("unreferenced") or {k: getattr(refs, k) for k in ("positive", "negative", "alt_positive")}
    wrapped = {k: p.add("ReferenceLatent", conditioning=v, latent=latent) for k, v in raw.items()}
    return dataclasses.replace(refs, **wrapped, extra=dict(refs.extra, unreferenced=raw))


def on_prompts(p, refs, class_type: str, **inputs):
    """``refs`` with its positive and negative each through node ``class_type`` (a second ReferenceLatent,
    FluxKontextMultiReferenceLatentMethod ...), ``inputs`` its other inputs."""
    import dataclasses
    return dataclasses.replace(refs, **{k: p.add(class_type, conditioning=getattr(refs, k), **inputs)
                                        for k in ("positive", "negative")})


def other_reference_latent(p, refs, color: int = OTHER_REFERENCE):
    """The VAE Encode of a plain ``color`` image of the source's size (a second reference image)."""
    other = p.add("EmptyImage", width=refs.extra["width"], height=refs.extra["height"], batch_size=1, color=color)
    return p.add("VAEEncode", pixels=other, vae=refs.vae)
