"""Pipelines: the algorithms assembled once, as both hosts run them.

A pipeline is a named function ``pipeline(run, **options) -> (latent, report)``.  ``run`` (a frozen
``Run``) is the small host protocol, what every host has for one run:

* denoisers ``model(x, sigma, **extra) -> x0`` (``denoiser.py``): the prompt's guided ``model``,
  named guided ``branches`` (a source prompt) and the regularizers' named ``extras``; SDE-Drag's
  guidance ramp is passed per call as ``cfg=`` (the guidance scale of that call), which a host's
  denoiser must accept;
* the ``Parameterization`` and the host's sigma grid (descending; for the cycle pipelines its last
  level > 0, ``cycle.clean_end_grid``);
* the input latent in model space (clean, or an inverted x_T), the latent's own mask and seed;
* ``Host`` services (latent maps, sigma_at, interruption) and ``progress(x0_hat, x)`` after each
  model call (progress bar, previews);
* how the host starts a sampled grid (``start``), its normalized time grid (``time_grid``) and how it
  hands a sampled latent back (``finish``).

The options are the algorithm's own settings (widgets, plans, codes).  A pipeline returns the result
in model space and a small report (or None).  The ComfyUI nodes hand a pipeline and its options to
``nodes/host``'s ``CoreSampler`` (``CoreSampler(pipelines.sde_drag, steps, plan=..., cfg=...)``), which
builds the ``Run`` inside ``guider.sample``; the diffusers adapter builds its ``Run`` itself
(``DreamPipeline``'s methods).  What stays with a host is its input handling (widgets, images, masks,
points in pixels), its grid and its denoisers.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from . import cycle, drag
from .csd import csd_edit as _csd_edit
from .cycle import CycleCode
from .denoiser import DEFAULT_HOST, Denoiser, Host, identity
from .distill import FitConfig, Generator, RandomLevels, dds, distill_edit, dream_distill, sds
from .inversion import RefineStats, ddim_invert
from .points import Point, to_latent_points
from .regularizers import KeepKnown
from .sampler import dream_sample
from .schedule import Parameterization

log = logging.getLogger("DreamSampler")


def _no_progress(x0_hat: Tensor, x: Tensor) -> None:
    return None


def _no_time_grid(sigmas: Tensor) -> tuple:
    return None, None


@dataclass(frozen=True)
class Run:
    """What a host hands a pipeline for one run (see the module docstring).

    model: the prompt's guided denoiser (the base branch; a ``BatchingDenoiser`` where the host
        batches the ``extras`` with it).  branches: named guided denoisers (e.g. "source").  extras:
        the regularizers' named predictions.  regularizers: the bound regularizers of the run.
    latent: the input latent (model space).  mask: the latent's own mask on its grid (1 = repaint),
        or None.
    start(sigmas): the input noised to sigmas[0] with the run's noise (default: the latent as it is).
    time_grid(sigmas) -> (spans, times): the normalized time grid (default: none).
    finish(x): a sampled latent as the host returns it (default: as it is)."""

    model: Denoiser
    param: Parameterization
    sigmas: Tensor
    latent: Tensor
    branches: Mapping[str, Denoiser] = field(default_factory=dict)
    extras: Mapping[str, Denoiser] = field(default_factory=dict)
    regularizers: tuple = ()
    mask: Tensor | None = None
    seed: int = 0
    host: Host = DEFAULT_HOST
    progress: Callable[[Tensor, Tensor], None] = _no_progress
    start: Callable[[Tensor], Tensor] | None = None
    time_grid: Callable[[Tensor], tuple] = _no_time_grid
    finish: Callable[[Tensor], Tensor] = identity

    def start_latent(self, sigmas: Tensor) -> Tensor:
        return self.latent.clone() if self.start is None else self.start(sigmas)

    def branch(self, name: str) -> Denoiser:
        """The guided branch ``name``; a clear error where the host was not given it."""
        if name not in self.branches:
            raise ValueError(f"this pipeline needs the guided branch {name!r} (a second prompt); the host "
                             f"gave {sorted(self.branches) or 'none'}")
        return self.branches[name]


def sampling_grid(sigmas: Tensor) -> Tensor:
    """An ascending (FlipSigmas) grid back to the descending grid the pipelines walk (its last level
    0 where the flipped grid started below 1e-3)."""
    if len(sigmas) > 1 and float(sigmas[0]) < float(sigmas[-1]):
        sigmas = sigmas.flip(0)
        if float(sigmas[-1]) < 1e-3:
            sigmas[-1] = 0.0
    return sigmas


# ----------------------------------------------------------------------------- DreamSampler and inversion
def sample(run: Run, *, eta: float = 0.0, eta_schedule: str = "constant", resample: int = 0,
           known_source: Tensor | None = None) -> tuple[Tensor, None]:
    """The DreamSampler loop (``sampler.dream_sample``) from ``run.start``: eta, resampling, the run's
    regularizers, and the run's mask kept by ``KeepKnown`` on the source (``known_source``: the
    clean latent in the codec's space, where ``run.latent`` is an inverted x_T)."""
    sigmas = sampling_grid(run.sigmas)
    regs = tuple(run.regularizers)
    if run.mask is not None:
        known = run.latent if known_source is None else run.host.latent_in(known_source.to(run.latent))
        regs = regs + (KeepKnown(known, run.mask),)
    spans, times = run.time_grid(sigmas)
    generator = torch.Generator(device="cpu").manual_seed(int(run.seed) + 7)
    out = dream_sample(run.model, run.start_latent(sigmas), sigmas, run.param, extras=run.extras, regularizers=regs,
                       eta=eta, eta_schedule=eta_schedule, spans=spans, times=times, generator=generator,
                       callback=lambda i, z, x: run.progress(z, x), host=run.host, resample=int(resample))
    return run.finish(out), None


