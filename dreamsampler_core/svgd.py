"""Stein variational gradient combination of N particles' distillation directions (CSD, spec csd §1.2).

Collaborative Score Distillation (Kim et al., NeurIPS 2023) treats N images (panorama windows,
video frames) as SVGD particles (Liu & Wang, 2016).  Particle i's update is a kernel-weighted average
of every particle's direction plus the gradient of the kernel:

    g_i = (1/N) sum_j [ K_ij Delta_j + R_ij ],     K_ij = exp(-gamma ||f_i - f_j||^2),
    R_i = sum_j R_ij = sum_j -2 gamma K_ij (f_i - f_j),

with f the particles' kernel features (CSD: the flattened noisy target latents).  The caller applies
descent, x_i <- x_i - lr * w(t) * g_i; with descent -R_i pushes x_i *away* from its neighbours,
which is true SVGD repulsion because Delta is proportional to the negative score.  This is the
official code's sign, not the concept figure's "+grad k" (which would attract; spec §1.2, §1.9.1).

Bandwidth (median trick, exactly as the reference SVGD code, spec §1.2):
D_ij = ||f_i - f_j||^2 over the full N x N matrix *including* the zero diagonal, m = the lower median
of its N^2 entries (``torch.median``), h^2 = 0.5 m / log(N + 1), gamma = 1 / (2 h^2) = log(N + 1) / m
(for N = 2, where that median is 0, see ``median_gamma``).

All kernel math is float32 (float64 inputs stay float64); deltas keep their dtype.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _flat(t: Tensor) -> Tensor:
    """[N, ...] -> [N, d] in at least float32 (the kernel is never computed in half precision)."""
    f = t.reshape(t.shape[0], -1)
    return f.double() if f.dtype == torch.float64 else f.float()


def pairwise_sq_dists(features: Tensor) -> Tensor:
    """D_ij = ||f_i - f_j||^2 for features [N, ...] -> [N, N] (exact zero diagonal, symmetric).

    Computed from the centred Gram matrix: distances do not depend on the mean, and centring
    removes the cancellation of  |f_i|^2 + |f_j|^2 - 2 f_i.f_j  for features far from the origin."""
    f = _flat(features)
    f = f - f.mean(0, keepdim=True)
    sq = (f * f).sum(1)
    d = (sq[:, None] + sq[None, :] - 2.0 * (f @ f.T)).clamp_min(0.0)
    d = 0.5 * (d + d.T)
    return d.fill_diagonal_(0.0)


def median_gamma(sq_dists: Tensor) -> float:
    """gamma = log(N + 1) / m, m the lower median of all N^2 entries of D (diagonal included).

    Degenerate case: m = 0 whenever at least half of the entries are zero, which is *always* so for
    N = 2 (entries 0, 0, d, d) and when most particles coincide; the official code would then divide by
    zero.  There m is the smallest positive entry instead (N = 2: K_12 = 1/3); if every distance is 0 the
    kernel is all ones and R = 0 whatever gamma is (gamma = 0 is returned)."""
    n = sq_dists.shape[0]
    flat = sq_dists.reshape(-1)
    m = float(torch.median(flat))
    if m <= 0.0:
        positive = flat[flat > 0]
        if positive.numel() == 0:
            return 0.0
        m = float(positive.min())
    return math.log(n + 1) / m


def rbf_kernel(features: Tensor, gamma: float | None = None) -> tuple[Tensor, Tensor, float]:
    """RBF kernel and its repulsive gradient term on features [N, ...].

    Returns (K [N, N], R [N, ...] in the features' shape, gamma) with
    K_ij = exp(-gamma D_ij) and R_i = sum_j -2 gamma K_ij (f_i - f_j) (the official code's R; spec §1.2).
    ``gamma`` None: the median trick (``median_gamma``)."""
    f = _flat(features)
    d = pairwise_sq_dists(features)
    if gamma is None:
        gamma = median_gamma(d)
    k = torch.exp(-float(gamma) * d)
    # sum_j K_ij (f_i - f_j) = f_i sum_j K_ij - (K f)_i
    pull = f * k.sum(1, keepdim=True) - k @ f
    r = (-2.0 * float(gamma)) * pull
    return k, r.reshape(features.shape), float(gamma)


def svgd_combine(deltas: Tensor, features: Tensor, *, gamma: float | None = None,
                 repulsion: float = 1.0) -> Tensor:
    """Per-particle SVGD update  g_i = (1/N) ( sum_j K_ij Delta_j + repulsion * R_i )  (spec §1.2, §4.6).

    deltas: [N, ...] each particle's distillation direction (CSD-Edit: Delta E = eps_target - eps_source,
    in noise units); features: [N, ...] the kernel features (CSD: the noisy target latents x_t).
    The caller multiplies by w(t) and applies descent.  ``repulsion`` scales the kernel-gradient term
    (1 = SVGD; 0 = kernel smoothing only).  N = 1 returns ``deltas`` unchanged (K = 1, R = 0): the
    single-image SDS / DDS update exactly.  Note the 1/N: with the median bandwidth the kernel is
    close to diagonal (row sums about 2), so each particle's step is about 2/N of an independent
    DDS step at the same learning rate.
    """
    n = deltas.shape[0]
    if n == 0:
        raise ValueError("svgd_combine needs at least one particle")
    if features.shape[0] != n:
        raise ValueError(f"deltas ({n}) and features ({features.shape[0]}) must have one row per particle")
    if deltas[0].numel() != features[0].numel():
        raise ValueError("the kernel gradient lives in feature space: features must have the deltas' size "
                         "per particle")
    if n == 1:
        return deltas.clone()
    k, r, _ = rbf_kernel(features, gamma)
    flat = _flat(deltas)
    mixed = (k.to(flat.dtype) @ flat).reshape(deltas.shape)
    out = mixed + float(repulsion) * r.to(mixed.dtype).reshape(deltas.shape) if repulsion else mixed
    return (out / n).to(deltas.dtype)
