"""An analytic model on which fixed-point refinement of the inversion runs away (issue 18).

The data are a Gaussian mixture whose means, and the test latent, have no component along the
unit direction ``v`` (the all-ones direction: the latent's mean).  The exact denoiser then keeps
that component at zero on every level, so the inverted latent has it only through round-off.
At sigma >= 0.99 the model adds ``(gain p + cubic p^3) v``, p = <x, v>: negligible at the latents
inversion and sampling visit, but on flow models at sigma = 1 the refinement map
x <- (x_lo - a_lo D(x)) / s_lo multiplies the p-component by -a_lo (gain + 3 cubic p^2) / s_lo, so
with a_lo / s_lo = 1/11 (12 steps) and gain 110 the round-off seed grows tenfold per iteration
and then cubically to inf / NaN -- the way tiny float differences decide the outcome near sigma = 1.
Host-independent (torch only); wrapped as a ComfyUI model by ``tiny_models.oracle_model``.
"""
from __future__ import annotations

import math

import torch

from dreamsampler_core.analytic import GaussianMixture

GAIN, CUBIC, SIGMA_FROM = 110.0, 100.0, 0.99


def mean_direction(d: int, dtype=torch.float64) -> torch.Tensor:
    return torch.ones(d, dtype=dtype) / math.sqrt(d)


def mean_free(x: torch.Tensor) -> torch.Tensor:
    """x [B, ...] without its component along the mean direction."""
    flat = x.reshape(x.shape[0], -1)
    v = mean_direction(flat.shape[1], flat.dtype)
    return (flat - (flat @ v)[:, None] * v).reshape(x.shape)


def mean_free_mixture(d: int, seed: int = 0) -> GaussianMixture:
    gm = GaussianMixture.two_class(d, sep=3.0, std=0.5, seed=seed)
    return GaussianMixture(mean_free(gm.means), gm.stds, gm.weights)


def sample(gm: GaussianMixture, n: int, seed: int, shape) -> torch.Tensor:
    """n class-0 samples with no mean component, [n, *shape] float64."""
    return mean_free(gm.sample(n, torch.Generator().manual_seed(seed), cls_index=0)).reshape(n, *shape)


def perturbation(x: torch.Tensor, sigma, gain: float = GAIN, cubic: float = CUBIC) -> torch.Tensor:
    """The term added to the Tweedie estimate at x [B, ...] (zero below SIGMA_FROM)."""
    if float(sigma) < SIGMA_FROM:
        return torch.zeros_like(x)
    flat = x.reshape(x.shape[0], -1).double()
    v = mean_direction(flat.shape[1])
    p = flat @ v
    return ((gain * p + cubic * p ** 3)[:, None] * v).reshape(x.shape).to(x.dtype)


def expansive_denoiser(denoise, gain: float = GAIN, cubic: float = CUBIC):
    """denoise(x, sigma) -> x0 with the perturbation added."""
    return lambda x, sigma: denoise(x, sigma) + perturbation(x, sigma, gain, cubic)
