"""Inverse-problem regularizers: text-guided inpainting and pixel-space data consistency
(spec dreamsampler §2.3 "dream_inpaint", §4 "Inpainting", §6 "Inpainting").

Both are proximal terms of the DreamSampler step (``regularizers.py``) acting on the Tweedie
estimate z of the current step, in the model's latent space:

* ``MaskInpaint``: inside each hole the step follows that region's guided prediction
  z + w (z^{c_r} - z) (w = strength: 1 = the target prompt's own prediction), outside all holes
  (optionally) the clean source latent; both as an exact sampler step (``guided_step_weight``):
      z <- z + strength * k_t * sum_r share_r (z^{c_r} - z) + keep * k_t * (1 - hole) (z_src - z)
  with k_t = 1 - sqrt(1 - eta_t) sigma_next / sigma (VE sigmas), so the result does not depend on
  the step count and the last step (k = 1) pastes the source back.  The official blend
  (latent_diffusion.py L418) uses k_t = alpha_bar_t per step with no step length: its pull grows with
  the step count (on an exact oracle the hole ran away: mean 2.3 / 4.4 / 7.9 at 20 / 50 / 200 steps
  for a target of 0.9) and it is off for the last 15 % of the steps.
* ``DataConsistency``: decode, solve the pixel sub-problem, encode, mix:
      x_hat = D(z);  x_y = argmin_x ||y - A x||^2 + mu ||x - x_hat||^2;  z <- z + strength * gamma_t (E(x_y) - z)
  (official L345-L415 with gamma_t = alpha_bar_t, mu = 1e-4).  The sub-problem is solved in closed
  form or by CG (``operators.prox``); no gradient flows through the diffusion model.  An opt-in
  DPS step (the official code's other 143 of 200 steps) backpropagates through the model and the
  decoder on the steps where the data term is inactive.

Schedules (``PRESETS``), for ``DataConsistency``: "paper" is the official dream_inpaint configuration:
active on every 3rd step while step < 0.85 n (57 of 200 steps, t = 996 ... 156), gamma_t = alpha_bar_t,
and fresh noise eta_t = alpha_bar_t in the renoise of those steps (``renoise_eta``); the other steps
are plain unconditional DDIM (or DPS when enabled).  ``MaskInpaint`` acts on every step whatever the
preset (see its docstring); "paper" only adds the official amount of fresh noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .codec import IdentityCodec
from .masks import MaskError, region_shares, to_latent_grid
from .operators import CG_MAX_ITERS, CG_TOL, LinearOperator, OperatorError, as_frames, frame_measurement, prox
from .regularizers import REFERENCE_SPAN, Regularizer, StepContext, guided_step_weight


# ----------------------------------------------------------------------------- schedules
@dataclass(frozen=True)
class InverseSchedule:
    """When an inverse term acts and how much.

    every / until: active at step i (0-based, of n) when i % every == 0 and i < until * n.
    weight: gamma_t, "alpha_bar" (the official choice: trust grows as noise falls) or "one".
    renoise: on active steps ask the sampler for eta_t = alpha_bar_t fresh noise (official).
    """

    every: int = 1
    until: float = 1.0
    weight: str = "alpha_bar"
    renoise: bool = False

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"'every' must be >= 1, got {self.every}")
        if not 0.0 <= self.until <= 1.0:
            raise ValueError(f"'until' must be in [0, 1], got {self.until}")
        if self.weight not in ("alpha_bar", "one"):
            raise ValueError(f"weight must be 'alpha_bar' or 'one', got {self.weight!r}")

    def active(self, ctx: StepContext) -> bool:
        return ctx.i % self.every == 0 and ctx.i < self.until * ctx.n - 1e-9

    def gamma(self, ctx: StepContext) -> float:
        return ctx.alpha_bar if self.weight == "alpha_bar" else 1.0


PRESETS = {
    # official dream_inpaint: every 3rd step, steps < 170 of 200, gamma = eta = alpha_bar_t
    "paper": InverseSchedule(every=3, until=0.85, weight="alpha_bar", renoise=True),
    # restoration (SR, deblur, colorization): the data term on every step, deterministic
    "restore": InverseSchedule(every=1, until=1.0, weight="alpha_bar", renoise=False),
    # strongest fidelity: a full data projection on every step (gamma = 1)
    "project": InverseSchedule(every=1, until=1.0, weight="one", renoise=False),
}


def preset(name: str) -> InverseSchedule:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {tuple(PRESETS)}")
    return PRESETS[name]


# ----------------------------------------------------------------------------- mask inpainting
@dataclass
class MaskInpaint(Regularizer):
    """Text-guided inpainting term (spec §2.3 step (ii), §6 "Masks").

    masks: pixel (or latent-grid) masks [B or 1, 1, H, W], ComfyUI convention 1 = repaint, already
        feathered; pooled to the latent grid by area on first use (on a video latent the mask batch is
        its frames, ``masks.to_latent_grid``).
    targets: per region the name of its target prediction, or None (no prompt: the region is
        repainted by the sampler's base prompt alone).
    strength: w, the guidance of the target inside the hole: the step uses z + w (z^c - z), i.e.
        1 = the target prompt's own prediction (an exact oracle's hole then has the target class's
        statistics), > 1 extrapolates past it like CFG against the base prompt, 0 = no text.
    overlap: how overlapping regions share a pixel (``masks.region_shares``), never summed.
    source: clean source latent, VAE space (LATENT "samples"); with ``keep`` > 0 the known region
        follows the source's trajectory with weight ``keep`` and the last step pastes ``keep`` of it
        back (keep = 1: the unmasked region ends equal to the source).
    schedule: the preset.  The text and keep terms act on *every* step with the exact step weight
        ``guided_step_weight`` (any preset; the official 57-of-200 pattern with weight alpha_bar_t and no
        step length made the result depend on the step count and left the hole to the base prompt for
        the last 15 %).  A preset with ``renoise`` ("paper") adds the official amount of fresh noise:
        eta_t = alpha_bar_t per ``every``-th step of the 200-step grid while u >= 1 - until, spread
        over the steps so the same amount is drawn at any step count (``renoise_eta``).
    """

    masks: tuple = ()
    targets: tuple = ()
    strength: float = 1.0
    overlap: str = "average"
    source: Tensor | None = None
    keep: float = 1.0
    schedule: InverseSchedule = field(default_factory=lambda: PRESETS["restore"])
    _grid: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if len(self.masks) == 0:
            raise MaskError("mask inpainting needs at least one mask")
        if len(self.targets) != len(self.masks):
            raise ValueError("one target name (or None) per mask")

    def predictions(self):
        return tuple(t for t in self.targets if t is not None)

    def bind(self, prefix):
        return replace(self, targets=tuple(None if t is None else prefix + t for t in self.targets), _grid={})

    def renoise_eta(self, ctx: StepContext):
        """The official fresh noise (eta_t = alpha_bar_t on every ``every``-th step of 200 while
        u >= 1 - until) as a rate: (1 - eta)^(span / (every * REFERENCE_SPAN)) of the base noise is
        kept, so 20, 50 or 200 steps draw the same amount per unit of time."""
        if self.strength == 0.0 and (self.source is None or self.keep == 0.0):
            return None                                    # a term with no effect leaves the sampler alone
        if not self.schedule.renoise or ctx.u < 1.0 - self.schedule.until - 1e-9:
            return None
        share = ctx.span / (self.schedule.every * REFERENCE_SPAN)
        return 1.0 - (1.0 - ctx.alpha_bar) ** share

    def regions(self, z: Tensor):
        """(hole, shares) on z's latent grid, cached per grid / device / dtype."""
        key = (tuple(z.shape), z.device, z.dtype)
        if key not in self._grid:
            grid = [to_latent_grid(m, z.shape[2:]).to(device=z.device, dtype=z.dtype) for m in self.masks]
            for m in grid:
                if m.shape[0] not in (1, z.shape[0]):
                    raise MaskError(f"the mask has batch {m.shape[0]} but the latent has batch {z.shape[0]}")
            self._grid[key] = region_shares(grid, self.overlap)
        return self._grid[key]

    def _source(self, z: Tensor, ctx: StepContext) -> Tensor:
        src = ctx.host.latent_in(self.source.to(device=z.device, dtype=z.dtype))
        if src.shape[1:] != z.shape[1:] or src.shape[0] not in (1, z.shape[0]):
            raise MaskError(f"the source latent has shape {tuple(self.source.shape)} but the sampled latent has "
                            f"shape {tuple(z.shape)}; connect the latent of the same image")
        return src

    def __call__(self, z, ctx):
        g = guided_step_weight(ctx)
        hole, shares = self.regions(z)
        out = z
        pull = None
        for share, name in zip(shares, self.targets):
            if name is None:
                continue
            d = share * (ctx.preds[name] - z)
            pull = d if pull is None else pull + d
        if pull is not None and self.strength != 0.0:
            out = out + (self.strength * g) * pull
        if self.source is not None and self.keep != 0.0:
            out = out + (self.keep * g) * (1.0 - hole) * (self._source(z, ctx) - z)
        return out


