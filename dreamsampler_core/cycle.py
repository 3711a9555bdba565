"""Stochastic latents that reproduce a given image: CycleDiffusion's DPM-Encoder and SDE-Drag's
Cycle-SDE (spec csd §2.2, §2.3, §3.2).

Everything is written in ComfyUI's model space, ``x = a(sigma) x0 + s(sigma) eps`` (see
``schedule.Parameterization``), so eps, v and flow models share one implementation.  The papers'
variance-preserving quantities are ``alpha_bar(sigma)`` and ``z = x / sqrt(a^2 + s^2)``.

DDIM's stochastic step t -> s (spec csd §0, SDE-Drag's Eq. 6) in VP form is

    z_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sig^2) eps + sig w,
    sig^2 = eta^2 (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s),

which is the DreamSampler renoise ``x_s = compose(x0, sqrt(1-f) eps + sqrt(f) w, sigma_s)`` with
the noise fraction ``f = sig^2 / (1 - abar_s) = eta^2 (1 - abar_t/abar_s) / (1 - abar_t)``
(``sampler.ddim_fraction``, the sampler's ``eta_schedule="ddim"``).  A *noise provider*
(``sampler.NoiseFn``) chooses ``w``:
fresh Gaussians (SDE / DDPM), the noises recovered from a source trajectory (CycleDiffusion,
Cycle-SDE), or nothing (eta = 0, the ODE).

The clean latent lives at the *last grid level*, which must keep sigma > 0 (alpha_bar < 1):
the final step's residual is only encodable if that step still adds noise (spec csd §2.2 "Rule").
``clean_end_grid`` moves a ComfyUI grid's final 0 to the model's smallest sigma.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from .denoiser import Denoiser, randn_like
from .masks import as_mask4d, frames_to_latent
from .sampler import NoiseFn, ddim_fraction, dream_sample, renoise_direction
from .schedule import Parameterization

COUPLINGS = ("posterior", "markov")


# ----------------------------------------------------------------------------- grid
def end_level_error(sigmas: Tensor) -> str | None:
    """Why ``sigmas`` cannot carry an exactly encodable trajectory, or None."""
    if sigmas.ndim != 1 or len(sigmas) < 2:
        return "the noise grid needs at least one step (two levels)"
    if not bool(torch.all(sigmas[:-1] > sigmas[1:])):
        return "the noise grid must be strictly descending"
    if float(sigmas[-1]) <= 0.0:
        return ("the last noise level must keep sigma > 0 (alpha_bar < 1): a final step to sigma = 0 adds "
                "no noise, so its residual cannot be encoded and reconstruction would be inexact; "
                "end the grid at the model's smallest sigma (clean_end_grid)")
    return None


def check_end_level(sigmas: Tensor) -> None:
    err = end_level_error(sigmas)
    if err:
        raise ValueError(err)


def clean_end_grid(sigmas: Tensor, sigma_floor: float) -> Tensor:
    """A descending grid ending at 0 -> the same grid ending at ``sigma_floor`` > 0.

    The clean latent is then treated as living at the smallest level, as the official codes do
    (SD: t = 0, alpha_bar = 0.99915).  If the level before the 0 is already at the floor the 0 is
    dropped instead (no zero-length step).
    """
    if sigma_floor <= 0.0:
        raise ValueError("sigma_floor must be > 0")
    if len(sigmas) == 0 or float(sigmas[-1]) > 0.0:
        return sigmas
    head = sigmas[:-1]
    if len(head) and float(head[-1]) <= sigma_floor * (1.0 + 1e-4):
        return head.clone()
    return torch.cat([head, head.new_tensor([sigma_floor])])


# ----------------------------------------------------------------------------- single steps
def _alpha_bar(param: Parameterization, sigma) -> float:
    return float(param.alpha_bar(sigma))


def ddim_eta_step(x: Tensor, x0: Tensor, sigma, sigma_next, param: Parameterization, eta: float,
                  noise: Tensor | None) -> Tensor:
    """Eq. 6 (generalized DDIM step, sigma -> sigma_next) given the Tweedie ``x0`` at ``x``.

    eta = 0: DDIM (the probability-flow ODE); eta = 1: ancestral DDPM.  ``noise`` ~ N(0, I).
    """
    eps = param.eps(x, x0, sigma)
    return param.compose(x0, renoise_direction(eps, ddim_fraction(param, sigma, sigma_next, eta), noise),
                         sigma_next)


def posterior_sample(x_t: Tensor, x0: Tensor, sigma, sigma_next, param: Parameterization, eta: float,
                     noise: Tensor) -> Tensor:
    """Draw x_s ~ q_sig(x_s | x_t, x0), the DDIM-eta posterior (spec csd §0, §2.2).

    Mean sqrt(abar_s) x0 + sqrt(1 - abar_s - sig^2) (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t),
    variance sig^2 (VP units): Eq. 6 with the true x0 in place of the Tweedie estimate.
    """
    return ddim_eta_step(x_t, x0, sigma, sigma_next, param, eta, noise)


def markov_forward(x_s: Tensor, sigma_s, sigma_t, param: Parameterization, noise: Tensor) -> Tensor:
    """Eq. 7: x_t ~ q(x_t | x_s), sigma_t > sigma_s (VP: z_t = sqrt(r) z_s + sqrt(1 - r) n, r = abar_t/abar_s)."""
    r = _alpha_bar(param, sigma_t) / _alpha_bar(param, sigma_s)
    z_s = x_s / param.vp_scale(sigma_s)
    return (r ** 0.5 * z_s + (1.0 - r) ** 0.5 * noise) * param.vp_scale(sigma_t)


def recover_noise(x_s: Tensor, x_t: Tensor, x0_hat: Tensor, sigma, sigma_next, param: Parameterization,
                  eta: float) -> Tensor:
    """Eq. 8 / DPM-Encoder: the w for which Eq. 6 from ``x_t`` (Tweedie ``x0_hat``) lands on ``x_s``.

    w = [z_s - sqrt(abar_s) x0_hat - sqrt(1 - abar_s - sig^2) eps_hat] / sig.  Refuses sig = 0:
    eta = 0, or a step ending at sigma = 0 (the end-level guard).
    """
    if float(param.noise(sigma_next)) <= 0.0:
        raise ValueError("cannot recover the noise of a step ending at sigma = 0; the last level must keep "
                         "sigma > 0 (see clean_end_grid)")
    f = ddim_fraction(param, sigma, sigma_next, eta)
    if f <= 0.0:
        raise ValueError("eta = 0 adds no noise, so there is none to recover (use DDIM inversion instead)")
    eps_hat = param.eps(x_t, x0_hat, sigma)
    direction = param.eps(x_s, x0_hat, sigma_next)      # (x_s - a_s x0_hat) / s_s
    return (direction - (1.0 - f) ** 0.5 * eps_hat) / f ** 0.5


# ----------------------------------------------------------------------------- encoder
@dataclass
class CycleCode:
    """A stochastic latent: the start latent and the per-step noises that decode to a given x0.

    ``sigmas``: [K+1] descending, last > 0 (the clean latent's level).  ``noises[k]``: the noise of
    step sigmas[k] -> sigmas[k+1].  ``trajectory[k]``: the source latent at sigmas[k]
    (trajectory[0] = start, trajectory[K] = x0); used to reset unedited regions.
    All latents [B, C, H, W] in model space.
    """

    sigmas: Tensor
    noises: list
    trajectory: list
    eta: float = 1.0
    coupling: str = "posterior"
    meta: dict = field(default_factory=dict)

    @property
    def x_start(self) -> Tensor:
        return self.trajectory[0]

    @property
    def steps(self) -> int:
        return len(self.noises)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.noises, *self.trajectory))


def forward_trajectory(x0: Tensor, sigmas: Tensor, param: Parameterization, *, eta: float = 1.0,
                       coupling: str = "posterior", generator: torch.Generator | None = None) -> list:
    """Latents at every grid level whose last one is ``x0``.

    ``posterior`` (CycleDiffusion): x_start ~ q(x_t0 | x0), then backward draws from the DDIM-eta
    posterior with the decoder's eta, the last level pinned to x0.  ``markov`` (SDE-Drag, Eq. 7):
    forward noising from x0 at the last level; matches the sampler's joint law only at eta = 1.
    """
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    K = len(sigmas) - 1
    if coupling == "markov":
        if abs(float(eta) - 1.0) > 1e-12:
            raise ValueError("the Markov coupling matches the sampler only at eta = 1; use coupling='posterior'")
        traj = [x0]
        for k in range(K - 1, -1, -1):
            traj.append(markov_forward(traj[-1], sigmas[k + 1], sigmas[k], param, randn_like(x0, generator)))
        return traj[::-1]
    # the start level treats x0 as clean data (x_start = a x0 + s n), as diffusers' add_noise
    traj = [param.compose(x0, randn_like(x0, generator), sigmas[0])]
    for k in range(K):
        if k == K - 1:
            traj.append(x0)                                  # endpoint pinned to the data
        else:
            traj.append(posterior_sample(traj[-1], x0, sigmas[k], sigmas[k + 1], param, eta,
                                         randn_like(x0, generator)))
    return traj


@torch.no_grad()
def dpm_encode(denoise: Denoiser, x0: Tensor, sigmas: Tensor, param: Parameterization, *, eta: float = 1.0,
               coupling: str = "posterior", generator: torch.Generator | None = None,
               trajectory: Sequence[Tensor] | None = None, store: Callable[[Tensor], Tensor] = lambda t: t,
               callback=None) -> CycleCode:
    """DPM-Encoder (spec csd §2.2) / SDE-Drag's noise recovery (Eqs. 7-8).

    denoise(x, sigma) -> x0 with the SOURCE condition (and source guidance).
    x0: [B, C, H, W] clean latent (model space), placed at ``sigmas[-1]`` (> 0).
    ``trajectory``: a given source path (else ``forward_trajectory``).  ``store`` moves each kept
    tensor (e.g. to the CPU).  ``callback(k, x0_hat, x_t)`` after each model call.
    Decoding the code with the same model and condition reproduces x0 up to float rounding.
    """
    check_end_level(sigmas)
    if float(eta) <= 0.0:
        raise ValueError("eta must be > 0: a deterministic sampler has no noise to encode (use DDIM inversion)")
    traj = list(trajectory) if trajectory is not None else forward_trajectory(
        x0, sigmas, param, eta=eta, coupling=coupling, generator=generator)
    if len(traj) != len(sigmas):
        raise ValueError(f"trajectory has {len(traj)} latents for {len(sigmas)} levels")
    noises = []
    for k in range(len(sigmas) - 1):
        x_t = traj[k].to(x0)
        x0_hat = denoise(x_t, sigmas[k])
        noises.append(store(recover_noise(traj[k + 1].to(x0), x_t, x0_hat, sigmas[k], sigmas[k + 1], param, eta)))
        if callback is not None:
            callback(k, x0_hat, x_t)
    return CycleCode(sigmas=sigmas.detach().clone(), noises=noises, trajectory=[store(t) for t in traj],
                     eta=float(eta), coupling=coupling)


# ----------------------------------------------------------------------------- noise providers
def recorded_noise(noises: Sequence[Tensor]) -> NoiseFn:
    """Noise provider returning recorded noises (CycleDiffusion decoding, Cycle-SDE)."""

    def noise(i: int, ctx) -> Tensor:
        return noises[i].to(device=ctx.x.device, dtype=ctx.x.dtype)

    return noise


def lockstep_source(source_denoise: Denoiser, x0: Tensor, sigmas: Tensor, param: Parameterization,
                    x_start: Tensor, *, eta: float, generator: torch.Generator | None = None) -> NoiseFn:
    """Noise provider running the source trajectory in lock-step (diffusers' CycleDiffusion, §2.3).

    At step i it draws the source's next latent from the DDIM-eta posterior given ``x0`` (pinned
    to x0 at the last level), recovers the noise against ``source_denoise`` and returns it.  Costs
    one source model call per step but stores nothing.  Steps must be requested in order.
    """
    check_end_level(sigmas)
    state = {"i": 0, "x": x_start}

    def noise(i: int, ctx) -> Tensor:
        if i != state["i"]:
            raise RuntimeError(f"lock-step source expected step {state['i']}, got {i}")
        x_t = state["x"]
        last = i == len(sigmas) - 2
        x_s = x0 if last else posterior_sample(x_t, x0, sigmas[i], sigmas[i + 1], param, eta, randn_like(x0, generator))
        w = recover_noise(x_s, x_t, source_denoise(x_t, sigmas[i]), sigmas[i], sigmas[i + 1], param, eta)
        state.update(i=i + 1, x=x_s)
        return w.to(device=ctx.x.device, dtype=ctx.x.dtype)

    return noise


def reset_outside(mask: Tensor, trajectory: Sequence[Tensor]):
    """post_step for ``dream_sample``: outside ``mask`` (1 = editable) follow the reference path.

    After step i the latent is at level i+1: x <- m x + (1 - m) trajectory[i+1] (spec csd §3.3).
    """

    def post_step(i: int, x: Tensor) -> Tensor:
        m = mask.to(device=x.device, dtype=x.dtype)
        return m * x + (1.0 - m) * trajectory[i + 1].to(device=x.device, dtype=x.dtype)

    return post_step


def mask_to_latent(mask: Tensor, grid, threshold: float = 0.5) -> Tensor:
    """A pixel mask [H, W] / [B, H, W] / [B, 1, H, W] (1 = editable) -> binary [B, 1, h, w] on the
    latent grid (h, w): bicubic resize, then > threshold (the official code: PIL bicubic, > 128).
    On a video latent's grid (T, h, w) the mask batch is the frames: [1, 1, T or 1, h, w]
    (``masks.frames_to_latent``, before the threshold)."""
    grid = tuple(grid)
    m = torch.nn.functional.interpolate(as_mask4d(mask), size=grid[-2:], mode="bicubic", align_corners=False)
    if len(grid) == 3:
        m = frames_to_latent(m, grid[0])
    return (m > threshold).float()


# ----------------------------------------------------------------------------- decoder
STAGE2 = ("cycle_sde", "sde", "ode")


@torch.no_grad()
def cycle_sample(denoise: Denoiser, x: Tensor, sigmas: Tensor, param: Parameterization, *, eta: float,
                 noise_fn: NoiseFn | None = None, mask: Tensor | None = None,
                 reference: Sequence[Tensor] | None = None, generator: torch.Generator | None = None,
                 callback=None) -> Tensor:
    """Eq. 6 from ``x`` at sigmas[0] down the grid with DDIM's eta, through the DreamSampler loop.

    denoise(x, sigma) -> x0 (TARGET condition).  ``noise_fn``: where w comes from (default:
    fresh noise from ``generator``).  ``mask`` [B|1, 1|C, H, W] (1 = editable) with
    ``reference`` (a level-aligned trajectory) resets the rest after every step.
    """
    post = None
    if mask is not None:
        if reference is None or len(reference) != len(sigmas):
            raise ValueError("a mask needs a reference trajectory with one latent per grid level")
        post = reset_outside(mask, reference)
    return dream_sample(denoise, x, sigmas, param, eta=eta, eta_schedule="ddim",
                        noise_fn=noise_fn, generator=generator, callback=callback, post_step=post)


def cycle_decode(denoise: Denoiser, code: CycleCode, param: Parameterization, *, x_start: Tensor | None = None,
                 mask: Tensor | None = None, callback=None) -> Tensor:
    """Decode a CycleCode (CycleDiffusion with the target condition; Cycle-SDE from an edited start).

    With the encoder's model and condition and ``x_start=None`` this reproduces the encoded x0.
    """
    x = code.x_start if x_start is None else x_start
    return cycle_sample(denoise, x.clone(), code.sigmas, param, eta=code.eta, noise_fn=recorded_noise(code.noises),
                        mask=mask, reference=code.trajectory if mask is not None else None, callback=callback)


# ----------------------------------------------------------------------------- pipelines
def cycle_sde_edit(source: Denoiser, target: Denoiser, x0: Tensor, sigmas: Tensor, param: Parameterization, *,
                   stage2: str = "cycle_sde", seed: int = 0, mask: Tensor | None = None,
                   store: Callable[[Tensor], Tensor] = lambda t: t, callback=None) -> Tensor:
    """SDEdit with a choice of stage 2 (SDE-Drag paper §3, "SDE beats ODE"): x0 (model space, at
    sigmas[-1] > 0) is noised to sigmas[0] by forward Markov noising (Eq. 7), then sampled down with
    the ``target`` prompt by

    * ``"cycle_sde"``: DDPM (Eq. 6, eta = 1) reusing the noises recovered (Eq. 8) from the forward
      path with the ``source`` prompt (``dpm_encode``, Markov coupling): keeps more of the image;
    * ``"sde"``: DDPM with fresh noise;  ``"ode"``: DDIM (eta = 0).

    The same seed gives all three the same start (the forward path from ``seed``; the SDE's fresh
    noise from seed + 1).  ``mask`` [B|1, 1, H, W] (1 = editable) resets the rest to the forward
    path after every step.  ``callback(k, x0_hat, x)`` after every model call (2K for cycle_sde,
    K otherwise, K = len(sigmas) - 1).
    """
    if stage2 not in STAGE2:
        raise ValueError(f"stage2 must be one of {STAGE2}, got {stage2!r}")
    if stage2 == "cycle_sde":
        code = dpm_encode(source, x0, sigmas, param, eta=1.0, coupling="markov",
                          generator=torch.Generator().manual_seed(int(seed)), store=store, callback=callback)
        return cycle_decode(target, code, param, x_start=code.x_start.to(x0), mask=mask, callback=callback)
    traj = forward_trajectory(x0, sigmas, param, eta=1.0, coupling="markov",
                              generator=torch.Generator().manual_seed(int(seed)))
    return cycle_sample(target, traj[0], sigmas, param, eta=1.0 if stage2 == "sde" else 0.0,
                        generator=torch.Generator().manual_seed(int(seed) + 1), mask=mask,
                        reference=traj if mask is not None else None, callback=callback)
