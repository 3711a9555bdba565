"""The host's VAE and gradients: ComfyUI VAEs as the core's codecs, and copies autograd can use.

ComfyUI runs every node under ``torch.inference_mode()``; the loaded weights are inference tensors
that autograd cannot save (spec comfyui §A6).  A gradient path therefore runs a deep copy of the
network made outside inference mode (``grad_copy``), kept until the codec's ``release()`` (the
sampler adapter releases what a run used) and never written back: the shared MODEL / VAE are not
modified.
"""
from __future__ import annotations

import copy as _copy

import torch

import comfy.model_management


def grad_copy(module: torch.nn.Module, patcher=None, device=None) -> torch.nn.Module:
    """A deep copy of ``module`` (the loaded, patched weights) outside inference mode, frozen
    (requires_grad False), for autograd through it.  ``patcher``: loaded first (its patches applied)."""
    with torch.inference_mode(False):
        if patcher is not None:
            comfy.model_management.load_models_gpu([patcher])
        copy = _copy.deepcopy(module).requires_grad_(False)
        return copy if device is None else copy.to(device)


def vae_downscale(vae) -> int:
    return int(vae.spacial_compression_encode())


def _check_valid(vae) -> None:
    if getattr(vae, "first_stage_model", None) is None or not hasattr(vae, "decode") or not hasattr(vae, "encode"):
        raise ValueError("the VAE input is not a valid VAE (connect a checkpoint's or a VAE loader's VAE)")


def is_video_vae(vae) -> bool:
    """A video VAE: 5-D latents [B, C, T, h, w] of RGB frames (Wan, LTX-Video, HunyuanVideo, ...)."""
    return getattr(vae, "latent_dim", 2) == 3 and getattr(vae, "output_channels", 3) == 3


def check_image_vae(vae, purpose: str) -> None:
    """ValueError unless ``vae`` encodes RGB pixels: an image VAE (2-D latents) or a video VAE (3-D
    latents [B, C, T, h, w]), through which an image is a one-frame video (Qwen-Image's VAE is Wan
    2.1's; ``vae_encode`` / ``VAECodec`` encode each image alone)."""
    _check_valid(vae)
    if not is_video_vae(vae) and (getattr(vae, "latent_dim", 2) != 2 or getattr(vae, "output_channels", 3) != 3):
        raise ValueError(f"{purpose} needs an image or video VAE of RGB pixels; audio and other VAEs are not "
                         "supported")


def video_frames(vae, frames: int) -> int:
    """How many of ``frames`` pixel frames a video VAE's encode / decode round trip keeps (Wan: 1 + 4k,
    LTX-Video: 1 + 8k), from the VAE's own temporal ratios."""
    up, down = vae.upscale_ratio[0], vae.downscale_ratio[0]
    return int(up(down(int(frames))))


def _pixels(px: torch.Tensor, video: bool) -> torch.Tensor:
    if px.ndim != (5 if video else 4) or px.shape[-1] != 3:
        raise ValueError(f"the VAE decoded to shape {tuple(px.shape)}; an RGB {'video' if video else 'image'} VAE "
                         "is needed")
    return px


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
            self._grad_model = grad_copy(vae.first_stage_model, vae.patcher, vae.device)
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
            pixels = vae.process_input((x + 1.0) / 2.0).to(device=vae.device, dtype=vae.vae_dtype)
            z = self.grad_model().encode(pixels.unsqueeze(2) if self.one_frame else pixels)
            z = (z[0] if isinstance(z, tuple) else z).to(device=x.device, dtype=x.dtype)
        else:
            with torch.inference_mode():
                px = ((x.detach() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)   # [B, (T,) H, W, 3]
                # each video (an image: a one-frame video) as its own IMAGE batch (ComfyUI's encode of
                # 5-D pixels crops T, and it takes an IMAGE batch as one video's frames)
                items = px.unsqueeze(1) if self.one_frame else px
                z = torch.cat([vae.encode(v) for v in items]) if self.video or self.one_frame else vae.encode(px)
            z = z.clone().to(device=x.device, dtype=x.dtype)
        return self.latent_in(z)

    def decode_grad(self, z: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        zv = self.latent_out(z)
        self.check_latent(zv)
        out = self.grad_model().decode(zv.to(device=vae.device, dtype=vae.vae_dtype))
        return (out[:, :, 0] if self.one_frame else out).float().to(z.device)

    def release(self):
        self._grad_model = None


def vae_encode(vae, pixels: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """Images [B, H, W, 3] in [0, 1] (H, W multiples of the downscale) -> VAE-space latent [B, C, h, w],
    or [B, C, 1, h, w] through a video VAE (each image a one-frame video: ComfyUI's VAE Encode would
    take the batch as one video's frames); ComfyUI's tiled encoder (tile x tile pixels, tile/8
    overlap) when ``tile`` > 0 and the image is larger."""
    if is_video_vae(vae) and pixels.shape[0] > 1:
        return torch.cat([vae_encode(vae, pixels[i:i + 1], tile) for i in range(pixels.shape[0])])
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
    return out.reshape(-1, *out.shape[-3:])
