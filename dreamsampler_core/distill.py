"""Score distillation over a differentiable generator: SDS, DDS and DreamSampler distillation.

A generator g maps parameters theta to pixels [B, 3, H, W] in [-1, 1] (the SVG renderer, a raw
image) or directly to a latent; a codec E / D maps pixels <-> latents in the model's sampling space,
where x = a(sigma) z + s(sigma) eps (``schedule.Parameterization``).  The diffusion model is a
denoiser callable evaluated without gradients; gradients flow only through g and E
(spec comfyui §A6: never through the UNet).

Every method is the same two moves (spec dreamsampler §1.3, §2.4):

1. a *target* latent from the model, z_tgt = z - d:

   * SDS (Poole et al., random t):     d = z - T(z_t, eps_hat) = (s/a) (eps_hat - eps)       (§1.3a)
   * DDS (Hertz et al., random t):     d = (s/a) (eps_hat(z_t, c_tgt) - eps_hat(z_t^src, c_src)),
     with the same noise eps and level sigma on both branches                              (§1.3b)
   * DreamSampler distillation (Algorithm 2, §2.4): on a *decreasing* sigma grid the target is the
     regularized Tweedie estimate z_tgt = prox_R(T(z_t, eps_hat)); after the fit the next latent
     is the renoised projection  z_{t-1} = a' E(g(theta)) + s' eps_tilde  (reverse sampling);

2. a *fit* of theta: a few optimizer steps on  1/2 mean ||E(g(theta)) - sg[z_tgt]||^2  (latent
   space) or  1/2 mean ||g(theta) - sg[D(z_tgt)]||^2  (pixel space), plus an optional pixel data
   term  ||A g(theta) - y||^2  for restoration (masked or low-resolution rasters).

With one latent-space fit step the gradient is exactly the SDS / DDS gradient d (identity §1.3a),
and with an exact fit of an identity generator Algorithm 2 is the DreamSampler / DDIM sampler.

The models follow the core's one contract (``denoiser.py``): ``model(x, sigma) -> x0``, the
(CFG-guided) Tweedie estimate of the prompt; DDS takes a second denoiser of the source prompt, and
DreamSampler distillation the regularizers' named ``extras`` as ``sampler.dream_sample`` does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from .codec import IdentityCodec
from .denoiser import Denoiser, Extras, Host, randn_like
from .regularizers import Regularizer, apply_regularizers
from .sampler import default_grid, renoise, step_context
from .schedule import Parameterization

METHODS = ("dreamsampler", "sds", "dds")
FIT_SPACES = ("latent", "pixel")
WEIGHTINGS = ("tweedie", "sds")

#: VectorFusion's Adam settings (spec svg_rendering §1.4).  VectorFusion back-propagates the
#: unnormalised w (eps_hat - eps); our fit loss is a *mean* over the rendered values, so its
#: gradients are n times smaller and eps is divided by n (``Generator.optimizer``): the same Adam
#: steps as the unnormalised sum, whatever the canvas size (with eps = 1e-6 on the mean, a 512 px
#: canvas had point gradients ~ eps and its points moved by a canvas-dependent fraction of lr).
ADAM_BETAS = (0.9, 0.9)
ADAM_EPS = 1e-6


# ----------------------------------------------------------------------------- generators
class Generator:
    """theta -> output.  ``space``: "pixel" (``render()`` is [B, 3, H, W] in [-1, 1]) or "latent"
    (``render()`` is the latent itself, in the model's space)."""

    space = "pixel"

    def render(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def param_groups(self) -> list[dict]:  # pragma: no cover - interface
        """torch.optim parameter groups ({"params": [...], "lr": ...}); groups with lr 0 are left out."""
        raise NotImplementedError

    def project_(self) -> None:
        """Projection after every optimizer step (e.g. colours back into [0, 1])."""

    def output_size(self) -> int:
        """Number of values ``render()`` returns (what the fit loss averages over)."""
        return int(self.render().numel())

    def optimizer(self) -> torch.optim.Optimizer:
        """Adam with VectorFusion's betas and eps = ADAM_EPS / output_size() (see ADAM_EPS)."""
        groups = [g for g in self.param_groups() if g["lr"] > 0 and g["params"]]
        if not groups:
            raise ValueError("nothing to optimize: every learning rate is 0")
        return torch.optim.Adam(groups, betas=ADAM_BETAS, eps=ADAM_EPS / max(self.output_size(), 1))


class LatentGenerator(Generator):
    """The identity generator: theta is the latent z [B, C, h, w] (model space)."""

    space = "latent"

    def __init__(self, z: Tensor, lr: float = 0.01):
        self.z = z.detach().clone().requires_grad_(True)
        self.lr = float(lr)

    def render(self) -> Tensor:
        return self.z

    def output_size(self) -> int:
        return int(self.z.numel())

    def param_groups(self):
        return [{"params": [self.z], "lr": self.lr}]


class ImageGenerator(Generator):
    """theta is a raster: pixels [B, 3, H, W] in [-1, 1], optimized as values in [0, 1]."""

    def __init__(self, pixels: Tensor, lr: float = 0.01):
        self.image = ((pixels.detach() + 1.0) / 2.0).clamp(0.0, 1.0).clone().requires_grad_(True)
        self.lr = float(lr)

    def render(self) -> Tensor:
        return self.image * 2.0 - 1.0

    def output_size(self) -> int:
        return int(self.image.numel())

    def param_groups(self):
        return [{"params": [self.image], "lr": self.lr}]

    @torch.no_grad()
    def project_(self):
        self.image.clamp_(0.0, 1.0)


class SVGGenerator(Generator):
    """theta are the parameters of a batch of SVG scenes (one canvas size), drawn by ``svg.render``.

    point_lr: Adam step of the control points in pixels (VectorFusion: 1.0 on a 600-px canvas).
    color_lr: fill / stroke RGBA (VectorFusion: 0.01).  width_lr: stroke widths (0 = fixed).
    softness: anti-aliasing ramp in pixels (> 1 widens the band that carries geometry gradients).
    The scenes are cloned: the inputs are never modified.
    """

    def __init__(self, scenes, point_lr: float = 1.0, color_lr: float = 0.01, width_lr: float = 0.0,
                 softness: float = 1.0, device=None, dtype=torch.float32):
        from .svg import SVGScene
        scenes = [scenes] if isinstance(scenes, SVGScene) else list(scenes)
        if not scenes:
            raise ValueError("no SVG scene to optimize")
        if len({(s.width, s.height) for s in scenes}) != 1:
            raise ValueError("the scenes of a batch must share one canvas size")
        self.scenes = [s.clone().to(device=device, dtype=dtype).requires_grad_(
            points=point_lr > 0, colors=color_lr > 0, widths=width_lr > 0) for s in scenes]
        self.point_lr, self.color_lr, self.width_lr = float(point_lr), float(color_lr), float(width_lr)
        self.softness = float(softness)

    @property
    def size(self) -> tuple[int, int]:
        return self.scenes[0].width, self.scenes[0].height

    def output_size(self) -> int:
        w, h = self.size
        return len(self.scenes) * 3 * int(w) * int(h)

    def render(self) -> Tensor:
        from .svg import render
        return render(self.scenes, layout="BCHW", softness=self.softness) * 2.0 - 1.0

    def param_groups(self):
        groups = []
        for kind, lr in (("points", self.point_lr), ("colors", self.color_lr), ("widths", self.width_lr)):
            if lr > 0:
                flags = {"points": kind == "points", "colors": kind == "colors", "widths": kind == "widths"}
                params = [t for s in self.scenes for t in s.parameters(**flags) if t.requires_grad]
                groups.append({"params": params, "lr": lr})
        return groups

    def project_(self):
        for s in self.scenes:
            s.clamp_()

    def result(self):
        """The optimized scenes, detached (on their device)."""
        return [s.detach() for s in self.scenes]


# ----------------------------------------------------------------------------- data terms
def _plain(t: Tensor) -> Tensor:
    """A tensor made under torch.inference_mode (the host's model calls) cannot take part in autograd
    outside it: clone it into a normal tensor."""
    if t.is_inference() and not torch.is_inference_mode_enabled():
        return t.clone()
    return t


@dataclass
class PixelDataTerm:
    """Restoration term on the generator's pixels x [B, 3, H, W] in [-1, 1] (spec svg_rendering §3.4):

        weight * ||A x - y||^2 / m    (m = number of measurements, averaged over the batch)

    op: a linear operator with ``A``, ``project`` and ``num_measurements`` (``operators.Inpainting``
    for a masked raster, ``AvgPoolSR`` for a low-resolution one, ...); y: the measurement
    [B or 1, C, h, w] in [-1, 1]."""

    op: object
    y: Tensor
    weight: float = 1.0

    def __post_init__(self):
        if not torch.isfinite(self.y).all():
            raise ValueError("the measurement contains NaN or infinite values")

    def loss(self, x: Tensor) -> Tensor:
        y = _plain(self.y.to(device=x.device, dtype=x.dtype))
        if y.shape[0] != x.shape[0]:
            y = y.expand(x.shape[0], *y.shape[1:])
        y = self.op.project(y)
        r = self.op.A(x) - y
        m = self.op.num_measurements(y).to(device=x.device, dtype=x.dtype).clamp_min(1.0)
        return self.weight * (r.pow(2).flatten(1).sum(1) / m).mean()


# ----------------------------------------------------------------------------- distillation directions
def tweedie_residual(z: Tensor, x0: Tensor) -> Tensor:
    """d = z - T(z_t): the gradient of 1/2 ||z - sg[T(z_t)]||^2 (the regression form of SDS)."""
    return z - x0


def sds_direction(model: Denoiser, z: Tensor, sigma, noise: Tensor, param: Parameterization) -> Tensor:
    """SDS direction at level sigma with noise eps (spec §1.3a):

        z_t = a z + s eps;  d = z - T(z_t, eps_hat) = (s / a) (eps_hat - eps)."""
    x_t = param.compose(z, noise, sigma)
    return tweedie_residual(z, _plain(model(x_t, sigma)))


def dds_direction(model: Denoiser, source: Denoiser, z: Tensor, z_src: Tensor, sigma, noise: Tensor,
                  param: Parameterization) -> Tensor:
    """DDS direction (spec §1.3b): (s/a) (eps_hat(z_t, c_tgt) - eps_hat(z_t^src, c_src)) with the same
    eps and sigma on both branches, computed as  (z - T_tgt) - (z_src - T_src)  (equal by linearity)."""
    x_t = param.compose(z, noise, sigma)
    x_src = param.compose(z_src, noise, sigma)
    return (tweedie_residual(z, _plain(model(x_t, sigma)))
            - tweedie_residual(z_src, _plain(source(x_src, sigma))))


def distill_weight(sigma, param: Parameterization, weighting: str = "tweedie") -> float:
    """Per-level weight of the direction d (latent units).

    ``tweedie``: 1, i.e. eps-space weight w = sqrt((1 - abar) / abar) = s / a (spec §1.3a: the Tweedie
    regression); ``sds``: DreamFusion's w = 1 - abar on (eps_hat - eps), i.e. a s / (a^2 + s^2) on d."""
    if weighting == "tweedie":
        return 1.0
    if weighting == "sds":
        a, s = float(param.signal(torch.as_tensor(sigma))), float(param.noise(torch.as_tensor(sigma)))
        return a * s / (a * a + s * s)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


# ----------------------------------------------------------------------------- the fit
def generator_latent(generator: Generator, codec) -> Tensor:
    """E(g(theta)) (or the latent of a latent generator); differentiable when autograd is on."""
    out = generator.render()
    return out if generator.space == "latent" else codec.encode(out)


def fit_generator(generator: Generator, optimizer, target, *, codec=None, space: str = "latent",
                  steps: int = 1, weight: float = 1.0, data_term: PixelDataTerm | None = None,
                  interrupt: Callable[[], None] | None = None) -> float:
    """``steps`` optimizer steps on  weight * 1/2 mean ||out - sg[target]||^2 + data term.

    space "latent": out = E(g(theta)), target a latent; "pixel": out = g(theta), target pixels (a
    latent generator always fits in latent space).  ``target`` may be a callable: it is evaluated
    once, on the first step's detached ``out``, and its result kept for the remaining steps (so an
    SDS step costs one generator / encoder pass).  Returns the last loss."""
    codec = codec or IdentityCodec()
    loss_value = float("nan")
    for _ in range(int(steps)):
        if interrupt is not None:
            interrupt()
        optimizer.zero_grad(set_to_none=True)
        px = generator.render()
        out = px if (space == "pixel" or generator.space == "latent") else codec.encode(px)
        if callable(target):
            with torch.no_grad():
                target = target(out.detach())
        target = _plain(target).to(device=out.device, dtype=out.dtype)
        loss = weight * 0.5 * (out - target).pow(2).mean()
        if data_term is not None and generator.space == "pixel":
            loss = loss + data_term.loss(px)
        loss.backward()
        optimizer.step()
        generator.project_()
        loss_value = float(loss.detach())
    return loss_value


@dataclass(frozen=True)
class FitConfig:
    """How the generator is fitted to each target.

    space: "latent" (fit E(g(theta)) to the target latent) or "pixel" (fit g(theta) to D(target));
    inner_steps: optimizer steps per target; data_term: optional restoration term on the pixels."""

    space: str = "latent"
    inner_steps: int = 1
    data_term: PixelDataTerm | None = None

    def check(self, generator: Generator) -> None:
        if self.space not in FIT_SPACES:
            raise ValueError(f"fit_space must be one of {FIT_SPACES}, got {self.space!r}")
        if self.data_term is not None and generator.space != "pixel":
            raise ValueError("a pixel data term needs a pixel generator (an SVG or an image), not a latent")


@dataclass(frozen=True)
class RandomLevels:
    """SDS / DDS's noise levels: each iteration draws u ~ U[t_range] (normalized time, 1 = pure
    noise), sigma = sigma_at(u), and weights the direction by ``distill_weight(sigma, weighting)``."""

    iterations: int = 500
    t_range: tuple = (0.02, 0.98)
    weighting: str = "tweedie"

    def __post_init__(self):
        lo, hi = float(self.t_range[0]), float(self.t_range[1])
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"t_range must satisfy 0 <= min <= max <= 1, got {self.t_range}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")


@dataclass
class DistillResult:
    latent: Tensor                     # E(g(theta)) at the end, model space
    losses: list = field(default_factory=list)


def _final_latent(generator: Generator, codec) -> Tensor:
    with torch.no_grad():
        return _plain(generator_latent(generator, codec).detach())


# ----------------------------------------------------------------------------- SDS / DDS
def _random_level_distill(direction, generator: Generator, sigma_at, param: Parameterization, levels: RandomLevels,
                          fit: FitConfig, codec, optimizer, rng, callback, interrupt) -> DistillResult:
    """The loop SDS and DDS share: per iteration a level and a noise, the direction d at the current
    latent z = E(g(theta)), and a fit of theta toward z - weight(sigma) d."""
    fit.check(generator)
    codec = codec or IdentityCodec()
    optimizer = optimizer or generator.optimizer()
    lo, hi = float(levels.t_range[0]), float(levels.t_range[1])
    losses = []
    for i in range(int(levels.iterations)):
        u = lo + (hi - lo) * float(torch.rand((), generator=rng, dtype=torch.float64))
        sigma = torch.as_tensor(float(sigma_at(u)), dtype=torch.float64)
        w = distill_weight(sigma, param, levels.weighting)

        def target(out, sigma=sigma, w=w):
            # ``out`` is the first fit step's output: the latent, or pixels in pixel space
            z_now = out if (fit.space == "latent" or generator.space == "latent") else codec.encode(out)
            d = direction(z_now, sigma.to(z_now.dtype), randn_like(z_now, rng))
            z_tgt = z_now - w * d
            return z_tgt if z_now is out else codec.decode(z_tgt)

        losses.append(fit_generator(generator, optimizer, target, codec=codec, space=fit.space,
                                    steps=fit.inner_steps, data_term=fit.data_term, interrupt=interrupt))
        if callback is not None:
            callback(i, int(levels.iterations), _final_latent(generator, codec))
    return DistillResult(latent=_final_latent(generator, codec), losses=losses)


def sds(model: Denoiser, generator: Generator, sigma_at: Callable[[float], float], param: Parameterization,
        levels: RandomLevels = RandomLevels(), fit: FitConfig = FitConfig(), *, codec=None, optimizer=None,
        rng: torch.Generator | None = None, callback=None, interrupt=None) -> DistillResult:
    """Score Distillation Sampling (DreamFusion / VectorFusion; spec §1.3a): theta follows
    d = z - T(a z + s eps) at random levels.  ``callback(i, n, latent)`` after each iteration;
    ``interrupt()`` before each optimizer step."""
    return _random_level_distill(lambda z, sigma, noise: sds_direction(model, z, sigma, noise, param),
                                 generator, sigma_at, param, levels, fit, codec, optimizer, rng, callback, interrupt)


def dds(model: Denoiser, source: Denoiser, generator: Generator, sigma_at: Callable[[float], float],
        param: Parameterization, levels: RandomLevels = RandomLevels(), fit: FitConfig = FitConfig(), *,
        source_latent: Tensor | None = None, codec=None, optimizer=None, rng: torch.Generator | None = None,
        callback=None, interrupt=None) -> DistillResult:
    """Delta Denoising Score (Hertz et al.; spec §1.3b): SDS of the target prompt minus SDS of the
    source prompt at the source latent, same level and noise.  ``source_latent`` defaults to the
    generator's initial latent (edit "what it was" -> "what the prompt says")."""
    fit.check(generator)
    codec = codec or IdentityCodec()
    if source_latent is None:
        source_latent = _final_latent(generator, codec)

    def direction(z, sigma, noise):
        return dds_direction(model, source, z, _plain(source_latent).to(z), sigma, noise, param)

    return _random_level_distill(direction, generator, sigma_at, param, levels, fit, codec, optimizer, rng,
                                 callback, interrupt)


# ----------------------------------------------------------------------------- DreamSampler distillation
def dream_distill(model: Denoiser, generator: Generator, sigmas: Tensor, param: Parameterization,
                  fit: FitConfig = FitConfig(space="pixel", inner_steps=10), *, extras: Extras | None = None,
                  regularizers: Sequence[Regularizer] = (), eta: float = 0.0, eta_schedule: str = "constant",
                  x: Tensor | None = None, spans: Tensor | None = None, times: Tensor | None = None,
                  codec=None, optimizer=None, rng: torch.Generator | None = None, host: Host | None = None,
                  callback=None, interrupt=None) -> DistillResult:
    """DreamSampler distillation: Algorithm 2 of Kim et al. (2024) as specified in spec §2.4.

    sigmas: descending grid, length steps + 1 (usually ending at 0).
    x: the noisy latent at sigmas[0] (model space); None: a(sigma_0) E(g(theta_0)) + s(sigma_0) xi.
    For each step i (the three moves of ``sampler.dream_sample``, with the fit in between)::

        x0_hat = T(x_t, eps_hat)                              model (no grad), CFG inside ``model``
        z_tgt  = prox_R(x0_hat)                               regularizers (edit, mask, data consistency)
        theta <- inner_steps optimizer steps toward z_tgt     (+ data term; latent or pixel fit)
        z_bar  = E(g(theta))                                  projection onto what g can draw
        x_next = a' z_bar + s' eps_tilde,  eps_tilde = sqrt(1 - eta) eps_hat + sqrt(eta) xi

    extras / spans / times / host / eta_schedule: as ``sampler.dream_sample``.
    ``callback(i, n, z_bar)`` after each step; ``interrupt()`` before each optimizer step.
    Returns the last z_bar (for a grid ending at 0, the regularized, projected Tweedie estimate).
    """
    fit.check(generator)
    codec = codec or IdentityCodec()
    optimizer = optimizer or generator.optimizer()
    n = len(sigmas) - 1
    if n < 1:
        raise ValueError("dream_distill needs at least one step (len(sigmas) >= 2)")
    uniform_spans, uniform_times = default_grid(n)
    spans = uniform_spans if spans is None else spans
    times = uniform_times if times is None else times
    pixel_fit = fit.space == "pixel" and generator.space == "pixel"
    fresh = lambda i, ctx: randn_like(ctx.x, rng)          # noqa: E731 - the sampler's NoiseFn

    z_bar = _final_latent(generator, codec)
    if x is None:
        x = param.compose(z_bar, randn_like(z_bar, rng), sigmas[0])
    x = _plain(x)
    losses = []
    for i in range(n):
        with torch.no_grad():
            ctx = step_context(model, extras, x, i, sigmas, param, spans, times, regularizers=regularizers, eta=eta,
                               eta_schedule=eta_schedule, generator=rng, host=host, prepare=_plain)
            z_tgt = _plain(apply_regularizers(ctx.base, ctx, regularizers))
            target = codec.decode(z_tgt) if pixel_fit else z_tgt
        losses.append(fit_generator(generator, optimizer, target, codec=codec, space=fit.space,
                                    steps=fit.inner_steps, data_term=fit.data_term, interrupt=interrupt))
        z_bar = _final_latent(generator, codec)
        if callback is not None:
            callback(i, n, z_bar)
        if float(ctx.sigma_next) == 0.0:
            x = z_bar
            continue
        with torch.no_grad():
            x = renoise(z_bar, ctx, fresh)
    return DistillResult(latent=z_bar, losses=losses)


def sigma_from_table(table: Tensor) -> Callable[[float], float]:
    """sigma_at(u) on an ascending discrete sigma table (t = 0 .. T-1), log-linear between entries;
    u in [0, 1] maps to t = u (T - 1).  For hosts without their own map (tests, benchmarks)."""
    log_table = table.double().log()

    def sigma_at(u: float) -> float:
        t = min(max(float(u), 0.0), 1.0) * (len(table) - 1)
        lo = int(math.floor(t))
        hi = min(lo + 1, len(table) - 1)
        w = t - lo
        return float(torch.exp((1 - w) * log_table[lo] + w * log_table[hi]))

    return sigma_at


# ----------------------------------------------------------------------------- the inversion-free edit
def distill_edit_weight(sigma: float, sigma_next: float) -> float:
    """The step weight w = (sigma - sigma_next) / sigma of ``distill_edit``: its sum over any grid
    from sigma_a to sigma_b tends to ln(sigma_a / sigma_b) as the steps shrink, so a strength acts the
    same at any step count; the last step into sigma = 0 has w = 1."""
    return (float(sigma) - float(sigma_next)) / float(sigma)


def distill_edit(target: Denoiser, source: Denoiser, x_src: Tensor, sigmas: Tensor, param: Parameterization, *,
                 strength: float = 1.5, fidelity: float = 1.0, mask: Tensor | None = None,
                 rng: torch.Generator | None = None, callback=None, interrupt=None) -> Tensor:
    """The inversion-free edit: DreamSampler distillation (Algorithm 2) with the identity generator
    and the DDS direction, on the sampler's decreasing grid (issue 23).  The edited latent z starts
    at the source X (model space) and, at each level sigma_i > 0 of ``sigmas`` (descending; a last
    level 0 is not evaluated), with fresh noise N_i shared by both branches (FlowEdit's coupling)::

        Z_src = a(sigma) X + s(sigma) N_i,          Z_tar = Z_src + (z - X)
        z <- z + w_i [ strength (target(Z_tar) - source(Z_src)) - fidelity (z - X) ]

    w_i = ``distill_edit_weight`` (step-count invariant; the factor w_i * fidelity is capped at 1).
    ``target`` / ``source``: the target prompt's (guided) and the source prompt's x0 denoisers.  It
    is the proximal fit of z toward the DDS target  z + strength (target - source)  with a fidelity
    pull to X; strength = fidelity = 1 is FlowEdit's step exactly (on a flow model, with v = (Z - x0)
    / sigma, v_tar(Z_tar) - v_src(Z_src) = ((z - X) - (x0_tar - x0_src)) / sigma); with the target
    prompt equal to the source, z stays X.  ``mask`` [B|1, 1, H, W] (1 = editable) keeps
    z = X + mask (z - X): the rest of the latent is X exactly.  Two model calls per level (one
    per branch).  ``callback(i, n, x0_target, z)`` after each level; ``interrupt()`` before each."""
    if not (math.isfinite(strength) and math.isfinite(fidelity)) or fidelity < 0:
        raise ValueError(f"strength must be finite and fidelity >= 0, got {strength}, {fidelity}")
    n = len(sigmas) - 1
    x_src = _plain(x_src)
    mask = None if mask is None else mask.to(x_src)
    z = x_src.clone()
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if sigma <= 0.0:
            break
        if interrupt is not None:
            interrupt()
        noise = randn_like(x_src, rng)
        z_src = param.compose(x_src, noise, torch.as_tensor(sigma, dtype=x_src.dtype))
        x0_tar = target(z_src + (z - x_src), sigmas[i])
        x0_src = source(z_src, sigmas[i])
        w = distill_edit_weight(sigma, sigma_next)
        z = z + w * strength * (x0_tar - x0_src) - min(w * fidelity, 1.0) * (z - x_src)
        if mask is not None:
            z = x_src + mask * (z - x_src)
        if callback is not None:
            callback(i, n, x0_tar, z)
    return z