def invert(run: Run, *, refine: int = 0) -> tuple[Tensor, RefineStats | None]:
    """DDIM inversion (``inversion.ddim_invert``) of ``run.latent`` up the run's grid (a FlipSigmas
    grid is accepted); the report: the refinement's ``RefineStats`` when refine > 0, else None."""
    sigmas = sampling_grid(run.sigmas)
    stats = RefineStats()
    x_t = ddim_invert(run.model, run.latent, sigmas, run.param, refine=refine,
                      callback=lambda k, x: run.progress(x, x), stats=stats)
    if refine <= 0:
        return x_t, None
    log.info("DDIM inversion refinement: %d of %d iterations lowered the reverse-step residual "
             "(%d steps x %d refine_steps x %d latents; %d non-finite iterates discarded)",
             stats.helped, stats.requested, len(sigmas) - 1, refine, run.latent.shape[0], stats.non_finite)
    return x_t, stats


# ----------------------------------------------------------------------------- SDE-Drag
@dataclass(frozen=True)
class DragPlan:
    """A drag on the latent grid: ``sources`` / ``targets`` as latent cells (x, y), the sub-drag
    length ``step_size`` (latent cells) and the number of sub-drags it gives."""

    sources: tuple
    targets: tuple
    step_size: float
    substeps: int

    def model_calls(self, sigmas: Tensor) -> int:
        """Model calls of the drag on ``sigmas``: a noise recovery and a decode per sub-drag."""
        return 2 * (len(sigmas) - 1) * self.substeps


def plan_drag(sources: Sequence[Point], targets: Sequence[Point], image_size: tuple, latent_size: tuple,
              step_size: float = 2.0) -> DragPlan:
    """Pixel points (x = column, y = row) of an image of ``image_size`` (W, H) on the latent grid of
    ``latent_size`` (w, h): floor(p / f), f = W / w per axis (``points.to_latent_points``)."""
    (W, H), (w, h) = image_size, latent_size
    P = to_latent_points(sources, W / w, H / h)
    Q = to_latent_points(targets, W / w, H / h)
    return DragPlan(tuple(P), tuple(Q), float(step_size), drag.substep_count(P, Q, step_size))


@dataclass(frozen=True)
class DragReport:
    """What an SDE-Drag run did: sub-drags, model calls and the guidance scale per step of a sub-drag."""

    substeps: int
    model_calls: int
    guidance: tuple


def guided_by_level(model: Denoiser, sigmas: Tensor, scales: Sequence[float]) -> Denoiser:
    """``model`` called with ``cfg=scales[k]`` at ``sigmas[k]`` (elsewhere ``cfg=None``: the host's own)."""
    by_level = {float(s): g for s, g in zip(sigmas[:-1], scales)}

    def denoise(x: Tensor, sigma, **extra) -> Tensor:
        return model(x, sigma, cfg=by_level.get(float(sigma)), **extra)

    return denoise


@torch.no_grad()
def sde_drag(run: Run, *, plan: DragPlan, cfg: float, guidance_ramp: str = "linear", mask: Tensor | None = None,
             alpha: float = 1.1, beta: float = 0.3, radius: int = 5,
             generator: torch.Generator | None = None) -> tuple[Tensor, DragReport]:
    """SDE-Drag (``drag.sde_drag``) of the clean ``run.latent`` along ``plan`` with ``run.model``, its
    guidance ramping per level from ``cfg`` at sigmas[0] (``drag.guidance_ramp``).

    mask: [B|1, 1, h, w] on the latent grid, 1 = editable.  ``run.progress`` after each of the
    ``plan.model_calls(sigmas)`` model calls."""
    sigmas = run.sigmas
    ramp = drag.guidance_ramp(len(sigmas) - 1, cfg, guidance_ramp)
    out = drag.sde_drag(guided_by_level(run.model, sigmas, ramp), run.latent, sigmas, run.param,
                        list(plan.sources), list(plan.targets), mask=mask, alpha=alpha, beta=beta,
                        radius=int(radius), step_size=plan.step_size, generator=generator,
                        callback=lambda sub, m, phase, k, x0_hat, x: run.progress(x0_hat, x))
    return out, DragReport(plan.substeps, plan.model_calls(sigmas), tuple(ramp))


