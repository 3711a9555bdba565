"""The host's model facts: latent convention, noise grids, LATENT dicts, progress and interruption.

ComfyUI's ``comfy.*`` modules are not a versioned API; everything the pack reads from them lives in
``nodes/host/`` (this module: the MODEL and its sampling; ``sampling``: the guider and the sampler
adapter; ``vae``: VAE access and gradient copies; ``files``: the input folder and core SVG objects),
so a ComfyUI update breaks, and gets fixed, there.  Tested against the pinned host (README).
"""
from __future__ import annotations

import copy as _copy
import inspect
import logging
import weakref

import torch

import comfy.model_base
import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ...dreamsampler_core.schedule import Parameterization, time_grid as core_time_grid

log = logging.getLogger("DreamSampler")

SCHEDULER_NAMES = list(comfy.samplers.SCHEDULER_NAMES)
DEFAULT_SCHEDULER = "ddim_uniform" if "ddim_uniform" in SCHEDULER_NAMES else SCHEDULER_NAMES[0]

#: key under which the inversion node records what the sampler needs to continue exactly
INVERSION_KEY = "dream_inversion"

#: longest full schedule (steps / denoise levels) the pack asks ComfyUI to build; core schedulers
#: build it in full (some level by level in Python) before the tail is kept
MAX_SCHEDULE = 10000

#: keys newer ComfyUI (0.38) puts on a LATENT for an empty latent's size: SamplerCustomAdvanced
#: passes them to fix_empty_latent_channels and removes them from its output
LATENT_SIZE_KEYS = ("downscale_ratio_spacial", "downscale_ratio_temporal")


class UnsupportedModelError(ValueError):
    pass


def model_sampling(model):
    return model.get_model_object("model_sampling")


SUPPORTED = "Supported: denoisers whose latent is x0 + sigma*eps (eps, v, EDM, x0 models: SD1.5, SD2.x, SDXL) " \
            "or (1-sigma)*x0 + sigma*eps (flow models: SD3, Flux, Qwen-Image, Wan)."


def _probe_levels(ms) -> list[float]:
    """Noise levels spread over the model's range (its smallest, middle and largest sigma)."""
    lo, hi = float(ms.sigma_min), float(ms.sigma_max)
    mid = float(ms.percent_to_sigma(0.5))
    return sorted({lo, mid, hi} - {0.0})


