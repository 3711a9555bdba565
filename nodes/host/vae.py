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


def check_image_vae(vae, purpose: str) -> None:
    """ValueError unless ``vae`` is an image VAE (2-D latents, RGB pixels)."""
    if getattr(vae, "first_stage_model", None) is None or not hasattr(vae, "decode") or not hasattr(vae, "encode"):
        raise ValueError("the VAE input is not a valid VAE (connect a checkpoint's or a VAE loader's VAE)")
    if getattr(vae, "latent_dim", 2) != 2 or getattr(vae, "output_channels", 3) != 3:
        raise ValueError(f"{purpose} needs an image VAE (2-D latents, RGB output); "
                         "video and audio VAEs are not supported")


def _rgb(px: torch.Tensor) -> torch.Tensor:
    if px.ndim != 4 or px.shape[-1] != 3:
        raise ValueError(f"the VAE decoded to shape {tuple(px.shape)}; an RGB image VAE is needed")
    return px


class VAECodec:
    """A ComfyUI VAE as a core codec (``dreamsampler_core.codec``): VAE-space latent [B, C, h, w] <->
    pixels [B, 3, H, W] in [-1, 1], optionally in the model's space (``latent_in`` / ``latent_out``:
    the model's process_latent_in / out; identity by default).

    ``decode`` / ``encode`` go through ComfyUI's VAE (model loading, batching, tiled OOM fallback;
    no gradients; encode = the posterior mean).  ``decode_grad`` (DPS) and ``encode`` of an input
    that requires grad (score distillation) run a ``grad_copy`` of ``first_stage_model`` without the
    output clamp; the copy is kept until ``release()``."""

    def __init__(self, vae, purpose: str = "this node", latent_in=None, latent_out=None):
        check_image_vae(vae, purpose)
        self.vae = vae
        self.latent_in = latent_in or (lambda z: z)
        self.latent_out = latent_out or (lambda z: z)
        self._grad_model = None

    def in_model_space(self, latent_in, latent_out) -> "VAECodec":
        """This VAE as a codec between pixels and the model's latent space."""
        return VAECodec(self.vae, latent_in=latent_in, latent_out=latent_out)

    def downscale(self) -> int:
        return vae_downscale(self.vae)

    def grad_model(self):
        if self._grad_model is None:
            vae = self.vae
            self._grad_model = grad_copy(vae.first_stage_model, vae.patcher, vae.device)
        return self._grad_model

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            px = _rgb(self.vae.decode(self.latent_out(z)))            # [B, H, W, C] in [0, 1]
        return (px.clone().movedim(-1, 1) * 2.0 - 1.0).to(device=z.device, dtype=z.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        if x.requires_grad and torch.is_grad_enabled():
            pixels = vae.process_input((x + 1.0) / 2.0).to(device=vae.device, dtype=vae.vae_dtype)
            z = self.grad_model().encode(pixels)
            z = (z[0] if isinstance(z, tuple) else z).to(device=x.device, dtype=x.dtype)
        else:
            with torch.inference_mode():
                z = vae.encode(((x.detach() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1))
            z = z.clone().to(device=x.device, dtype=x.dtype)
        return self.latent_in(z)

    def decode_grad(self, z: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        out = self.grad_model().decode(self.latent_out(z).to(device=vae.device, dtype=vae.vae_dtype))
        return out.float().to(z.device)

    def release(self):
        self._grad_model = None


def vae_encode(vae, pixels: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """pixels [B, H, W, 3] in [0, 1] (H, W multiples of the downscale) -> VAE-space latent; ComfyUI's
    tiled encoder (tile x tile pixels, tile/8 overlap) when ``tile`` > 0 and the image is larger."""
    if tile > 0 and max(pixels.shape[1], pixels.shape[2]) > tile:
        return vae.encode_tiled(pixels, tile_x=tile, tile_y=tile, overlap=tile // 8)
    return vae.encode(pixels)


def vae_decode(vae, latent: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """VAE-space latent -> pixels [B, H, W, 3]; tiled (as VAE Decode (Tiled)) when ``tile`` > 0 pixels
    and the image is larger."""
    ds = int(vae.spacial_compression_decode())
    if tile > 0 and max(latent.shape[-2], latent.shape[-1]) * ds > tile:
        out = vae.decode_tiled(latent, tile_x=tile // ds, tile_y=tile // ds, overlap=max(1, tile // 8 // ds))
    else:
        out = vae.decode(latent)
    return out.reshape(-1, *out.shape[-3:])