# ----------------------------------------------------------------------------- CycleDiffusion
@dataclass(frozen=True)
class CycleReport:
    """A CycleDiffusion run's DDPM code (``cycle.CycleCode``) and its model calls."""

    code: CycleCode
    model_calls: int


def cyclediffusion_encode(run: Run, *, eta: float, coupling: str = "posterior",
                          generator: torch.Generator | None = None,
                          store: Callable[[Tensor], Tensor] = identity) -> tuple[Tensor, CycleReport]:
    """DPM-Encoder (``cycle.dpm_encode``) of ``run.latent`` with ``run.model`` (the SOURCE prompt's
    denoiser) on ``run.sigmas``: the noisy start latent (on the latent's device / dtype) and the code.
    ``store`` moves each kept tensor (e.g. to the CPU)."""
    x0 = run.latent
    code = cycle.dpm_encode(run.model, x0, run.sigmas, run.param, eta=eta, coupling=coupling, generator=generator,
                            store=store, callback=lambda k, x0_hat, x: run.progress(x0_hat, x))
    return code.x_start.to(x0), CycleReport(code, code.steps)


def code_grid_error(code: CycleCode, sigmas: Tensor, like: Tensor | None = None) -> str | None:
    """Why ``code`` cannot be decoded on ``sigmas`` (or into a latent like ``like``), or None."""
    grid = cycle.clean_end_grid(sigmas.detach().cpu().float(), float(code.sigmas[-1]))
    if len(grid) != len(code.sigmas) or not torch.allclose(grid, code.sigmas.float(), rtol=1e-4, atol=1e-6):
        m = code.meta
        return (f"the SIGMAS ({len(sigmas) - 1} steps from {float(sigmas[0]):.4g}) are not the grid the code was "
                f"encoded on ({code.steps} steps from {float(code.sigmas[0]):.4g}); use BasicScheduler with "
                f"scheduler={m.get('scheduler')}, steps={m.get('steps')}, denoise={m.get('strength')}.")
    if like is not None and tuple(like.shape) != tuple(code.x_start.shape):
        return f"latent_image {tuple(like.shape)} does not match the code {tuple(code.x_start.shape)}"
    return None


def cyclediffusion_decode(run: Run, *, code: CycleCode, mask: Tensor | None = None) -> tuple[Tensor, CycleReport]:
    """CycleDiffusion's decode (``cycle.cycle_decode``) of ``code`` with ``run.model`` (the TARGET
    prompt's denoiser), on ``run.latent``'s device / dtype; ``mask`` (1 = editable; default the run's
    own mask) keeps the rest on the source trajectory.  The run's grid and latent must be the code's."""
    if code.meta.get("param") and code.meta["param"] != run.param.kind:
        raise ValueError(f"the code was encoded with a '{code.meta['param']}' model, not '{run.param.kind}'")
    err = code_grid_error(code, run.sigmas, run.latent)
    if err:
        raise ValueError(err)
    return _decode(run, code, run.mask if mask is None else mask)


def _decode(run: Run, code: CycleCode, mask: Tensor | None) -> tuple[Tensor, CycleReport]:
    out = cycle.cycle_decode(run.model, code, run.param, x_start=code.x_start.to(run.latent), mask=mask,
                             callback=lambda k, x0_hat, x: run.progress(x0_hat, x))
    return out, CycleReport(code, code.steps)


def cyclediffusion(run: Run, *, eta: float, coupling: str = "posterior", generator: torch.Generator | None = None,
                   mask: Tensor | None = None, store: Callable[[Tensor], Tensor] = identity) -> tuple[Tensor, CycleReport]:
    """CycleDiffusion zero-shot editing: ``cyclediffusion_encode`` with the branch "source", then
    ``cyclediffusion_decode`` with ``run.model`` (the target; the nodes run the two halves as two nodes)."""
    source_run = dataclasses.replace(run, model=run.branch("source"))
    x_start, enc = cyclediffusion_encode(source_run, eta=eta, coupling=coupling, generator=generator, store=store)
    out, _ = _decode(run, enc.code, mask)
    return out, CycleReport(enc.code, 2 * enc.code.steps)