def probe_convention(ms) -> Parameterization:
    """The latent convention of a model_sampling object, from what it does (not its class name).

    ``noise_scaling(sigma, noise, x0)`` gives a(sigma) and s(sigma) of x = a x0 + s eps at levels
    across the model's range (and is checked to be that linear map); the pack's math needs a = 1,
    s = sigma (``ve``) or a = 1 - sigma, s = k sigma (``flow``, k the noise scale), the output at
    sigma = 0 returned as is (``inverse_noise_scaling``), and a denoiser: a model whose x0 ignores
    its noisy input while that input is not normalized for the noise level is an image-to-image
    predictor.  Anything else is refused with UnsupportedModelError naming the model type."""
    name = type(ms).__name__
    bases = [c.__name__ for c in type(ms).__mro__[1:] if c.__name__ not in ("object", "Module")]
    kind_name = f"{name} ({', '.join(bases[:3])})" if name == "ModelSampling" and bases else name

    def refuse(why):
        return UnsupportedModelError(f"DreamSampler cannot sample this model (prediction type {kind_name}): {why}. "
                                     + SUPPORTED)

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 4, 2, 2, generator=g)
    eps = torch.randn(1, 4, 2, 2, generator=g)
    zeros, ones = torch.zeros_like(x0), torch.ones_like(x0)
    kinds, scales = set(), []
    try:
        levels = _probe_levels(ms)
        for sigma in levels:
            t = torch.tensor([sigma], dtype=torch.float32)
            a = float(ms.noise_scaling(t, zeros.clone(), ones.clone(), max_denoise=False).mean())
            s = float(ms.noise_scaling(t, ones.clone(), zeros.clone(), max_denoise=False).mean())
            x = ms.noise_scaling(t, eps.clone(), x0.clone(), max_denoise=False)
            if not torch.allclose(x, a * x0 + s * eps, rtol=1e-4, atol=1e-5):
                raise refuse(f"its noise scaling at sigma={sigma:.4g} is not a x0 + s eps")
            if s <= 1e-6 * max(sigma, 1e-6):
                raise refuse(f"its noise scaling adds no noise (at sigma={sigma:.4g} it returns the input latent): "
                             "an image-to-image model, not a denoiser of noisy latents")
            tol = 1e-4 * max(1.0, sigma)
            if abs(a - 1.0) <= tol and abs(s - sigma) <= tol:
                kinds.add("ve")
            elif abs(a - (1.0 - sigma)) <= tol and sigma > 0:
                kinds.add("flow")
                scales.append(s / sigma)
            else:
                raise refuse(f"at sigma={sigma:.4g} its latent is {a:.4g} x0 + {s:.4g} eps")
        final = ms.inverse_noise_scaling(torch.tensor([0.0]), x0.clone())
        if not torch.allclose(final, x0, rtol=1e-5, atol=1e-6):
            raise refuse("it transforms the finished latent (inverse_noise_scaling at sigma 0 is not the identity)")
        hi = torch.tensor([levels[-1]], dtype=torch.float32)
        ignores_input = torch.allclose(ms.calculate_denoised(hi, zeros.clone(), x0.clone()), zeros, atol=1e-6)
        raw_input = torch.allclose(ms.calculate_input(hi, x0.clone()), x0, rtol=1e-5, atol=1e-6)
        if kinds == {"ve"} and ignores_input and raw_input and levels[-1] > 1.5:
            raise refuse("its x0 prediction ignores the noisy input, which it receives unnormalized at every noise "
                         "level: an image-to-image predictor, not a denoiser")
    except UnsupportedModelError:
        raise
    except Exception as e:       # noqa: BLE001 - a sampling object that cannot even be probed
        raise refuse(f"probing its noise scaling failed ({type(e).__name__}: {e})") from None
    if len(kinds) != 1:
        raise refuse("its latent changes form across noise levels")
    if kinds == {"flow"}:
        k = sum(scales) / len(scales)
        if max(abs(v - k) for v in scales) > 1e-4 * k:
            raise refuse("its noise scale changes across noise levels")
        return Parameterization("flow", noise_scale=1.0 if abs(k - 1.0) < 1e-6 else round(k, 6))
    return Parameterization("ve")


#: per loaded network (BaseModel): what the last run's model_sampling was, to log a change
_LAST_RUN_SAMPLING = weakref.WeakKeyDictionary()


def _sampling_signature(ms) -> str:
    """A model_sampling object as a log names it: its type and noise range."""
    bases = [c.__name__ for c in type(ms).__mro__[1:] if c.__name__ not in ("object", "Module")][:2]
    name = type(ms).__name__ + (f" ({', '.join(bases)})" if bases else "")
    try:
        return f"{name}, sigma {float(ms.sigma_min):.4g}..{float(ms.sigma_max):.4g}"
    except Exception:          # noqa: BLE001 - a sampling object without a range: the type is enough
        return name


def run_parameterization(base_model) -> Parameterization:
    """The latent convention of this run, probed on the ``model_sampling`` object the loaded network
    uses in this run (``base_model.model_sampling``, with the run's object patches), never one
    remembered from an earlier run.  When it differs from the previous run on the same network the
    log says so: expected after adding or removing a ModelSampling node, otherwise a schedule left
    behind by an earlier run (ComfyUI issue #16490) that the model now really samples with."""
    ms = base_model.model_sampling
    param = probe_convention(ms)
    seen = (_sampling_signature(ms), param)
    last = _LAST_RUN_SAMPLING.get(base_model)
    if last is not None and last != seen:
        log.warning("DreamSampler: this model's sampling changed since its previous run (%s, %s -> %s, %s). "
                    "Expected if a ModelSampling node was added or removed; otherwise an earlier run's schedule "
                    "is still attached to the model (ComfyUI issue #16490): reload the model to reset it.",
                    last[0], last[1].kind, seen[0], seen[1].kind)
    _LAST_RUN_SAMPLING[base_model] = seen
    return param


