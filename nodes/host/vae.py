"""The host's VAE and gradients: ComfyUI VAEs as the core's codecs, and copies autograd can use.

ComfyUI runs every node under ``torch.inference_mode()``; the loaded weights are inference tensors
that autograd cannot save (spec comfyui §A6).  A gradient path therefore runs a copy of the network
made outside inference mode (``grad_copy``), kept until the codec's ``release()`` (after each run the
guider releases its regularizers' codecs) and never written back: the shared MODEL / VAE are not modified.

What the copy holds is the weights the network's forward really uses, read the way ComfyUI hands
them out, whatever the load state (COMPATIBILITY.md, "Gradient copies"): patched in place (a full
load), offloaded with the patches applied at forward time (lowvram, ``LowVramPatch`` in
``weight_function``), or lazy in the newest ComfyUI's dynamic VRAM loading (weights left on the CPU
or memory-mapped, staged through ``comfy_aimdo``'s VBAR, LoRA patches in ``weight_lowvram_function``,
quantized storage).  Each ComfyUI op's weight and bias come from ``comfy.ops.cast_bias_weight``,
the very function the op's forward calls, so LoRA / weight-wrapper patches and dequantization are
in them; none of that per-module load state is copied.
"""
from __future__ import annotations

import copy as _copy
import math
import weakref

import torch

import comfy.model_management
import comfy.ops

#: per-module load state ComfyUI keeps on a live network (forward-time patches, offload / dynamic
#: VRAM bookkeeping): never copied into a gradient copy (its weights hold the result instead)
_LOAD_STATE = ("weight_function", "bias_function", "weight_lowvram_function", "bias_lowvram_function",
               "prev_comfy_cast_weights", "comfy_patched_weights", "comfy_force_cast_weights", "seed_key",
               "_v", "_v_signature", "_v_weight", "_v_bias", "_v_block", "_prefetch", "_pin_state", "_pins",
               "dynamic_vbars", "dynamic_pins", "dynamic_patchers")
_FLOAT = (torch.float32, torch.float16, torch.bfloat16)

#: what makes a copied ComfyUI op a plain differentiable layer whatever its storage: the newest
#: ``MixedPrecisionOps.Linear.forward`` quantizes its *input* (FP8 / NVFP4 / MXFP8 activations,
#: ``QuantLinearFunc`` under autograd) while the op has a ``layout_type`` and is neither full-precision
#: nor force-cast; the copy holds dequantized weights and must run them as they are
_PLAIN_OP = {"layout_type": None, "quant_format": None, "_full_precision_mm": True, "comfy_force_cast_weights": True}


#: every live gradient copy and VAE codec, read by ``live_counts`` (the /dreamsampler/stats route):
#: weak references only, so being counted keeps nothing alive
_GRAD_COPIES = weakref.WeakSet()
_CODECS = weakref.WeakSet()


def live_counts() -> dict:
    """How many gradient copies (``grad_copy``) and VAE codecs are alive now, and how many of those
    codecs hold a gradient copy (not yet released).  Between runs the copies and open codecs are 0;
    the codecs a cached node output (Dream Data Consistency's regularizer) keeps are counted in
    ``codecs``.  Counts what is referenced right now: no garbage collection is run."""
    codecs = list(_CODECS)
    return {"grad_copies": len(_GRAD_COPIES), "codecs": len(codecs),
            "open_codecs": sum(c._grad_model is not None for c in codecs)}


class GradCopyError(RuntimeError):
    pass