def cycle_sde_edit(run: Run, *, stage2: str = "cycle_sde", seed: int = 0, mask: Tensor | None = None,
                   store: Callable[[Tensor], Tensor] = identity) -> tuple[Tensor, None]:
    """SDEdit with the stage 2 ``stage2`` (``cycle.cycle_sde_edit``): the branch "source" recovers
    the noise, ``run.model`` (the target) samples."""
    out = cycle.cycle_sde_edit(run.branch("source"), run.model, run.latent, run.sigmas, run.param, stage2=stage2,
                               seed=seed, mask=mask, store=store,
                               callback=lambda k, x0_hat, x: run.progress(x0_hat, x))
    return out, None


# ----------------------------------------------------------------------------- editing by distillation, CSD
def distill_edit_pipeline(run: Run, *, strength: float, fidelity: float, mask: Tensor | None = None,
                          seed: int = 0) -> tuple[Tensor, None]:
    """The inversion-free edit (``distill.distill_edit``): ``run.model`` the target, the branch
    "source" the source prompt, from ``run.latent`` down ``run.sigmas``."""
    rng = torch.Generator(device="cpu").manual_seed(int(seed))
    out = distill_edit(run.model, run.branch("source"), run.latent, run.sigmas, run.param, strength=strength,
                       fidelity=fidelity, mask=mask, rng=rng, callback=lambda i, n, x0, z: run.progress(z, z),
                       interrupt=run.host.interrupt)
    return out, None


def csd_edit(run: Run, **options) -> tuple[Tensor, None]:
    """CSD-Edit (``csd.csd_edit``) of ``run.latent``: ``run.model`` the target, the branch "source"
    the source prompt, levels from ``run.host.sigma_at``; ``options``: ``csd.csd_edit``'s settings."""
    out = _csd_edit(run.model, run.branch("source"), run.latent, run.host.sigma_at, run.param,
                    callback=lambda k, n, x: run.progress(x, x), interrupt=run.host.interrupt, **options)
    return out, None


# ----------------------------------------------------------------------------- score distillation
DISTILL_METHODS = ("dreamsampler", "sds", "dds")


def score_distill(run: Run, *, method: str, make_generator: Callable[[Tensor], Generator], fit: FitConfig,
                  codec: Any = None, levels: RandomLevels | None = None, eta: float = 0.0, seed: int = 0,
                  preview: Callable[[int, int, Generator], None] | None = None) -> tuple[Tensor, Generator]:
    """Score distillation of a generator made by ``make_generator(run.latent)``; returns E(g) (model
    space, ``run.latent``'s dtype) and the optimized generator.  Runs with gradients on, outside
    inference mode (the generator's optimizer steps; the host's model calls stay without gradients).

    method "dreamsampler": Algorithm 2 down ``run.sigmas`` from ``run.start`` with the run's
    regularizers (``distill.dream_distill``); "sds" / "dds" at ``levels`` (``distill.sds`` /
    ``distill.dds``, DDS's source prompt the branch "source" at ``run.latent``).  codec: the VAE
    (``codec.py``; put in the run's model space here and released at the end), or None for a latent
    generator; ``preview(i, n, generator)`` after each iteration."""
    if method not in DISTILL_METHODS:
        raise ValueError(f"method must be one of {DISTILL_METHODS}, got {method!r}")
    to_model = getattr(codec, "in_model_space", None)
    if to_model is not None:
        codec = to_model(run.host.latent_in, run.host.latent_out)
    try:
        return _score_distill(run, method, make_generator, fit, codec, levels, eta, seed, preview)
    finally:
        if to_model is not None:
            codec.release()


def _score_distill(run, method, make_generator, fit, codec, levels, eta, seed, preview):
    with torch.inference_mode(False), torch.enable_grad():
        gen = make_generator(run.latent)
        callback = None if preview is None else (lambda i, n, z: preview(i, n, gen))
        common = dict(codec=codec, rng=torch.Generator(device="cpu").manual_seed(int(seed)), callback=callback,
                      interrupt=run.host.interrupt)
        if method == "dreamsampler":
            spans, times = run.time_grid(run.sigmas)
            result = dream_distill(run.model, gen, run.sigmas, run.param, fit, extras=run.extras,
                                   regularizers=run.regularizers, eta=eta, x=run.start_latent(run.sigmas),
                                   spans=spans, times=times, host=run.host, **common)
        elif method == "sds":
            result = sds(run.model, gen, run.host.sigma_at, run.param, levels, fit, **common)
        else:
            result = dds(run.model, run.branch("source"), gen, run.host.sigma_at, run.param, levels, fit,
                         source_latent=run.latent, **common)
        return result.latent.to(run.latent.dtype), gen