def parameterization(model) -> Parameterization:
    """Latent convention of a MODEL (a ModelPatcher), or a clear refusal (``probe_convention``)."""
    return probe_convention(model_sampling(model))


def csd_model_kind(model) -> str:
    """'ip2p' (InstructPix2Pix: 8-channel UNet with the image latent concatenated), 'plain'
    (text-to-image), or 'concat' (another channel-concat model, e.g. inpainting: unsupported)."""
    base = model.model
    if isinstance(base, comfy.model_base.IP2P):
        return "ip2p"
    return "concat" if tuple(getattr(base, "concat_keys", ()) or ()) else "plain"


def timestep_fn(model_sampling_obj):
    return lambda sigma: model_sampling_obj.timestep(torch.as_tensor(sigma, dtype=torch.float32).reshape(1)).double()


def time_grid(model_sampling_obj, sigmas: torch.Tensor):
    """(spans, times) of a descending sigma grid in normalized time (1 = sigma_max)."""
    ms = model_sampling_obj
    t_max = float(ms.timestep(torch.as_tensor(ms.sigma_max, dtype=torch.float32).reshape(1)))
    return core_time_grid(sigmas, timestep_fn(ms), t_max)


def sigma_at(model_sampling_obj):
    """u in [0, 1] (1 = pure noise) -> sigma, through the model's own percent_to_sigma."""
    return lambda u: float(model_sampling_obj.percent_to_sigma(1.0 - float(u)))


def sigma_floor(model) -> float:
    """The model's smallest positive sigma: where CycleDiffusion / SDE-Drag put the clean latent."""
    return float(model_sampling(model).sigma_min)


def schedule_length(steps: int, denoise: float) -> int:
    """Levels ComfyUI's calculate_sigmas builds for ``steps`` at ``denoise`` (as BasicScheduler)."""
    return int(steps / denoise) if 0.0 < denoise < 1.0 else int(steps)


