"""The DreamSampler reverse loop (spec dreamsampler §1.2): Tweedie, proximal step, renoise.

Written as one k-diffusion-style function over the core's denoiser contract (``denoiser.py``), so
the ComfyUI host, the diffusers adapter and the analytic oracles in the tests all drive the same
code.  The step is split into its three moves (``step_context`` -> ``apply_regularizers`` ->
``renoise``) so that DreamSampler distillation (``distill.dream_distill``) reuses them.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .denoiser import Denoiser, Extras, Host, predict, randn_like
from .regularizers import Regularizer, StepContext, apply_regularizers, required_predictions
from .schedule import Parameterization

ETA_SCHEDULES = ("constant", "alpha_bar", "ddim")

NoiseFn = Callable[[int, StepContext], Tensor]


def seeded_noise(generator: torch.Generator | None) -> NoiseFn:
    """Fresh N(0, I) per step from ``generator`` (``denoiser.randn_like``)."""

    def noise(i: int, ctx: StepContext) -> Tensor:
        return randn_like(ctx.x, generator)

    return noise


def ddim_fraction(param: Parameterization, sigma, sigma_next, eta: float) -> float:
    """f = sig_{t->s}(eta)^2 / (1 - abar_s) = eta^2 (1 - abar_t / abar_s) / (1 - abar_t): DDIM's
    (Song et al.) fresh-noise share of the renoise direction (spec csd §0; eta = 1 is DDPM)."""
    abar_t, abar_s = float(param.alpha_bar(sigma)), float(param.alpha_bar(sigma_next))
    return float(eta) ** 2 * (1.0 - abar_t / abar_s) / (1.0 - abar_t)


def eta_at(eta: float, schedule: str, ctx: StepContext) -> float:
    """Fraction of fresh noise variance in the renoise direction at this step.

    ``constant``: eta; ``alpha_bar``: eta * alpha_bar_t (the official inpainting uses eta_t = alpha_bar_t);
    ``ddim``: eta is DDIM's and the fraction is ``ddim_fraction``.
    """
    if schedule == "constant":
        return float(eta)
    if schedule == "alpha_bar":
        return float(eta) * ctx.alpha_bar
    if schedule == "ddim":
        return ddim_fraction(ctx.param, ctx.sigma, ctx.sigma_next, eta)
    raise ValueError(f"eta schedule must be one of {ETA_SCHEDULES}, got {schedule!r}")


def step_eta(eta: float, schedule: str, ctx: StepContext, regularizers=()) -> float:
    """This step's fresh-noise fraction: the sampler's ``eta_at``, raised to the largest a
    regularizer asks for (``Regularizer.renoise_eta``; restoration.py); 0 at a final step to sigma 0."""
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


def default_grid(n: int) -> tuple[Tensor, Tensor]:
    """(spans, times) of n uniform steps in normalized time (1 = pure noise)."""
    return (torch.full((n,), 1.0 / max(n, 1), dtype=torch.float64),
            1.0 - torch.arange(n, dtype=torch.float64) / max(n, 1))


def step_context(model: Denoiser, extras: Extras | None, x: Tensor, i: int, sigmas: Tensor,
                 param: Parameterization, spans: Tensor, times: Tensor, *, regularizers=(), eta: float = 0.0,
                 eta_schedule: str = "constant", generator=None, host: Host | None = None,
                 prepare=None) -> StepContext:
    """Step 1 of spec §1.2: the base Tweedie estimate (and the regularizers' named predictions, one
    batched call), its noise, and this step's fresh-noise fraction.  ``prepare`` maps the model's
    outputs before use (e.g. ``distill._plain``)."""
    sigma, sigma_next = sigmas[i], sigmas[i + 1]
    base, preds = predict(model, extras, required_predictions(regularizers), x, sigma)
    if prepare is not None:
        base = prepare(base)
    eps = param.eps(x, base, sigma)                       # noise of the base branch
    ctx = StepContext(i=i, n=len(sigmas) - 1, sigma=sigma, sigma_next=sigma_next, x=x, base=base, eps=eps,
                      preds=preds, param=param, span=float(spans[i]), u=float(times[i]),
                      generator=generator, host=host or Host())
    ctx.eta = step_eta(eta, eta_schedule, ctx, regularizers)   # known before the proximal step
    return ctx


def renoise(z: Tensor, ctx: StepContext, noise_fn: NoiseFn) -> Tensor:
    """Step 3 of spec §1.2: x_next = a' z + s' (sqrt(1 - eta) eps + sqrt(eta) xi)."""
    xi = noise_fn(ctx.i, ctx) if ctx.eta > 0.0 else None
    return ctx.param.compose(z, renoise_direction(ctx.eps, ctx.eta, xi), ctx.sigma_next)


@torch.no_grad()
def dream_sample(model: Denoiser, x: Tensor, sigmas: Tensor, param: Parameterization, *,
                 extras: Extras | None = None, regularizers: Sequence[Regularizer] = (), eta: float = 0.0,
                 eta_schedule: str = "constant", spans: Tensor | None = None,
                 times: Tensor | None = None, noise_fn: NoiseFn | None = None,
                 generator: torch.Generator | None = None, callback=None, host: Host | None = None,
                 post_step=None, resample: int = 0) -> Tensor:
    """Run the DreamSampler reverse process.

    model(x, sigma) -> x0: the base branch; ``extras``: the named predictions the regularizers
        read (``Regularizer.predictions``), see ``denoiser.py``.
    x: [B, C, H, W] latent at ``sigmas[0]`` in model space.
    sigmas: descending noise levels, length steps + 1.  When the last one is 0 the result is the
        regularized Tweedie estimate of the last step (as the official code outputs D(z_bar_0)).
    spans / times: per-step length and start of each step in normalized time (1 = pure noise);
        default: uniform.
    callback(i, denoised, x): after each step's proximal update (for previews / progress).
    post_step(i, x_next) -> x_next: optional, after each renoise step (not a final step to sigma 0),
        e.g. Cycle-SDE's reset of the unedited region to a reference trajectory (spec csd §3.3).
    resample: after a step's proximal update (not on a final step to sigma 0), this many times put
        the estimate back at the *same* level with fresh noise, x = a(σ) z + s(σ) ξ, and take the step
        again (model call and regularizers): RePaint's resampling with a jump of zero steps.  One more
        model evaluation per step each; with a mask it lets the hole agree with the kept part
        (bench/INPAINTING_FLOW.md).  0 = the plain sampler.
    """
    n = len(sigmas) - 1
    uniform_spans, uniform_times = default_grid(n)
    spans = uniform_spans if spans is None else spans
    times = uniform_times if times is None else times
    noise_fn = noise_fn or seeded_noise(generator)
    for i in range(n):
        ctx = step_context(model, extras, x, i, sigmas, param, spans, times, regularizers=regularizers, eta=eta,
                           eta_schedule=eta_schedule, generator=generator, host=host)
        z = apply_regularizers(ctx.base, ctx, regularizers)   # proximal step: z_bar
        for _ in range(resample if float(ctx.sigma_next) > 0.0 else 0):
            x_again = param.compose(z, noise_fn(i, ctx), ctx.sigma)
            ctx = step_context(model, extras, x_again, i, sigmas, param, spans, times, regularizers=regularizers,
                               eta=eta, eta_schedule=eta_schedule, generator=generator, host=host)
            z = apply_regularizers(ctx.base, ctx, regularizers)
        if callback is not None:
            callback(i, z, x)
        if float(ctx.sigma_next) == 0.0:
            x = z
            continue
        x = renoise(z, ctx, noise_fn)
        if post_step is not None:
            x = post_step(i, x)
    return x
