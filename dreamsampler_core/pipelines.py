"""Pipelines: the algorithms assembled once, as both hosts run them.

The ComfyUI nodes (a ``run(job)`` closure handed to ``nodes/host``'s ``CoreSampler``) and the diffusers
adapter (``DreamPipeline``'s methods) make the same call here.  A pipeline takes only what every host
has:

* denoisers ``model(x, sigma, **extra) -> x0`` (``denoiser.py``); SDE-Drag's guidance ramp is passed
  per call as ``cfg=`` (the guidance scale of that call), which a host's denoiser must accept;
* the ``Parameterization`` and the host's sigma grid (descending; for the cycle pipelines its last
  level > 0, ``cycle.clean_end_grid``);
* the clean latent in model space, a ``torch.Generator`` for the noise, and
  ``callback(k, x0_hat, x)`` after each model call (progress, previews; the host's denoiser checks
  for interruption);

and returns ``(latent, report)``: the result in model space and a small frozen report.  What stays
with a host is its input handling (widgets, images, masks, points in pixels), its grid and its
denoisers.  Cycle-SDE editing is ``cycle.cycle_sde_edit`` (only the nodes run it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from . import cycle, drag
from .cycle import CycleCode
from .denoiser import Denoiser, identity
from .points import Point, to_latent_points
from .schedule import Parameterization


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
def sde_drag_pipeline(model: Denoiser, x0: Tensor, sigmas: Tensor, param: Parameterization, plan: DragPlan, *,
                      cfg: float, guidance_ramp: str = "linear", mask: Tensor | None = None, alpha: float = 1.1,
                      beta: float = 0.3, radius: int = 5, generator: torch.Generator | None = None,
                      callback: Callable | None = None) -> tuple[Tensor, DragReport]:
    """SDE-Drag (``drag.sde_drag``) of the clean latent ``x0`` along ``plan`` with the prompt's
    denoiser ``model``, its guidance ramping per level from ``cfg`` at sigmas[0] (``drag.guidance_ramp``).

    mask: [B|1, 1, h, w] on the latent grid, 1 = editable.  ``callback(k, x0_hat, x)`` after each
    of the ``plan.model_calls(sigmas)`` model calls."""
    ramp = drag.guidance_ramp(len(sigmas) - 1, cfg, guidance_ramp)
    step = None if callback is None else (lambda sub, m, phase, k, x0_hat, x: callback(k, x0_hat, x))
    out = drag.sde_drag(guided_by_level(model, sigmas, ramp), x0, sigmas, param, list(plan.sources),
                        list(plan.targets), mask=mask, alpha=alpha, beta=beta, radius=int(radius),
                        step_size=plan.step_size, generator=generator, callback=step)
    return out, DragReport(plan.substeps, plan.model_calls(sigmas), tuple(ramp))


# ----------------------------------------------------------------------------- CycleDiffusion
@dataclass(frozen=True)
class CycleReport:
    """A CycleDiffusion run's DDPM code (``cycle.CycleCode``) and its model calls."""

    code: CycleCode
    model_calls: int


def cyclediffusion_encode(source: Denoiser, x0: Tensor, sigmas: Tensor, param: Parameterization, *, eta: float,
                          coupling: str = "posterior", generator: torch.Generator | None = None,
                          store: Callable[[Tensor], Tensor] = identity,
                          callback: Callable | None = None) -> tuple[Tensor, CycleReport]:
    """DPM-Encoder (``cycle.dpm_encode``) of ``x0`` with the SOURCE prompt's denoiser: the noisy start
    latent (on x0's device / dtype) and the code.  ``store`` moves each kept tensor (e.g. to the CPU)."""
    code = cycle.dpm_encode(source, x0, sigmas, param, eta=eta, coupling=coupling, generator=generator, store=store,
                            callback=callback)
    return code.x_start.to(x0), CycleReport(code, code.steps)


def cyclediffusion_decode(target: Denoiser, code: CycleCode, param: Parameterization, like: Tensor, *,
                          mask: Tensor | None = None, callback: Callable | None = None) -> tuple[Tensor, CycleReport]:
    """CycleDiffusion's decode (``cycle.cycle_decode``) of ``code`` with the TARGET prompt's denoiser,
    on ``like``'s device / dtype; ``mask`` (1 = editable) keeps the rest on the source trajectory."""
    out = cycle.cycle_decode(target, code, param, x_start=code.x_start.to(like), mask=mask, callback=callback)
    return out, CycleReport(code, code.steps)


def cyclediffusion_pipeline(source: Denoiser, target: Denoiser, x0: Tensor, sigmas: Tensor, param: Parameterization,
                            *, eta: float, coupling: str = "posterior", generator: torch.Generator | None = None,
                            mask: Tensor | None = None, store: Callable[[Tensor], Tensor] = identity,
                            callback: Callable | None = None) -> tuple[Tensor, CycleReport]:
    """CycleDiffusion zero-shot editing: ``cyclediffusion_encode`` with ``source``, then
    ``cyclediffusion_decode`` with ``target`` (the nodes run the two halves as two nodes)."""
    x_start, enc = cyclediffusion_encode(source, x0, sigmas, param, eta=eta, coupling=coupling, generator=generator,
                                         store=store, callback=callback)
    out, _ = cyclediffusion_decode(target, enc.code, param, x_start, mask=mask, callback=callback)
    return out, CycleReport(enc.code, 2 * enc.code.steps)
