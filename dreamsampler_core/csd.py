"""CSD-Edit: Collaborative Score Distillation for consistent edits of panoramas and frame sequences.

Kim et al., "Collaborative Score Distillation for Consistent Visual Synthesis" (NeurIPS 2023), as
specified in spec csd §1.2-§1.5.  The particles are N latents optimized directly (the generator is
the identity): the frames of a batch, or overlapping windows of one large latent.  Per iteration:

1. one level for all particles, u ~ U[t_min, t_max] (normalized time, official t ~ U{20..500}/1000),
   sigma = sigma_at(u); an independent eps_i per particle;
2. the target and the source noised with the *same* eps_i at the same sigma:
   x_t^i = a X^i + s eps_i,   x~_t^i = a S^i + s eps_i;
3. the control-variate direction (DDS-like; spec §1.2)
   Delta E^i = eps_hat_target(x_t^i) - eps_hat_source(x~_t^i),
   where the host's two denoisers (``denoiser.py``) give the guided Tweedie estimates, both called
   with ``image=`` the particles' *source* latents (InstructPix2Pix's image condition: the
   instruction with three-way guidance vs the source prompt; text-to-image models ignore it);
4. the SVGD combination g^i = (1/N)(sum_j K_ij Delta E^j + R_i) on the kernel features
   (``svgd.svgd_combine``; features: the VP-scaled noisy target latents as the paper, or the target's
   Tweedie estimate), or g^i = Delta E^i without SVGD;
5. weight w = 1 - alpha_bar and descent X <- X - lr_k w g; windows scatter back and pixels covered by
   several windows take the *average* of their updates.

With N = 1 (or ``svgd=False``) every particle takes exactly the single-image DDS step
X <- X - lr w (eps_hat_tgt - eps_hat_src); with the weights of ``distill.dds_direction`` this is
lr w (a/s) d_DDS.  The control variate is applied consistently with w(t) (the official image path
omits w(t) without ``--svgd``; spec §1.9.5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .denoiser import Denoiser, randn_like
from .schedule import Parameterization
from .svgd import svgd_combine

MODES = ("panorama", "frames")
FEATURES = ("noisy", "denoised")
LR_SCHEDULES = ("step", "constant", "cosine")
#: the official StepLR: x 0.9 every 20 iterations (spec §1.5)
STEP_EVERY, STEP_GAMMA = 20, 0.9


# ----------------------------------------------------------------------------- particle layouts
class FrameLayout:
    """Particles = the B latents of a batch [B, C, h, w] (video frames)."""

    def __init__(self, batch: int):
        if batch < 1:
            raise ValueError("frames mode needs at least one frame")
        self.count = int(batch)

    def gather(self, latent: Tensor, idx: Tensor) -> Tensor:
        return latent[idx.to(latent.device)]

    def scatter(self, values: Tensor, idx: Tensor, like: Tensor) -> Tensor:
        out = torch.zeros_like(like)
        out[idx.to(like.device)] = values.to(like.dtype)
        return out


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of size ``window`` (<= length) every ``stride``; when (length - window)
    is not a multiple of the stride one more window flush with the far edge covers the remainder."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


@dataclass(frozen=True)
class WindowLayout:
    """Particles = overlapping windows of one latent [1, C, H, W] (panorama / high resolution); the
    windows cut the last two axes, so a one-frame video latent [1, C, 1, H, W] works alike.

    ``size`` = (wh, ww): the window, clamped to the latent (a latent smaller than the window is one
    window along that axis); ``origins``: top-left corners (y, x), row-major."""

    height: int
    width: int
    size: tuple
    origins: tuple

    @property
    def count(self) -> int:
        return len(self.origins)

    def gather(self, latent: Tensor, idx: Tensor) -> Tensor:
        """[1, C, H, W] -> [n, C, wh, ww] for the windows ``idx``."""
        wh, ww = self.size
        return torch.cat([latent[..., y:y + wh, x:x + ww] for y, x in (self.origins[int(i)] for i in idx)])

    def coverage(self, idx: Tensor | None = None, device=None) -> Tensor:
        """How many of the windows ``idx`` (None: all) cover each latent pixel: [1, 1, H, W]."""
        wh, ww = self.size
        count = torch.zeros(1, 1, self.height, self.width, device=device)
        for i in (range(self.count) if idx is None else idx):
            y, x = self.origins[int(i)]
            count[:, :, y:y + wh, x:x + ww] += 1.0
        return count

    def scatter(self, values: Tensor, idx: Tensor, like: Tensor) -> Tensor:
        """Windows [n, C, wh, ww] back into a latent shaped ``like`` [1, C, H, W]: each pixel takes the
        mean of the windows covering it (value / count); pixels no window covers get 0."""
        wh, ww = self.size
        total = torch.zeros_like(like)
        count = torch.zeros(1, 1, self.height, self.width, device=like.device, dtype=like.dtype)
        for v, i in zip(values, idx):
            y, x = self.origins[int(i)]
            total[..., y:y + wh, x:x + ww] += v.to(like.dtype)
            count[:, :, y:y + wh, x:x + ww] += 1.0
        return total / count.clamp_min(1.0)


def window_layout(height: int, width: int, window: int, stride: int) -> WindowLayout:
    """Windows of ``window`` latent pixels every ``stride`` over a [H, W] latent, covering every pixel.

    Refuses (ValueError) a window or stride < 1 and a stride larger than the window (it would leave
    pixels no window ever edits).  Sizes that are not a multiple of the stride get one extra window
    flush with the far edge; an axis shorter than the window is a single window."""
    if int(window) < 1 or int(stride) < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be at least 1 latent pixel")
    if stride > window:
        raise ValueError(f"stride ({stride}) is larger than the window ({window}): some pixels would never be "
                         "edited; use a stride <= window (the paper: window 64, stride 16 latent pixels)")
    if height < 1 or width < 1:
        raise ValueError(f"empty latent ({height} x {width})")
    wh, ww = min(int(window), int(height)), min(int(window), int(width))
    ys, xs = window_starts(height, wh, stride), window_starts(width, ww, stride)
    return WindowLayout(int(height), int(width), (wh, ww), tuple((y, x) for y in ys for x in xs))


def make_layout(mode: str, latent: Tensor, window: int = 64, stride: int = 16):
    if mode == "frames":
        return FrameLayout(latent.shape[0])
    if mode == "panorama":
        if latent.shape[0] != 1:
            raise ValueError(f"panorama mode edits one large image, got a batch of {latent.shape[0]}; "
                             "use frames mode for a sequence, or edit the images one at a time")
        return window_layout(latent.shape[-2], latent.shape[-1], window, stride)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


# ----------------------------------------------------------------------------- schedules
def lr_at(k: int, lr: float, schedule: str, iterations: int) -> float:
    """Learning rate of iteration k (0-based): 'step' = the official StepLR (x0.9 every 20),
    'constant', or 'cosine' (lr -> 0 over the run)."""
    if schedule == "step":
        return lr * STEP_GAMMA ** (k // STEP_EVERY)
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * k / max(int(iterations), 1)))
    raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


def _check(iterations, lr, t_range, feature, particles, lr_schedule):
    lo, hi = float(t_range[0]), float(t_range[1])
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"t_range must satisfy 0 < t_min <= t_max < 1, got {t_range}")
    if int(iterations) < 0:
        raise ValueError("iterations must be >= 0")
    if not math.isfinite(float(lr)) or lr < 0:
        raise ValueError(f"lr must be a finite number >= 0, got {lr}")
    if feature not in FEATURES:
        raise ValueError(f"kernel feature must be one of {FEATURES}, got {feature!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if int(particles) < 0:
        raise ValueError("particles must be >= 0 (0 = all)")
    return lo, hi


# ----------------------------------------------------------------------------- one step, the loop
def control_variate(target: Denoiser, source_model: Denoiser, x: Tensor, source: Tensor, noise: Tensor, sigma,
                    param: Parameterization):
    """(Delta E, x_t, x0_target) for particles x with sources ``source`` and shared noise (spec §1.2):
    Delta E = eps_hat_tgt(a x + s eps) - eps_hat_src(a S + s eps), both conditioned on image=S."""
    x_t = param.compose(x, noise, sigma)
    x_src_t = param.compose(source, noise, sigma)
    x0_tgt = target(x_t, sigma, image=source).to(x.dtype)
    x0_src = source_model(x_src_t, sigma, image=source).to(x.dtype)
    delta = param.eps(x_t, x0_tgt, sigma) - param.eps(x_src_t, x0_src, sigma)
    return delta, x_t, x0_tgt


def csd_edit(target: Denoiser, source_model: Denoiser, source: Tensor, sigma_at: Callable[[float], float],
             param: Parameterization, *,
             mode: str = "frames", window: int = 64, stride: int = 16, particles: int = 0,
             iterations: int = 200, lr: float = 2.0, lr_schedule: str = "step",
             t_range: tuple = (0.02, 0.5), svgd: bool = True, feature: str = "noisy", repulsion: float = 1.0,
             generator: torch.Generator | None = None, callback=None, interrupt=None) -> Tensor:
    """CSD-Edit (spec §1.4) of ``source`` [B, C, h, w] (model space); returns the edited latent.

    target / source_model: denoisers of the target and the source branch (``denoiser.py``), called
    with ``image=`` the particles' source latents.

    mode "frames": the B latents are the particles; "panorama": B = 1 and the particles are windows
    (``window``, ``stride`` in latent pixels).  ``particles``: how many are drawn at random each
    iteration (0 or more than exist = all; the paper draws 16 windows, uses all frames).
    ``sigma_at(u)``: the noise level of normalized time u in (0, 1) (1 = pure noise).
    ``svgd`` False: independent DDS-like updates (the paper's ablation).  ``feature``: kernel on the
    VP-scaled noisy target latents ("noisy", the paper) or the target's Tweedie estimates
    ("denoised"; spec §1.9.4).  ``generator``: CPU torch.Generator for t, subsets and noise.
    ``callback(k, n, X)`` after each iteration; ``interrupt()`` before each model call.
    """
    lo, hi = _check(iterations, lr, t_range, feature, particles, lr_schedule)
    layout = make_layout(mode, source, window, stride)
    x = source.detach().clone()
    src = source.detach()
    n_all = layout.count
    n_draw = n_all if particles <= 0 or particles >= n_all else int(particles)
    for k in range(int(iterations)):
        if interrupt is not None:
            interrupt()
        u = lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))
        sigma = torch.as_tensor(float(sigma_at(u)), dtype=torch.float64)
        if n_draw == n_all:
            idx = torch.arange(n_all)
        else:
            idx = torch.randperm(n_all, generator=generator)[:n_draw].sort().values
        xp, sp = layout.gather(x, idx), layout.gather(src, idx)
        noise = randn_like(xp, generator)
        s = sigma.to(xp.dtype)
        delta, x_t, x0_tgt = control_variate(target, source_model, xp, sp, noise, s, param)
        if svgd:
            feats = x_t / param.vp_scale(s) if feature == "noisy" else x0_tgt
            g = svgd_combine(delta, feats, repulsion=repulsion)
        else:
            g = delta
        w = 1.0 - float(param.alpha_bar(sigma))
        step = layout.scatter(g, idx, x)
        x = x - (lr_at(k, lr, lr_schedule, iterations) * w) * step
        if callback is not None:
            callback(k, int(iterations), x)
    return x
