"""SDE-Drag (spec csd §3.3): drag points of a real image by latent copy-paste at t0 followed by
Cycle-SDE, with no UNet gradients.  Point parsing lives in :mod:`.points`, the DragBench item
loaders (§3.5) in :mod:`.formats.dragbench`.

Coordinates: pixel points are (x = column, y = row) in the image; latent points are
floor(pixel / f) with f the VAE's downscale factor (8 for SD).  Latents are [B, C, H, W].
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from . import cycle
from .denoiser import randn_like
from .points import Point, PointsError
from .schedule import Parameterization


# ----------------------------------------------------------------------------- geometry
def substep_count(sources: Sequence[Point], targets: Sequence[Point], step_size: float) -> int:
    """Number of sub-drags m: the longest drag L split into pieces close to ``step_size`` latent px."""
    L = max(math.dist(s, t) for s, t in zip(sources, targets))
    if L <= step_size:
        return 1
    m = int(math.floor(L / step_size))
    return m + 1 if abs(L / (m + 1) - step_size) < abs(L / m - step_size) else m


def substep_points(sources, targets, m: int, k: int) -> tuple[list, list]:
    """Sub-drag k of m: P + trunc(k/m d) -> P + trunc((k+1)/m d), d = Q - P (latent cells)."""
    srcs, tgts = [], []
    for (px, py), (qx, qy) in zip(sources, targets):
        dx, dy = qx - px, qy - py
        srcs.append((px + int(k / m * dx), py + int(k / m * dy)))
        tgts.append((px + int((k + 1) / m * dx), py + int((k + 1) / m * dy)))
    return srcs, tgts


def patch_extent(p: Point, q: Point, radius: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(up, down, left, right) half-sizes shared by the patches around p and q.

    Rows y-up .. y+down-1, cols x-left .. x+right-1; each side is shrunk to fit both points
    inside the latent (so both patches have the same shape).
    """
    (px, py), (qx, qy) = p, q
    return (min(radius, py, qy), min(radius, height - py, height - qy),
            min(radius, px, qx), min(radius, width - px, width - qx))


def copy_paste(z: Tensor, sources, targets, radius: int, alpha: float, beta: float,
               generator: torch.Generator | None = None) -> Tensor:
    """SDE-Drag's latent surgery on a VP latent z [B, C, H, W] (returns a new tensor).

    For each pair in order: F = z[patch(p)]; z[patch(p)] = beta F + sqrt(1 - beta^2) n (the code's
    variance-preserving perturbation, spec csd §3.9.1); z[patch(q)] = alpha F.  The paste may
    overwrite part of the freshly perturbed source (overlap) and later pairs overwrite earlier ones.
    """
    z = z.clone()
    H, W = z.shape[-2:]
    keep, add = float(beta), math.sqrt(max(0.0, 1.0 - float(beta) ** 2))
    for p, q in zip(sources, targets):
        up, down, left, right = patch_extent(p, q, radius, H, W)
        (px, py), (qx, qy) = p, q
        src = (..., slice(py - up, py + down), slice(px - left, px + right))
        tgt = (..., slice(qy - up, qy + down), slice(qx - left, qx + right))
        feat = z[src].clone()
        n = randn_like(feat, generator)
        z[src] = keep * feat + add * n
        z[tgt] = float(alpha) * feat
    return z


def guidance_ramp(steps: int, cfg: float, kind: str = "linear") -> list:
    """Per-step CFG scale of one sub-drag, step 0 at t0: linear from ``cfg`` at t0 down to 1 at the
    clean end (spec csd §3.3), or constant."""
    if kind == "constant" or steps <= 1:
        return [float(cfg)] * steps
    if kind != "linear":
        raise ValueError(f"guidance ramp must be 'linear' or 'constant', got {kind!r}")
    return [float(cfg) - (float(cfg) - 1.0) * i / (steps - 1) for i in range(steps)]


# ----------------------------------------------------------------------------- algorithm
@torch.no_grad()
def sde_drag(denoise, x0: Tensor, sigmas: Tensor, param: Parameterization, sources, targets, *,
             mask: Tensor | None = None, alpha: float = 1.1, beta: float = 0.3, radius: int = 5,
             step_size: float = 2.0, generator: torch.Generator | None = None, callback=None) -> Tensor:
    """SDE-Drag (spec csd §3.3) from the clean latent x0 [B, C, H, W] (model space, at sigmas[-1]).

    denoise(x, sigma) -> x0 with the prompt (the host applies the guidance ramp by level).
    sigmas: descending from the t0 level to the smallest level (> 0).  sources/targets: latent
    cells (x, y).  mask [B|1, 1, H, W], 1 = editable.  Each sub-drag: Markov forward noising
    (Eq. 7) with noise recovery (Eq. 8), copy-paste at t0, Cycle-SDE back (Eq. 6, eta = 1) with
    the unedited region reset to the forward path after every step.
    ``callback(sub, m, phase, k, x0_hat, x)`` with phase "encode" | "decode".
    """
    cycle.check_end_level(sigmas)
    H, W = x0.shape[-2:]
    for i, (x, y) in enumerate([*sources, *targets]):
        if not (0 <= x < W and 0 <= y < H):
            raise PointsError(f"latent point {i} ({x}, {y}) is outside the {W}x{H} latent")
    m = substep_count(sources, targets, step_size)
    x = x0
    for sub in range(m):
        p_k, q_k = substep_points(sources, targets, m, sub)

        def enc_cb(k, x0_hat, x_t, sub=sub):
            if callback is not None:
                callback(sub, m, "encode", k, x0_hat, x_t)

        def dec_cb(k, z, x_t, sub=sub):
            if callback is not None:
                callback(sub, m, "decode", k, z, x_t)

        code = cycle.dpm_encode(denoise, x, sigmas, param, eta=1.0, coupling="markov", generator=generator,
                                callback=enc_cb)
        vp = param.vp_scale(sigmas[0])
        start = copy_paste(code.x_start / vp, p_k, q_k, radius, alpha, beta, generator) * vp
        x = cycle.cycle_decode(denoise, code, param, x_start=start, mask=mask, callback=dec_cb)
    return x
