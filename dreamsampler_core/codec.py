"""Codecs between the pixels a regularizer or a generator works on and the latents the model sees.

A codec has ``encode(x) -> z`` and ``decode(z) -> x`` (pixels [B, 3, H, W] in [-1, 1] <-> latents),
optionally ``decode_grad(z)`` (a decoder autograd can pass through, for DPS) and ``release()`` (frees
what it keeps between calls, e.g. a differentiable copy of a VAE; called by whoever made the codec,
at the end of the run).  A codec whose latents are not the model's (a VAE's latent space, before the
model's ``latent_in``) has ``in_model_space(latent_in, latent_out) -> codec``: the same codec between
pixels and the model's space, which a pipeline makes for its run and releases at its end.  The host's
VAE codecs live with the host (nodes/host/vae.py).
"""
from __future__ import annotations

from torch import Tensor


class IdentityCodec:
    """The latent *is* the image (analytic oracles, pixel-space models): E = D = identity."""

    def encode(self, x: Tensor) -> Tensor:
        return x

    def decode(self, z: Tensor) -> Tensor:
        return z

    def decode_grad(self, z: Tensor) -> Tensor:
        return z

    def release(self) -> None:
        return None
