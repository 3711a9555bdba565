"""The DreamSampler reverse loop (spec dreamsampler §1.2): Tweedie, proximal step, renoise.

Written as one k-diffusion-style function over a denoiser callable, so the ComfyUI host, the
diffusers adapter and the analytic oracles in the tests all drive the same code.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .regularizers import Regularizer, StepContext, apply_regularizers
from .schedule import Parameterization

ETA_SCHEDULES = ("constant", "alpha_bar", "ddim")

NoiseFn = Callable[[int, StepContext], Tensor]


def seeded_noise(generator: torch.Generator | None) -> NoiseFn:
    """Fresh N(0, I) per step from ``generator`` (drawn on the generator's device, then moved)."""

    def noise(i: int, ctx: StepContext) -> Tensor:
        dev = generator.device if generator is not None else ctx.x.device
        xi = torch.randn(ctx.x.shape, generator=generator, device=dev, dtype=torch.float32)
        return xi.to(device=ctx.x.device, dtype=ctx.x.dtype)

    return noise


def eta_at(eta: float, schedule: str, ctx: StepContext) -> float:
    """Fraction of fresh noise variance in the renoise direction at this step.

    ``constant``: eta; ``alpha_bar``: eta * alpha_bar_t (the official inpainting uses eta_t = alpha_bar_t);
    ``ddim``: eta is DDIM's (Song et al.) and the fraction is sigma_{t->s}(eta)^2 / (1 - alpha_bar_s)
    = eta^2 (1 - alpha_bar_t / alpha_bar_s) / (1 - alpha_bar_t)  (spec csd §0; eta = 1 is DDPM).
    """
    if schedule == "constant":
        return float(eta)
    if schedule == "alpha_bar":
        return float(eta) * ctx.alpha_bar
    if schedule == "ddim":
        abar_t, abar_s = ctx.alpha_bar, ctx.alpha_bar_next
        return float(eta) ** 2 * (1.0 - abar_t / abar_s) / (1.0 - abar_t)
    raise ValueError(f"eta schedule must be one of {ETA_SCHEDULES}, got {schedule!r}")


def step_eta(eta: float, schedule: str, ctx: StepContext, regularizers=()) -> float:
    """This step's fresh-noise fraction: the sampler's ``eta_at``, raised to the largest a
    regularizer asks for (``Regularizer.renoise_eta``; inverse.py); 0 at a final step to sigma 0."""
    if float(ctx.sigma_next) == 0.0:
        return 0.0
    eta_i = eta_at(eta, schedule, ctx)
    for reg in regularizers:
        asked = reg.renoise_eta(ctx) if hasattr(reg, "renoise_eta") else None
        eta_i = eta_i if asked is None else max(eta_i, float(asked))
    return eta_i


def renoise_direction(eps: Tensor, eta: float, xi: Tensor | None) -> Tensor:
    """eps_tilde = sqrt(1 - eta) * eps + sqrt(eta) * xi   (spec dreamsampler §1.1, eta_t)."""
    if eta <= 0.0 or xi is None:
        return eps
    return (1.0 - eta) ** 0.5 * eps + eta ** 0.5 * xi


@torch.no_grad()
def dream_sample(denoise, x: Tensor, sigmas: Tensor, param: Parameterization, *,
                 regularizers: Sequence[Regularizer] = (), eta: float = 0.0,
                 eta_schedule: str = "constant", spans: Tensor | None = None,
                 times: Tensor | None = None, noise_fn: NoiseFn | None = None,
                 generator: torch.Generator | None = None, callback=None, host: dict | None = None,
                 post_step=None) -> Tensor:
    """Run the DreamSampler reverse process.

    denoise(x, sigma) -> (base_x0, preds): the model's Tweedie estimate of the base branch
        and a dict of the extra named x0 predictions the regularizers asked for.
    x: [B, C, H, W] latent at ``sigmas[0]`` in model space.
    sigmas: descending noise levels, length steps + 1.  When the last one is 0 the result is the
        regularized Tweedie estimate of the last step (as the official code outputs D(z_bar_0)).
    spans / times: per-step length and start of each step in normalized time (1 = pure noise);
        default: uniform.
    callback(i, denoised, x): after each step's proximal update (for previews / progress).
    post_step(i, x_next) -> x_next: optional, after each renoise step (not a final step to sigma 0),
        e.g. Cycle-SDE's reset of the unedited region to a reference trajectory (spec csd §3.3).
    """
    n = len(sigmas) - 1
    if spans is None:
        spans = torch.full((n,), 1.0 / max(n, 1), dtype=torch.float64)
    if times is None:
        times = 1.0 - torch.arange(n, dtype=torch.float64) / max(n, 1)
    noise_fn = noise_fn or seeded_noise(generator)
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        base, preds = denoise(x, sigma)
        eps = param.eps(x, base, sigma)                       # noise of the base branch
        ctx = StepContext(i=i, n=n, sigma=sigma, sigma_next=sigma_next, x=x, base=base, eps=eps,
                          preds=preds, param=param, span=float(spans[i]), u=float(times[i]),
                          generator=generator, host=host or {})
        ctx.eta = step_eta(eta, eta_schedule, ctx, regularizers)   # known before the proximal step
        z = apply_regularizers(base, ctx, regularizers)       # proximal step: z_bar
        if callback is not None:
            callback(i, z, x)
        if float(sigma_next) == 0.0:
            x = z
            continue
        eta_i = ctx.eta
        xi = noise_fn(i, ctx) if eta_i > 0.0 else None
        x = param.compose(z, renoise_direction(eps, eta_i, xi), sigma_next)
        if post_step is not None:
            x = post_step(i, x)
    return x
