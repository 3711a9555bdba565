"""DDIM inversion of a clean latent (spec dreamsampler §2.1, §6 "Inversion").

The inversion walks the sampler's own sigma grid upward, so that running the deterministic
(eta = 0) reverse sampler on the same grid comes back to the input.  Plain inversion uses the
official convention (model evaluated at the *higher* level on the lower latent, rescaled to that
level); ``refine`` adds fixed-point iterations that solve each step exactly, i.e. they find the
x_hi whose reverse DDIM step lands on x_lo (the idea of "exact"/ReNoise-style inversions).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .schedule import Parameterization

# below this signal coefficient (flow models at sigma = 1) the eps-form is degenerate: use the D-form
_MIN_SIGNAL = 0.05


def reverse_ddim_step(x0: Tensor, x: Tensor, sigma, sigma_next, param: Parameterization) -> Tensor:
    """Deterministic DDIM step from ``sigma`` to ``sigma_next`` given the Tweedie ``x0`` at x."""
    if float(sigma_next) == 0.0:
        return x0
    return param.compose(x0, param.eps(x, x0, sigma), sigma_next)


def invert_step(denoise: Callable, x_lo: Tensor, s_lo, s_hi, param: Parameterization,
                refine: int = 0) -> Tensor:
    """One inversion step x(s_lo) -> x(s_hi), s_hi > s_lo >= 0."""
    a_lo, a_hi = float(param.signal(s_lo)), float(param.signal(s_hi))
    n_lo = float(param.noise(s_lo))
    if a_hi > _MIN_SIGNAL or n_lo == 0.0:
        # official convention: the lower latent, moved to the higher level's scale, evaluated there
        x_in = x_lo * (param.vp_scale(s_hi) / param.vp_scale(s_lo))
        eps = param.eps(x_in, denoise(x_in, s_hi), s_hi)
    else:
        # flow at sigma ~ 1: evaluate at the lower level (Euler inversion)
        eps = param.eps(x_lo, denoise(x_lo, s_lo), s_lo)
    x0 = x_lo if n_lo == 0.0 else param.x0(x_lo, eps, s_lo)
    x_hi = param.compose(x0, eps, s_hi)
    for _ in range(refine):
        # residual of the reverse step, corrected with the eps-form (c = a_hi/a_lo) or the
        # D-form (c = s_hi/s_lo) where the eps-form degenerates (a_hi ~ 0)
        d_hi = denoise(x_hi, s_hi)
        r = reverse_ddim_step(d_hi, x_hi, s_hi, s_lo, param) - x_lo
        c = a_hi / a_lo if (a_hi > _MIN_SIGNAL or n_lo == 0.0) else float(param.noise(s_hi)) / n_lo
        x_hi = x_hi - c * r
    return x_hi


@torch.no_grad()
def ddim_invert(denoise: Callable, x0: Tensor, sigmas: Tensor, param: Parameterization, *,
                refine: int = 0, callback=None) -> Tensor:
    """Invert ``x0`` (at ``sigmas[-1]``, usually 0) up to ``sigmas[0]``.

    denoise(x, sigma) -> x0 estimate (the null / source prediction; the official code uses the
        null prompt with CFG scale 0).
    sigmas: the *sampling* grid, descending (the one the reverse sampler will use).
    Returns x at sigmas[0].  ``callback(k, x)`` after each of the len(sigmas) - 1 steps.
    """
    x = x0
    n = len(sigmas) - 1
    for k in range(n):
        s_lo, s_hi = sigmas[n - k], sigmas[n - k - 1]
        x = invert_step(denoise, x, s_lo, s_hi, param, refine=refine)
        if callback is not None:
            callback(k, x)
    return x


@torch.no_grad()
def ddim_reconstruct(denoise: Callable, x: Tensor, sigmas: Tensor, param: Parameterization) -> Tensor:
    """Plain deterministic DDIM from sigmas[0] down the grid (the inverse of ``ddim_invert``)."""
    for i in range(len(sigmas) - 1):
        x = reverse_ddim_step(denoise(x, sigmas[i]), x, sigmas[i], sigmas[i + 1], param)
    return x
