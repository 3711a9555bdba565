"""DDIM inversion of a clean latent (spec dreamsampler §2.1, §6 "Inversion").

The inversion walks the sampler's own sigma grid upward, so that running the deterministic
(eta = 0) reverse sampler on the same grid comes back to the input.  Plain inversion uses the
official convention (model evaluated at the *higher* level on the lower latent, rescaled to that
level); ``refine`` adds fixed-point iterations that solve each step exactly, i.e. they find the
x_hi whose reverse DDIM step lands on x_lo (the idea of "exact"/ReNoise-style inversions).  The
iteration is guarded (best iterate by residual, stop on growth or NaN): where the map is not a
contraction it falls back to the best iterate seen, at worst the plain step.
"""
from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class RefineStats:
    """What the guarded refinement did, summed over steps and batch items."""

    requested: int = 0    # refinement iterations asked for (steps x refine x batch items)
    helped: int = 0       # iterations that lowered the reverse-step residual (kept)
    non_finite: int = 0   # iterates that came out NaN / inf (discarded)

    def as_dict(self) -> dict:
        return {"requested": self.requested, "helped": self.helped, "non_finite": self.non_finite}


def refine_gain(s_lo, s_hi, param: Parameterization) -> float:
    """c of the fixed-point update x_hi <- x_hi - c r: the eps-form c = a_hi / a_lo, or the D-form
    c = s_hi / s_lo where the eps-form degenerates (flow at sigma ~ 1, a_hi ~ 0)."""
    a_lo, a_hi = float(param.signal(s_lo)), float(param.signal(s_hi))
    n_lo = float(param.noise(s_lo))
    return a_hi / a_lo if (a_hi > _MIN_SIGNAL or n_lo == 0.0) else float(param.noise(s_hi)) / n_lo


def step_residual(denoise: Callable, x_hi: Tensor, x_lo: Tensor, s_lo, s_hi, param: Parameterization) -> Tensor:
    """r = DDIM(x_hi: s_hi -> s_lo) - x_lo, [B, ...]: how far the reverse step from x_hi misses x_lo."""
    return reverse_ddim_step(denoise(x_hi, s_hi), x_hi, s_hi, s_lo, param) - x_lo


def _norms(r: Tensor) -> Tensor:
    """Per batch item L2 norm, [B] float64 (inf / nan where r is not finite)."""
    return r.double().flatten(1).norm(dim=1)


def _rows(mask: Tensor, ref: Tensor) -> Tensor:
    return mask.reshape((-1,) + (1,) * (ref.ndim - 1)).to(ref.device)


def invert_step(denoise: Callable, x_lo: Tensor, s_lo, s_hi, param: Parameterization,
                refine: int = 0, stats: RefineStats | None = None) -> Tensor:
    """One inversion step x(s_lo) -> x(s_hi), s_hi > s_lo >= 0.  x_lo: [B, ...].

    ``refine`` > 0: guarded fixed-point iterations x_hi <- x_hi - c r(x_hi) on the reverse-step
    residual r.  Each batch item keeps its best iterate (smallest ||r||) and stops as soon as an
    iterate does not lower ||r|| or is not finite, so the result is never worse than the plain
    step.  The map converges only where it contracts (|c dr/dx| < 1); on flow models at sigma = 1
    it is x_hi <- (x_lo - a_lo D(x_hi)) / s_lo, which a steep model makes expansive.
    Model calls: 1 (plain step), + 1 (its residual) + 1 per iteration run when ``refine`` > 0.
    """
    a_hi = float(param.signal(s_hi))
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
    if refine <= 0:
        return x_hi
    c = refine_gain(s_lo, s_hi, param)
    r = step_residual(denoise, x_hi, x_lo, s_lo, s_hi, param)
    best = _norms(r)
    active = torch.isfinite(best)
    if stats is not None:
        stats.requested += int(refine) * x_hi.shape[0]
    for _ in range(int(refine)):
        if not bool(active.any()):
            break
        # finished items are re-evaluated at their best iterate (a finite input for the batch)
        cand = torch.where(_rows(active, x_hi), x_hi - c * r, x_hi)
        r_cand = step_residual(denoise, cand, x_lo, s_lo, s_hi, param)
        n_cand = _norms(r_cand)
        finite = torch.isfinite(n_cand)
        better = active & finite & (n_cand < best)
        x_hi = torch.where(_rows(better, x_hi), cand, x_hi)
        r = torch.where(_rows(better, r), r_cand, r)
        best = torch.where(better, n_cand, best)
        if stats is not None:
            stats.helped += int(better.sum())
            stats.non_finite += int((active & ~finite).sum())
        active = better
    return x_hi


@torch.no_grad()
def ddim_invert(denoise: Callable, x0: Tensor, sigmas: Tensor, param: Parameterization, *,
                refine: int = 0, callback=None, stats: RefineStats | None = None) -> Tensor:
    """Invert ``x0`` (at ``sigmas[-1]``, usually 0) up to ``sigmas[0]``.

    denoise(x, sigma) -> x0 estimate (the null / source prediction; the official code uses the
        null prompt with CFG scale 0).
    sigmas: the *sampling* grid, descending (the one the reverse sampler will use).
    Returns x at sigmas[0].  ``callback(k, x)`` after each of the len(sigmas) - 1 steps.
    ``stats``: a RefineStats that the guarded refinement adds its counts to.
    """
    x = x0
    n = len(sigmas) - 1
    for k in range(n):
        s_lo, s_hi = sigmas[n - k], sigmas[n - k - 1]
        x = invert_step(denoise, x, s_lo, s_hi, param, refine=refine, stats=stats)
        if callback is not None:
            callback(k, x)
    return x


@torch.no_grad()
def ddim_reconstruct(denoise: Callable, x: Tensor, sigmas: Tensor, param: Parameterization) -> Tensor:
    """Plain deterministic DDIM from sigmas[0] down the grid (the inverse of ``ddim_invert``)."""
    for i in range(len(sigmas) - 1):
        x = reverse_ddim_step(denoise(x, sigmas[i]), x, sigmas[i], sigmas[i + 1], param)
    return x