def calculate_sigmas(model, scheduler: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """Descending sigma grid exactly as core BasicScheduler builds it (denoise keeps the tail).
    ValueError when the full schedule would exceed MAX_SCHEDULE levels (nodes check first and
    name their inputs); interruptible before and after the build."""
    if denoise <= 0.0:
        return torch.FloatTensor([])
    total = schedule_length(steps, denoise)
    if total > MAX_SCHEDULE:
        raise ValueError(f"steps / denoise = {steps} / {denoise:g} would build a {total}-level schedule, over "
                         f"the limit of {MAX_SCHEDULE}")
    throw_if_interrupted()
    sigmas = comfy.samplers.calculate_sigmas(model_sampling(model), scheduler, total).cpu()
    throw_if_interrupted()
    return sigmas[-(steps + 1):]


def prepare_noise(latent: dict, seed: int) -> torch.Tensor:
    return comfy.sample.prepare_noise(latent["samples"], seed, latent.get("batch_index"))


def fix_empty_latent_channels(model, samples, latent: dict | None = None):
    """Core's resize of an empty latent to the model's latent format, given the LATENT's size keys
    where this ComfyUI's function takes them (0.3.75's takes none)."""
    fn = comfy.sample.fix_empty_latent_channels
    params = inspect.signature(fn).parameters
    extra = {k: latent[k] for k in LATENT_SIZE_KEYS if latent and latent.get(k) is not None and k in params}
    return fn(model, samples, **extra)


def latent_output(latent: dict | None, samples, drop=()) -> dict:
    """The output LATENT: the input's entries (batch_index, ...) with new samples (on the intermediate
    device, ``to_intermediate``), less ``drop`` and the size keys (they describe the empty input, as
    core SamplerCustomAdvanced does)."""
    out = {k: v for k, v in (latent or {}).items() if k not in LATENT_SIZE_KEYS and k not in drop}
    out["samples"] = to_intermediate(samples)
    return out


def latent_spec(model) -> tuple[int, int, str]:
    """(latent channels, spatial dimensions, model name) of a MODEL's latent format."""
    fmt = model.get_model_object("latent_format")
    config = getattr(model.model, "model_config", None)
    name = type(config).__name__ if config is not None else type(model.model).__name__
    return int(fmt.latent_channels), int(getattr(fmt, "latent_dimensions", 2)), name


def process_latent_out(model, samples):
    return model.model.process_latent_out(samples)


def latent_maps(base_model):
    """(latent_in, latent_out) of a loaded BaseModel (its process_latent_in / out) that autograd can
    pass through: a latent format's own tensors (Wan's, Qwen-Image's, HunyuanVideo's per-channel
    mean / std) are made when the model loads, under ComfyUI's inference mode, and autograd cannot
    save them (the DPS step differentiates the decoder input); on a differentiable input the maps
    run on a copy of the format with those tensors cloned.  The model's own format is not modified."""
    safe = {}

    def grad_safe_format():
        fmt = base_model.latent_format
        if safe.get("of") is not fmt:
            copy = _copy.copy(fmt)
            for k, v in vars(fmt).items():
                if torch.is_tensor(v) and v.is_inference():
                    setattr(copy, k, v.clone())
            safe.update({"of": fmt, "copy": copy})
        return safe["copy"]

    def latent_in(z):
        if z.requires_grad and torch.is_grad_enabled():
            return grad_safe_format().process_in(z)
        return base_model.process_latent_in(z)

    def latent_out(z):
        if z.requires_grad and torch.is_grad_enabled():
            return grad_safe_format().process_out(z)
        return base_model.process_latent_out(z)

    return latent_in, latent_out


def intermediate_device():
    return comfy.model_management.intermediate_device()


def to_intermediate(samples: torch.Tensor) -> torch.Tensor:
    """A latent a node returns, where core's samplers leave theirs: ``intermediate_device()`` (the
    CPU unless --gpu-only), in ``intermediate_dtype()`` where this ComfyUI has one (the newest; its
    --fp16-intermediates), else in the latent's own dtype."""
    mm = comfy.model_management
    dtype = mm.intermediate_dtype() if hasattr(mm, "intermediate_dtype") else None
    return samples.to(device=mm.intermediate_device(), dtype=dtype or samples.dtype)


def progress_callback(model, steps: int, x0_output: dict | None = None):
    """ComfyUI's progress bar + latent previews; its hook also raises on /interrupt."""
    return latent_preview.prepare_callback(model, steps, x0_output)


def progress_bar(total: int):
    """ComfyUI's progress bar (its server hook also raises on /interrupt); ``update_absolute(value,
    total, ("JPEG", PIL image, max size))`` shows a preview."""
    return comfy.utils.ProgressBar(int(total))


def progress_bar_enabled() -> bool:
    return bool(comfy.utils.PROGRESS_BAR_ENABLED)


def throw_if_interrupted():
    """Raise on /interrupt.  Called before every model evaluation of the pack's loops: the progress
    hook (throttled in newer ComfyUI) and ComfyUI's per-layer check (only in its own ops, skipped
    inside torch.compile) are not enough for "stops within one step"."""
    comfy.model_management.throw_exception_if_processing_interrupted()


def free_ram_bytes() -> int:
    """RAM the OS can still give this process (ComfyUI's own estimate)."""
    return int(comfy.model_management.get_free_memory(torch.device("cpu")))
