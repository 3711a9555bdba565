"""The one denoiser contract of the core, and what a host hands the core besides the model.

Every algorithm of this package (DreamSampler, DDIM inversion, DPM-Encoder / CycleDiffusion,
Cycle-SDE, SDE-Drag, SDS / DDS / DreamSampler distillation, CSD) is a plain function over
k-diffusion's denoiser:

    model(x, sigma, **extra) -> x0

the Tweedie estimate of the clean latent given ``x`` at noise level ``sigma`` (a 0-dim or [B]
tensor), in the host's model space ``x = a(sigma) x0 + s(sigma) eps`` (``schedule.Parameterization``).
``extra`` is per-call conditioning a host may accept (k-diffusion's ``extra_args``): the pack's
ComfyUI host takes ``image=`` (InstructPix2Pix's image latent per batch row); both hosts take
``cfg=`` (a guidance scale for this call, SDE-Drag's ramp in ``pipelines.py``); analytic oracles take none.

Extra named predictions (an edit's target prompt, DDS's or Cycle-SDE's source prompt) are a
``Mapping[str, Denoiser]`` of the same contract.  A host that can evaluate several conditionings in
one batch offers it as the base model's method (``BatchingDenoiser.predict_many``): ``predict``
asks for the base and the extras at one point with one call of it, which returns them all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

Denoiser = Callable[..., Tensor]
Extras = Mapping[str, Denoiser]


@runtime_checkable
class BatchingDenoiser(Protocol):
    """A denoiser that evaluates named extra predictions in its own model batch:
    ``predict_many(x, sigma, names) -> (x0, {name: x0})`` at one (x, sigma)."""

    def __call__(self, x: Tensor, sigma, **extra) -> Tensor: ...

    def predict_many(self, x: Tensor, sigma, names: Sequence[str]) -> tuple[Tensor, dict]: ...


def identity(t: Tensor) -> Tensor:
    return t


def no_interrupt() -> None:
    return None


@dataclass(frozen=True)
class Host:
    """Services of the host beyond the model, read by regularizers and pipelines.

    latent_in / latent_out: the codec's latent space <-> the model's space (ComfyUI's
        process_latent_in / process_latent_out; identity for oracles).
    grad_model: x0(x, sigma) with autograd through the network (the opt-in DPS step), or None.
    sigma_at: u in [0, 1] (1 = pure noise) -> sigma on the model's own schedule (SDS / DDS / CSD).
    interrupt: raises when the user cancels; called before every optimizer step.
    """

    latent_in: Callable[[Tensor], Tensor] = identity
    latent_out: Callable[[Tensor], Tensor] = identity
    grad_model: Denoiser | None = None
    sigma_at: Callable[[float], float] | None = None
    interrupt: Callable[[], None] = no_interrupt


DEFAULT_HOST = Host()


def predict(model: Denoiser, extras: Extras | None, names: Sequence[str], x: Tensor, sigma) -> tuple[Tensor, dict]:
    """The base x0 and the named extra x0s at one (x, sigma): one ``predict_many`` call on a
    batching host (``BatchingDenoiser``), else the base and each extra in turn."""
    if not names:
        return model(x, sigma), {}
    if extras is None:
        raise KeyError(f"the regularizers need the predictions {tuple(names)}, but the host gave none")
    missing = [n for n in names if n not in extras]
    if missing:
        raise KeyError(f"the host has no prediction named {missing[0]!r} (has: {', '.join(extras) or 'none'})")
    if isinstance(model, BatchingDenoiser):
        return model.predict_many(x, sigma, tuple(names))
    return model(x, sigma), {n: extras[n](x, sigma) for n in names}


def randn_like(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """N(0, I) of ``like``'s shape, drawn in float32 on the generator's device, then moved to
    ``like``'s device and dtype: the same numbers on every device for one seed."""
    dev = generator.device if generator is not None else like.device
    n = torch.randn(like.shape, generator=generator, device=dev, dtype=torch.float32)
    return n.to(device=like.device, dtype=like.dtype)