# ----------------------------------------------------------------------------- data consistency
@dataclass
class DataConsistency(Regularizer):
    """Pixel-space data consistency for y = A x + n through a VAE codec (spec §2.3 step (i)).

    op, y: the operator and the measurement [B or 1, C, h, w] in [-1, 1] pixel units; for a video
        the measurement of its frames [T or 1 (or B*T), C, h, w], the operator acting frame by frame
        (``operators.as_frames``).
    codec: object with ``decode(z) -> x`` and ``encode(x) -> z`` between the VAE-space latent and
        pixels [B, 3, H, W] in [-1, 1], or a video codec's [B, 3, T, H, W] (and ``decode_grad`` for
        DPS); None: the identity.  Model-space
        latents go through the host's latent_in / latent_out (``denoiser.Host``); ``release()``
        releases the codec (if it can be), as the ComfyUI host does after each run.
    strength: lambda, multiplies the mixing weight gamma_t; 0 leaves the sampler unchanged.
    sigma_y: assumed measurement noise (std, [-1, 1] units): the data are fit only down to it.
    mu: proximal weight of the pixel sub-problem (the official cg_lamb, 1e-4).
    solver / cg_iters / cg_tol: ``operators.prox``; CG runs to cg_tol, at most cg_iters iterations
        (the official fixed 10 iterations stop far from the solution for motion blur).
    dps: step size of the opt-in DPS gradient step on the steps where the term is inactive
        (0 = off; 1 = the official sqrt(alpha_bar_{t-1}) step).  Needs ``Host.grad_model``.
    """

    op: LinearOperator = None
    y: Tensor = None
    codec: object = None
    strength: float = 1.0
    sigma_y: float = 0.0
    mu: float = 1e-4
    solver: str = "auto"
    cg_iters: int = CG_MAX_ITERS
    cg_tol: float = CG_TOL
    schedule: InverseSchedule = field(default_factory=lambda: PRESETS["paper"])
    dps: float = 0.0
    _y: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.op is None or self.y is None:
            raise OperatorError("data consistency needs an operator and a measurement")
        if not torch.isfinite(self.y).all():
            raise OperatorError("the measurement contains NaN or infinite values")
        if self.mu <= 0:
            raise ValueError(f"mu must be > 0, got {self.mu}")

    def renoise_eta(self, ctx: StepContext):
        if self.strength == 0.0:
            return None
        return ctx.alpha_bar if self.schedule.renoise and self.schedule.active(ctx) else None

    def release(self):
        release = getattr(self.codec, "release", None)
        if release is not None:
            release()

    # --- codec in model space --------------------------------------------------------
    def _codec(self, ctx):
        return self.codec if self.codec is not None else IdentityCodec()

    def decode(self, z: Tensor, ctx: StepContext, grad: bool = False) -> Tensor:
        codec = self._codec(ctx)
        zv = ctx.host.latent_out(z)
        x = codec.decode_grad(zv) if grad else codec.decode(zv)
        return x.to(device=z.device, dtype=torch.float32 if z.dtype in (torch.float16, torch.bfloat16) else z.dtype)

    def encode(self, x: Tensor, like: Tensor, ctx: StepContext) -> Tensor:
        zv = self._codec(ctx).encode(x)
        return ctx.host.latent_in(zv.to(device=like.device, dtype=like.dtype))

    def measurement(self, x: Tensor) -> Tensor:
        """The measurement on x's device/dtype, batch-broadcast to x's frames (x itself for an
        image, ``as_frames(x)`` for a video); checked against the operator."""
        key = (tuple(x.shape), x.device, x.dtype)
        if key not in self._y:
            frames = as_frames(x)[0].shape
            y = frame_measurement(self.y, x.shape).to(device=x.device, dtype=x.dtype)
            self.op.check(y, frames)
            if y.shape[0] != frames[0]:
                y = y.expand(frames[0], *y.shape[1:])
            self._y = {key: self.op.project(y)}
        return self._y[key]

    def solve(self, x_hat: Tensor) -> Tensor:
        """The pixel sub-problem argmin ||y - A x||^2 + mu ||x - x_hat||^2 (fit down to sigma_y),
        frame by frame for a video."""
        frames, back = as_frames(x_hat)
        return back(prox(self.op, self.measurement(x_hat), frames, self.mu, self.sigma_y, self.solver,
                         self.cg_iters, self.cg_tol))

    def __call__(self, z, ctx):
        if self.strength == 0.0:
            return z
        if self.schedule.active(ctx):
            x_hat = self.decode(z, ctx)
            x_y = self.solve(x_hat)
            if not isinstance(self._codec(ctx), IdentityCodec):
                x_y = x_y.clamp(-1.0, 1.0)          # the VAE encoder expects images in [-1, 1]
            z_y = self.encode(x_y, z, ctx)
            return z + (self.strength * self.schedule.gamma(ctx)) * (z_y - z)
        if self.dps > 0.0 and float(ctx.sigma_next) > 0.0:
            return z - self.strength * self.dps_step(ctx).to(z)
        return z

    def dps_step(self, ctx: StepContext) -> Tensor:
        """Official DPS update on the Tweedie estimate (spec §2.3 "DPS step", VE form §6):

            z_{t-1} = z' - sqrt(alpha_bar_{t-1}) grad_{z_t} ||y - A D(z0(z_t))||_2     (VP units)

        which, on the estimate that the sampler renoises, is  z <- z - dps * vp_t * grad_{x_t} ||.||_2
        with vp_t = sqrt(a_t^2 + s_t^2).  Backpropagates through the model and the decoder."""
        fn = ctx.host.grad_model
        if fn is None:
            raise RuntimeError("DPS needs a differentiable denoiser from the host (Host.grad_model)")
        with torch.inference_mode(False), torch.enable_grad():
            x = ctx.x.detach().clone().requires_grad_(True)
            x0 = fn(x, ctx.sigma)
            px = self.decode(x0, ctx, grad=True)
            y = self.measurement(px.detach()).clone()
            loss = torch.linalg.vector_norm((y - self.op.A(as_frames(px)[0])).flatten(1), dim=1).sum()
            (grad,) = torch.autograd.grad(loss, x)
        return self.dps * float(ctx.param.vp_scale(ctx.sigma)) * grad.detach()
