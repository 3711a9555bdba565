"""LanPaint (Zheng et al. 2025, "LanPaint: training-free diffusion inpainting with Langevin
'thinking' steps"), written from the paper for the bench and the tests (never shipped).

Per sampler step, before the ordinary step, a few overdamped Langevin iterations run on the whole
latent in variance-preserving (VP) units x_vp = sqrt(abt) x0 + sqrt(1 - abt) eps:

    unknown region: drift toward the model's x0 (the plain score of p_t)
    known region:   drift toward x0' = (1 + lam) y - lam x0_BIG   (bidirectional guidance, "BiG")
    drift(x) = (sqrt(abt) x0' - x) / (1 - abt),  linear part A x with A = 1 / (1 - abt) (unknown),
               (1 + lam) / (1 - abt) (known), integrated exactly (exponential integrator),
    dt = step_size (unknown), step_size * beta (known); noise sqrt(2) dW.

Each iteration costs one (guided) model call; x0_BIG is the same call's prediction at the guidance
scale cfg_big ("Image First": cfg_big = cfg; "Prompt First": -0.5).  The number of iterations at a
step is round(N (1 - abt)) and none at the last ``early_stop`` steps (the official KSampler node's
schedule, MinStepFrac 1).  The known region is replaced by the noised source (the sampler's own
noise) at every call, and the returned x0 is the source there.
"""
from __future__ import annotations

import math

import torch


def vp_scales(a: float, s: float):
    """(abt, r) for x = a x0 + s eps: x_vp = x / r, abt = a^2 / r^2."""
    r = math.sqrt(a * a + s * s)
    return (a / r) ** 2, r


def thinking_count(n_steps: int, abt: float, step_index: int, total_steps: int, early_stop: int = 1) -> int:
    """Langevin iterations at one sampler step (round(N (1 - abt)); 0 in the last early_stop steps)."""
    if total_steps - step_index <= early_stop:
        return 0
    return max(0, round(n_steps * (1.0 - abt)))


def _ou_step(x, dt, A, C, gen):
    """Exact step of dx = (C - A x) dt + sqrt(2) dW with C frozen: the OU transition."""
    decay = torch.exp(-A * dt)
    k = -torch.expm1(-A * dt) / A
    var = -torch.expm1(-2 * A * dt) / A          # D^2 (1 - e^{-2 A dt}) / (2 A), D^2 = 2
    z = torch.randn(x.shape, generator=gen, dtype=x.dtype, device="cpu").to(x.device)
    return decay * x + k * C + var.clamp_min(0).sqrt() * z


def langevin(x_vp, abt: float, known, y, predict, n_iters: int, lam: float, step_size: float, beta: float, gen):
    """``n_iters`` LanPaint iterations on x_vp [B, ...] (VP units).  known: 1 where the source y is
    kept (broadcastable); predict(x_vp) -> (x0, x0_big) at this noise level."""
    one_minus = 1.0 - abt
    A = (1.0 + lam * known) / one_minus                     # [unknown: 1, known: 1 + lam] / (1 - abt)
    dt = step_size * (1.0 - known) + step_size * beta * known

    def coef(x):
        x0, x0_big = predict(x)
        target = x0 * (1 - known) + ((1 + lam) * y - lam * x0_big) * known
        return (math.sqrt(abt) * target - x) / one_minus + A * x

    C = None
    for _ in range(n_iters):
        if C is None:
            C = coef(x_vp)
            x_vp = _ou_step(x_vp, dt, A, C, gen)
        else:                                               # the official half-step correction
            x_vp = _ou_step(x_vp, dt / 2, A, C, gen)
            C_new = coef(x_vp)
            x_vp = x_vp + (C_new - C) * dt
            x_vp = _ou_step(x_vp, dt / 2, A, C, gen)
            C = C_new
    return x_vp
