"""Regularizers of the DreamSampler proximal step (spec dreamsampler §1.2, step 2).

At every reverse step the sampler computes the Tweedie estimate ``base`` and then refines it:

    z_bar = argmin_z  1/2 ||z - base||^2 + sum_k lambda_k R_k(z)

Each regularizer is one (approximate) proximal map ``z -> prox_k(z)``; they compose in list
order, each one starting from the previous one's output.  A regularizer may ask the host for
extra model predictions (e.g. the target prompt's x0) by name; the host evaluates all of them
in one batched model call together with the base prediction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .denoiser import Host
from .schedule import Parameterization

#: step length (in normalized time) at which strength means what the paper's omega means:
#: the official code runs 200 DDIM steps over the 1000-step schedule.
REFERENCE_SPAN = 1.0 / 200.0


@dataclass
class StepContext:
    """Everything a regularizer may read at reverse step ``i`` (of ``n``).

    Latents are in the model's sampling space ([B, C, H, W], ComfyUI's process_latent_in applied).
    """

    i: int
    n: int
    sigma: Tensor              # current noise level (0-dim)
    sigma_next: Tensor         # next noise level (0 at the last step)
    x: Tensor                  # current noisy latent
    base: Tensor               # Tweedie estimate of the base (source / unconditional) prediction
    eps: Tensor                # noise implied by ``base``: (x - a*base) / s
    preds: dict                # named extra x0 predictions (e.g. "target")
    param: Parameterization
    span: float                # length of this step in normalized time (1 = whole schedule)
    u: float = 1.0             # normalized time of this step (1 = pure noise, 0 = clean)
    eta: float = 0.0           # fresh-noise fraction of this step's renoise (set before the regularizers)
    generator: torch.Generator | None = None
    host: Host = field(default_factory=Host)   # host services (denoiser.Host)

    @property
    def alpha_bar(self) -> float:
        return float(self.param.alpha_bar(self.sigma))

    @property
    def alpha_bar_next(self) -> float:
        return float(self.param.alpha_bar(self.sigma_next))


def _ve_sigma(param: Parameterization, sigma) -> float:
    """rho = s / a, the VE noise level of sigma (inf where a = 0: flow at sigma = 1)."""
    a, s = float(param.signal(torch.as_tensor(sigma, dtype=torch.float64))), float(param.noise(
        torch.as_tensor(sigma, dtype=torch.float64)))
    return math.inf if a <= 0.0 else s / a


def guided_step_weight(ctx: StepContext) -> float:
    """k_t in [0, 1] such that  z <- z + w k_t (target - z),  renoised by the sampler with the base
    noise (and ctx.eta fresh noise), is exactly the sampler's step taken with the guided prediction
    z + w (target - z) and its own noise:

        k_t = 1 - sqrt(1 - eta_t) rho_next / rho_t,   rho = s / a  (the VE sigma; spec §6).

    (From a' z + s' (sqrt(1-eta) eps + sqrt(eta) xi) with eps = (x - a z) / s.)  k_t ~ the step's
    length in log sigma, so a weight w acts the same at any step count (the step-count invariance
    of CFG Edit's 'invariant' schedule without a reference grid); the last step (sigma_next = 0)
    has k = 1, i.e. the prediction itself."""
    if float(ctx.sigma_next) <= 0.0:
        return 1.0
    rho, rho_next = _ve_sigma(ctx.param, ctx.sigma), _ve_sigma(ctx.param, ctx.sigma_next)
    ratio = 0.0 if math.isinf(rho) else rho_next / rho
    return min(max(1.0 - math.sqrt(max(1.0 - ctx.eta, 0.0)) * ratio, 0.0), 1.0)


class Regularizer:
    """Base class: one proximal term.  Subclasses override ``__call__`` and, if they need
    extra predictions, ``predictions``."""

    def predictions(self) -> tuple[str, ...]:
        """Names of the extra model predictions this term reads from ``ctx.preds``."""
        return ()

    def bind(self, prefix: str) -> "Regularizer":
        """Copy whose prediction names are made unique with ``prefix`` (hosts call this)."""
        return self

    def release(self) -> None:
        """Free what the term holds for a run (a codec's gradient copy); hosts call it after each run."""
        return None

    def renoise_eta(self, ctx: "StepContext") -> float | None:
        """Fresh-noise fraction this term asks for in this step's renoise (None: the sampler's eta).
        The sampler uses the largest request (the official inpainting renoises its regularized steps
        with eta_t = alpha_bar_t and the others with eta = 0)."""
        return None

    def __call__(self, z: Tensor, ctx: StepContext) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


EDIT_SCHEDULES = ("invariant", "paper", "constant")


@dataclass
class CFGEdit(Regularizer):
    """Text editing as a DDS step toward a target prompt (spec dreamsampler §1.3b, §2.2).

    One gradient step of the DDS loss with a null/source branch at the current noisy latent
    is, in closed form, ``z + lambda_t * (x0_target - x0_source)``: CFG on the Tweedie estimate.

    ``schedule``:
      * ``"paper"``: lambda_t = strength * alpha_bar_t, exactly the official code
        (latent_diffusion.py L324).  Its total effect grows with the step count (§1.3d).
      * ``"invariant"`` (default): lambda_t = strength * alpha_bar_t * span_t / REFERENCE_SPAN,
        the same density over time, so a strength gives nearly the same edit at 20, 50 or 200
        steps, and equals ``"paper"`` on the official 200-step ``ddim_uniform`` grid.
      * ``"constant"``: lambda_t = strength (plain CFG-on-Tweedie, no time weighting).
    ``start``/``end``: the edit is active while the normalized time u is in [end, start]
    (1 = pure noise), as the early DreamSampler code's ``update_range``.
    ``source``: name of a source-prompt prediction.  None: the DDS source branch is the base
    prediction (c_src = null, §1.3b), z + lambda_t (x0_target - base).  Given: DDS with a source
    text, z + lambda_t (x0_target - x0_source)  (eps^omega(z_t, c) - eps^omega(z_t, c_src) of
    §1.3b with both branches at the same z_t); the base prediction still renoises the trajectory,
    so strength 0 reconstructs either way.
    """

    strength: float = 1.0
    target: str = "target"
    source: str | None = None          # None: the base prediction is the DDS source branch
    schedule: str = "invariant"
    start: float = 1.0
    end: float = 0.0

    def __post_init__(self):
        if self.schedule not in EDIT_SCHEDULES:
            raise ValueError(f"edit schedule must be one of {EDIT_SCHEDULES}, got {self.schedule!r}")
        if not math.isfinite(self.strength):
            raise ValueError("edit strength must be a finite number")

    def predictions(self):
        return (self.target,) if self.source is None else (self.target, self.source)

    def bind(self, prefix):
        return replace(self, target=prefix + self.target,
                       source=None if self.source is None else prefix + self.source)

    def weight(self, ctx: StepContext) -> float:
        if not (self.end - 1e-9 <= ctx.u <= self.start + 1e-9):
            return 0.0
        if self.schedule == "constant":
            return self.strength
        w = self.strength * ctx.alpha_bar
        if self.schedule == "invariant":
            w *= ctx.span / REFERENCE_SPAN
        return w

    def __call__(self, z, ctx):
        w = self.weight(ctx)
        if w == 0.0:
            return z
        src = ctx.base if self.source is None else ctx.preds[self.source]
        return z + w * (ctx.preds[self.target] - src)


def apply_regularizers(z: Tensor, ctx: StepContext, regularizers) -> Tensor:
    """Compose the proximal maps in list order (each starts from the previous output)."""
    for reg in regularizers:
        z = reg(z, ctx)
    return z


def required_predictions(regularizers) -> tuple[str, ...]:
    names: list[str] = []
    for reg in regularizers:
        for n in reg.predictions():
            if n not in names:
                names.append(n)
    return tuple(names)


@dataclass
class KeepKnown(Regularizer):
    """Hard data consistency in latent space for a mask (a LATENT's noise_mask): the known region
    follows the source's own trajectory and ends equal to it.

    ``mask``: [B or 1, 1 or C, H, W] in the latent grid, ComfyUI convention 1 = repaint,
    0 = keep; soft values blend.  ``source``: the clean source latent x0 (model space).
    The known region takes the step of the prediction "source" (``guided_step_weight``): from
    x = a src + s n it goes to a' src + s' n, as core's noise-mask inpainting, and the last step
    returns the source exactly.
    """

    source: Tensor = None
    mask: Tensor = None

    def __call__(self, z, ctx):
        m = self.mask.to(device=z.device, dtype=z.dtype)
        k = guided_step_weight(ctx)
        return z + (k * (1.0 - m)) * (self.source.to(device=z.device, dtype=z.dtype) - z)
