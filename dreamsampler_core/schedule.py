"""Noise parameterizations and schedules, in ComfyUI's sigma convention.

ComfyUI keeps every model's latent in one of two forms (spec comfyui §A4):

* ``ve``   (EPS and V_PREDICTION models: SD1.5, SD2.x, SDXL):  x = x0 + sigma * eps
* ``flow`` (CONST models: SD3, Flux, AuraFlow):                x = (1 - sigma) * x0 + k * sigma * eps
  (k = ``noise_scale``, 1 except where a model's sampling scales its noise; newer ComfyUI's CONST)

Both are ``x = a(sigma) * x0 + s(sigma) * eps``; every step of this package is written
against ``a`` and ``s`` so one implementation serves all families.  The model call always
returns the Tweedie estimate x0 (the "denoised"), whatever the network predicts.

The variance-preserving quantities of the papers follow from a and s:
``alpha_bar = a^2 / (a^2 + s^2)`` (for ve: ``1 / (1 + sigma^2)``, spec dreamsampler §6) and the
VP latent ``z = x / sqrt(a^2 + s^2)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("ve", "flow")


@dataclass(frozen=True)
class Parameterization:
    """How a latent at noise level sigma is composed of signal and noise."""

    kind: str = "ve"
    noise_scale: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown parameterization {self.kind!r}; expected one of {KINDS}")
        if not (math.isfinite(self.noise_scale) and self.noise_scale > 0):
            raise ValueError(f"noise_scale must be a positive number, got {self.noise_scale}")
        if self.kind == "ve" and self.noise_scale != 1.0:
            raise ValueError("a ve latent has noise_scale 1 (sigma is the noise level)")

    # --- coefficients -------------------------------------------------------------
    def signal(self, sigma):
        """a(sigma): coefficient of x0 in x."""
        if self.kind == "flow":
            return 1.0 - sigma
        return torch.ones_like(sigma) if isinstance(sigma, Tensor) else 1.0

    def noise(self, sigma):
        """s(sigma): coefficient of eps in x."""
        return sigma if self.noise_scale == 1.0 else self.noise_scale * sigma

    def alpha_bar(self, sigma):
        """Variance-preserving alpha_bar(sigma) = a^2 / (a^2 + s^2)."""
        a, s = self.signal(sigma), self.noise(sigma)
        return a * a / (a * a + s * s)

    def vp_scale(self, sigma):
        """sqrt(a^2 + s^2): divide x by it to get the VP latent z."""
        a, s = self.signal(sigma), self.noise(sigma)
        if isinstance(a, Tensor) or isinstance(s, Tensor):
            return torch.sqrt(torch.as_tensor(a * a + s * s))
        return math.sqrt(a * a + s * s)

    # --- conversions ------------------------------------------------------------
    def eps(self, x: Tensor, x0: Tensor, sigma) -> Tensor:
        """Noise implied by the Tweedie estimate: eps = (x - a x0) / s (sigma > 0)."""
        return (x - self.signal(sigma) * x0) / self.noise(sigma)

    def x0(self, x: Tensor, eps: Tensor, sigma) -> Tensor:
        """Tweedie estimate from a noise prediction: x0 = (x - s eps) / a (a > 0)."""
        return (x - self.noise(sigma) * eps) / self.signal(sigma)

    def compose(self, x0: Tensor, eps: Tensor, sigma) -> Tensor:
        """x = a(sigma) x0 + s(sigma) eps  (the DDIM 'renoise' of spec dreamsampler §1.2 step 3)."""
        return self.signal(sigma) * x0 + self.noise(sigma) * eps


def scaled_linear_sigmas(n: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                         dtype=torch.float64) -> Tensor:
    """The Stable Diffusion DDPM schedule as ComfyUI's ModelSamplingDiscrete builds it.

    Returns sigmas[t] = sqrt((1 - alpha_bar_t) / alpha_bar_t), t = 0..n-1 (ascending).
    """
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, n, dtype=torch.float64) ** 2
    alpha_bar = torch.cumprod(1.0 - betas, dim=0)
    return (((1 - alpha_bar) / alpha_bar) ** 0.5).to(dtype)


def ddim_uniform(table: Tensor, steps: int) -> Tensor:
    """ComfyUI's ``ddim_uniform`` scheduler on a discrete sigma table, descending, ending at 0.

    At 200 steps on the SD table this is the official DreamSampler grid t = 996, 991, ..., 1.
    """
    stride = max(len(table) // steps, 1)
    picked = [float(table[t]) for t in range(1, len(table), stride)]
    return torch.tensor(picked[::-1] + [0.0], dtype=table.dtype)


def discrete_timestep(table: Tensor, sigma: Tensor) -> Tensor:
    """Continuous timestep of sigma on a discrete table (log-sigma interpolation)."""
    log_table = table.log()
    ls = torch.as_tensor(sigma, dtype=table.dtype).clamp_min(table[0]).log()
    idx = torch.searchsorted(log_table, ls.reshape(-1)).clamp(1, len(table) - 1)
    lo, hi = log_table[idx - 1], log_table[idx]
    w = ((ls.reshape(-1) - lo) / (hi - lo)).clamp(0, 1)
    return (idx - 1 + w).reshape(ls.shape)


def normalized_times(sigmas: Tensor, timestep_fn) -> Tensor:
    """Map a descending sigma grid to u in [0, 1] (1 = sigma_max) using the host's timestep().

    A final sigma of 0 gets u extrapolated one grid step past the previous level, which is
    how DDIM grids treat the last step (the official code steps from t=1 to t=-4 at 200 NFE).
    """
    t = torch.stack([torch.as_tensor(timestep_fn(s), dtype=torch.float64).reshape(()) for s in sigmas])
    if len(sigmas) >= 3 and float(sigmas[-1]) == 0.0:
        t[-1] = t[-2] - (t[-3] - t[-2])
    return t


def time_grid(sigmas: Tensor, timestep_fn, t_max: float) -> tuple[Tensor, Tensor]:
    """(spans, times) of a descending sigma grid in normalized time (1 = the timestep t_max): each
    step's length and start, as ``sampler.dream_sample`` takes them."""
    t = normalized_times(sigmas.detach().cpu().double(), timestep_fn) / t_max
    return (t[:-1] - t[1:]).clamp_min(0.0), t[:-1]