def _not_loaded(what: str, name: str) -> GradCopyError:
    return GradCopyError(
        f"DreamSampler needs the {what}'s weights for a gradient step (DPS / distillation), but '{name}' "
        "is not loaded (a lazy or meta tensor that ComfyUI did not hand out). Run without lazy / dynamic "
        "model loading (start ComfyUI without its dynamic VRAM option), or without the gradient step "
        "(Dream Data Consistency with dps = 0).")


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A quantized tensor subclass (ComfyUI's QuantizedTensor) as the plain tensor it stands for."""
    if type(t) not in (torch.Tensor, torch.nn.Parameter) and hasattr(t, "dequantize"):
        t = t.dequantize()
    return t


def _forward_weights(m, device, dtype, place):
    """{name: tensor} of a ComfyUI op's weight and bias as its forward computes them (patches
    applied, dequantized), each copied to ``place(nbytes)``."""
    w = m.weight
    plain = type(w) in (torch.Tensor, torch.nn.Parameter)
    tdt = dtype if dtype is not None else (w.dtype if plain and w.dtype in _FLOAT else torch.float32)
    b = getattr(m, "bias", None)
    bdt = b.dtype if dtype is None and b is not None and type(b) in (torch.Tensor, torch.nn.Parameter) \
        and b.dtype in _FLOAT else tdt
    try:      # the non-legacy form: buffers handed back with uncast_bias_weight (async offload, VBAR pins)
        weight, bias, stream = comfy.ops.cast_bias_weight(m, dtype=tdt, device=device, bias_dtype=bdt,
                                                          offloadable=True)
    except TypeError:
        (weight, bias), stream = comfy.ops.cast_bias_weight(m, dtype=tdt, device=device, bias_dtype=bdt), None
    out = {}
    for key, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            t = _plain(t).detach()
            out[key] = t.to(place(t.numel() * t.element_size()), copy=True)
    if stream is not None and hasattr(comfy.ops, "uncast_bias_weight"):
        comfy.ops.uncast_bias_weight(m, weight, bias, stream)
    return out


def free_memory(device, patcher=None) -> int:
    """Free memory on ``device`` as ``patcher`` counts it (the newest ComfyUI's
    ``ModelPatcher.get_free_memory``: torch's free memory plus what dynamic VRAM's VBARs can give
    back), else ComfyUI's module-level ``get_free_memory`` (0.3.75, whose patchers have none)."""
    own = getattr(patcher, "get_free_memory", None)
    return int(own(device) if callable(own) else comfy.model_management.get_free_memory(device))


#: what a backward pass through the diffusion model keeps, as a multiple of ComfyUI's own inference
#: estimate for the same latent (``BaseModel.memory_required``): the forward's activations are stored,
#: not freed layer by layer, and the backward needs as much again
GRAD_ACTIVATION_FACTOR = 4


def grad_step_memory(model, shape) -> int:
    """Bytes one gradient step through ``model``'s diffusion model (the DPS step) needs on a latent of
    ``shape`` (model space, batch included): the weights' gradient copy plus GRAD_ACTIVATION_FACTOR x
    ComfyUI's inference estimate for that shape (what it sizes its own batches by)."""
    inner = model.model
    weights = sum(p.numel() * p.element_size() for p in inner.diffusion_model.parameters())
    return int(weights + GRAD_ACTIVATION_FACTOR * inner.memory_required(list(shape)))


def check_grad_memory(model, shape, what: str) -> None:
    """ValueError (with what to change) when a gradient step on a latent of ``shape`` cannot fit in the
    memory free on the model's load device (the gradient copy falls back to the CPU for weights, not
    for activations): estimated before the run, so a large image or a long video is refused at once
    instead of running out of memory half-way."""
    need = grad_step_memory(model, shape)
    free = free_memory(model.load_device, model)
    if need > free:
        frames = f" ({shape[2]} frames)" if len(shape) == 5 else ""
        raise ValueError(f"{what} takes a gradient through the diffusion model on a {tuple(shape)} latent{frames}, "
                         f"which needs about {need / 2 ** 30:.1f} GiB, but {free / 2 ** 30:.1f} GiB is free on "
                         f"{model.load_device}: set it to 0, or use a smaller image or fewer frames.")


def grad_copy(module: torch.nn.Module, patcher=None, device=None, dtype=None, what: str = "model",
              budget_from=None) -> torch.nn.Module:
    """A frozen copy of ``module`` (requires_grad False, outside inference mode) holding the weights
    its forward uses (see the module docstring), for autograd through it; the live module is only
    read.  ``patcher``: loaded first (ComfyUI decides how).  ``device``: where the forward runs
    (default: the patcher's load device, else the module's).  ``dtype``: the compute dtype the
    weights take when ComfyUI casts them (a manual-cast model; None: each weight's own float dtype,
    float32 for fp8 / quantized storage).  Weights go to ``device`` while its free memory allows (as
    ``budget_from``, default ``patcher``, counts it: ``free_memory``) and stay on the CPU after that
    (cast per call, as ComfyUI's lowvram mode does).  GradCopyError when
    a weight is not loaded."""
    with torch.inference_mode(False), torch.no_grad():
        if patcher is not None:
            comfy.model_management.load_models_gpu([patcher])
        if device is None:
            device = patcher.load_device if patcher is not None else next(
                (p.device for p in module.parameters()), torch.device("cpu"))
        device = torch.device(device)
        budget = [math.inf]
        if device.type != "cpu":
            budget[0] = (free_memory(device, budget_from if budget_from is not None else patcher)
                         - 2 * comfy.model_management.minimum_inference_memory())

        def place(nbytes):
            """the device while it has room (a reserve kept for the backward pass), else the CPU"""
            if nbytes <= budget[0]:
                budget[0] -= nbytes
                return device
            return torch.device("cpu")

        # the structure, without the tensors (filled below) and without the load state
        memo = {}
        for m in module.modules():
            for t in list(m._parameters.values()) + list(m._buffers.values()):
                if t is not None:
                    memo[id(t)] = None
            for name in _LOAD_STATE:
                v = m.__dict__.get(name)
                if v is not None and not isinstance(v, (bool, int, float, str)):
                    memo[id(v)] = None
        try:
            out = _copy.deepcopy(module, memo)
        except Exception as e:  # an object ComfyUI or another pack attached that cannot be copied
            raise GradCopyError(f"DreamSampler could not copy the {what} for a gradient step: {e}") from e

        copies = dict(out.named_modules())
        for name, m in module.named_modules():
            c = copies[name]
            for attr in _LOAD_STATE:
                c.__dict__.pop(attr, None)
            done = set()
            if hasattr(m, "comfy_cast_weights") and getattr(m, "weight", None) is not None:
                # a ComfyUI op: its forward's own weights; kept cast-on-call, so a weight left on
                # the CPU (no room on the device) or in another dtype follows each input.  (A meta
                # weight under dynamic VRAM (a VBAR) is ComfyUI's to fill: it zero-fills missing ones.)
                for key in ("weight", "bias"):
                    t = m._parameters.get(key)
                    if t is not None and t.is_meta and not hasattr(m, "_v"):
                        raise _not_loaded(what, f"{name}.{key}")
                for key, t in _forward_weights(m, device, dtype, place).items():
                    if m._parameters.get(key) is not None:
                        c._parameters[key] = torch.nn.Parameter(t, requires_grad=False)
                        done.add(key)
                c.comfy_cast_weights = True
                c.weight_function, c.bias_function = [], []
                c.__dict__.update(_PLAIN_OP)
            for key, t in m._parameters.items():
                if key in done or t is None:
                    continue
                if t.is_meta:
                    raise _not_loaded(what, f"{name}.{key}")
                c._parameters[key] = torch.nn.Parameter(_plain(t).detach().to(device, copy=True), requires_grad=False)
            for key, t in m._buffers.items():
                if t is not None:
                    if t.is_meta:
                        raise _not_loaded(what, f"{name}.{key}")
                    c._buffers[key] = _plain(t).detach().to(device, copy=True)
        _GRAD_COPIES.add(out)
        return out


def vae_downscale(vae) -> int:
    return int(vae.spacial_compression_encode())


def _check_valid(vae) -> None:
    if getattr(vae, "first_stage_model", None) is None or not hasattr(vae, "decode") or not hasattr(vae, "encode"):
        raise ValueError("the VAE input is not a valid VAE (connect a checkpoint's or a VAE loader's VAE)")


def is_video_vae(vae) -> bool:
    """A video VAE: 5-D latents [B, C, T, h, w] of RGB frames (Wan, LTX-Video, HunyuanVideo, ...)."""
    return getattr(vae, "latent_dim", 2) == 3 and getattr(vae, "output_channels", 3) == 3


def is_rgba_vae(vae) -> bool:
    """An image VAE of RGBA pixels (Qwen-Image 2.1's: 2-D latents of 64 channels, 4 pixel channels)."""
    return getattr(vae, "latent_dim", 2) == 2 and getattr(vae, "output_channels", 3) == 4


def check_image_vae(vae, purpose: str) -> None:
    """ValueError unless ``vae`` encodes RGB pixels: an image VAE (2-D latents; an RGBA one, whose
    alpha the pack keeps opaque), or a video VAE (3-D latents [B, C, T, h, w]), through which an
    image is a one-frame video (Qwen-Image's VAE is Wan 2.1's; ``vae_encode`` / ``VAECodec`` encode
    each image alone)."""
    _check_valid(vae)
    if not is_video_vae(vae) and not is_rgba_vae(vae) and (
            getattr(vae, "latent_dim", 2) != 2 or getattr(vae, "output_channels", 3) != 3):
        raise ValueError(f"{purpose} needs an image or video VAE of RGB (or RGBA) pixels; audio and other VAEs "
                         "are not supported")


def with_alpha(pixels: torch.Tensor, vae) -> torch.Tensor:
    """RGB pixels [..., 3] as the VAE's input: an RGBA VAE gets an opaque alpha channel (ones)."""
    if is_rgba_vae(vae) and pixels.shape[-1] == 3:
        return torch.cat([pixels, torch.ones_like(pixels[..., :1])], dim=-1)
    return pixels


def video_frames(vae, frames: int) -> int:
    """How many of ``frames`` pixel frames a video VAE's encode / decode round trip keeps (Wan: 1 + 4k,
    LTX-Video: 1 + 8k), from the VAE's own temporal ratios."""
    up, down = vae.upscale_ratio[0], vae.downscale_ratio[0]
    return int(up(down(int(frames))))


def _pixels(px: torch.Tensor, video: bool) -> torch.Tensor:
    """Decoded pixels [B, (T,) H, W, 3 or 4] as RGB (an RGBA VAE's alpha dropped)."""
    if px.ndim != (5 if video else 4) or px.shape[-1] not in (3, 4):
        raise ValueError(f"the VAE decoded to shape {tuple(px.shape)}; an RGB {'video' if video else 'image'} VAE "
                         "is needed")
    return px[..., :3]


def _one_frame(z: torch.Tensor, purpose: str) -> None:
    if z.ndim != 5 or z.shape[2] != 1:
        raise ValueError(f"{purpose}: an image through this video VAE is a one-frame latent [batch, channels, 1, "
                         f"height, width], but the latent has shape {tuple(z.shape)}; encode images one at a time")


class VAECodec:
    """A ComfyUI VAE as a core codec (``dreamsampler_core.codec``): VAE-space latent [B, C, h, w] <->
    pixels [B, 3, H, W] in [-1, 1], optionally in the model's space (``latent_in`` / ``latent_out``:
    the model's process_latent_in / out; identity by default).  A video VAE maps each image as a
    one-frame video: latent [B, C, 1, h, w] <-> pixels [B, 3, H, W] (``one_frame``; Qwen-Image's Wan
    VAE).  With ``video`` a video VAE maps videos: latent [B, C, T', h, w] <-> frames [B, 3, T, H, W]
    (channels first, as the latent; each video encodes as ComfyUI's VAE Encode encodes an IMAGE batch
    of its frames).

    ``decode`` / ``encode`` go through ComfyUI's VAE (model loading, batching, tiled OOM fallback;
    no gradients; encode = the posterior mean).  ``decode_grad`` (DPS) and ``encode`` of an input
    that requires grad (score distillation) run a ``grad_copy`` of ``first_stage_model`` without the
    output clamp; the copy is kept until ``release()``."""

    def __init__(self, vae, purpose: str = "this node", latent_in=None, latent_out=None, video: bool = False):
        check_image_vae(vae, purpose)
        self.vae = vae
        self.purpose = purpose
        self.video = bool(video) and is_video_vae(vae)
        self.one_frame = is_video_vae(vae) and not self.video
        self.latent_in = latent_in or (lambda z: z)
        self.latent_out = latent_out or (lambda z: z)
        self._grad_model = None
        _CODECS.add(self)

    def in_model_space(self, latent_in, latent_out) -> "VAECodec":
        """This VAE as a codec between pixels and the model's latent space."""
        return VAECodec(self.vae, self.purpose, latent_in=latent_in, latent_out=latent_out, video=self.video)

    def downscale(self) -> int:
        return vae_downscale(self.vae)

    def frames(self, frames: int) -> int:
        """Pixel frames kept of ``frames`` (``video_frames``); ``frames`` for an image VAE."""
        return video_frames(self.vae, frames) if self.video else int(frames)

    def check_latent(self, z: torch.Tensor) -> None:
        """ValueError when ``z`` (VAE space) is not a latent of this VAE: its dimensions and channels."""
        dims, channels = (5 if self.video or self.one_frame else 4), getattr(self.vae, "latent_channels", None)
        if z.ndim != dims or (channels is not None and z.shape[1] != channels):
            kind = "video VAE (5-D latents [batch, channels, frames, height, width])" if dims == 5 \
                else "image VAE (4-D latents [batch, channels, height, width])"
            raise ValueError(f"{self.purpose}: the connected VAE is a {kind} with {channels} channels, but the latent "
                             f"has shape {tuple(z.shape)}; connect the VAE of the model that makes this latent")
        if self.one_frame:
            _one_frame(z, self.purpose)

    def grad_model(self):
        if self._grad_model is None:
            vae = self.vae
            self._grad_model = grad_copy(vae.first_stage_model, vae.patcher, vae.device, what="VAE")
        return self._grad_model

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        zv = self.latent_out(z)
        self.check_latent(zv)
        with torch.inference_mode():
            px = _pixels(self.vae.decode(zv), self.video or self.one_frame)   # [B, (T,) H, W, C] in [0, 1]
            px = px[:, 0] if self.one_frame else px
        return (px.clone().movedim(-1, 1) * 2.0 - 1.0).to(device=z.device, dtype=z.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        if x.requires_grad and torch.is_grad_enabled():
            rgb = (x + 1.0) / 2.0                                                  # [B, 3, (T,) H, W]
            if is_rgba_vae(vae):
                rgb = torch.cat([rgb, torch.ones_like(rgb[:, :1])], dim=1)
            pixels = vae.process_input(rgb).to(device=vae.device, dtype=vae.vae_dtype)
            z = self.grad_model().encode(pixels.unsqueeze(2) if self.one_frame else pixels)
            z = (z[0] if isinstance(z, tuple) else z).to(device=x.device, dtype=x.dtype)
        else:
            with torch.inference_mode():
                px = ((x.detach() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)   # [B, (T,) H, W, 3]
                # each video (an image: a one-frame video) as its own IMAGE batch (ComfyUI's encode of
                # 5-D pixels crops T, and it takes an IMAGE batch as one video's frames)
                items = px.unsqueeze(1) if self.one_frame else px
                z = torch.cat([vae.encode(v) for v in items]) if self.video or self.one_frame \
                    else vae.encode(with_alpha(px, vae))
            z = z.clone().to(device=x.device, dtype=x.dtype)
        return self.latent_in(z)

    def decode_grad(self, z: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        zv = self.latent_out(z)
        self.check_latent(zv)
        out = self.grad_model().decode(zv.to(device=vae.device, dtype=vae.vae_dtype))
        return (out[:, :3, 0] if self.one_frame else out[:, :3]).float().to(z.device)

    def release(self):
        self._grad_model = None


def vae_encode(vae, pixels: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """Images [B, H, W, 3] in [0, 1] (H, W multiples of the downscale) -> VAE-space latent [B, C, h, w],
    or [B, C, 1, h, w] through a video VAE (each image a one-frame video: ComfyUI's VAE Encode would
    take the batch as one video's frames); ComfyUI's tiled encoder (tile x tile pixels, tile/8
    overlap) when ``tile`` > 0 and the image is larger."""
    if is_video_vae(vae) and pixels.shape[0] > 1:
        return torch.cat([vae_encode(vae, pixels[i:i + 1], tile) for i in range(pixels.shape[0])])
    pixels = with_alpha(pixels, vae)
    if tile > 0 and max(pixels.shape[1], pixels.shape[2]) > tile:
        return vae.encode_tiled(pixels, tile_x=tile, tile_y=tile, overlap=tile // 8)
    return vae.encode(pixels)


def vae_decode(vae, latent: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """VAE-space latent of images -> pixels [B, H, W, 3] (a video VAE's one-frame latents: their frame);
    tiled (as VAE Decode (Tiled)) when ``tile`` > 0 pixels and the image is larger."""
    ds = int(vae.spacial_compression_decode())
    if tile > 0 and max(latent.shape[-2], latent.shape[-1]) * ds > tile:
        out = vae.decode_tiled(latent, tile_x=tile // ds, tile_y=tile // ds, overlap=max(1, tile // 8 // ds))
    else:
        out = vae.decode(latent)
    return out.reshape(-1, *out.shape[-3:])[..., :3]
