"""The host's model facts: latent convention, noise grids, LATENT dicts, progress and interruption.

ComfyUI's ``comfy.*`` modules are not a versioned API; everything the pack reads from them lives in
``nodes/host/`` (this module: the MODEL and its sampling; ``sampling``: the guider and the sampler
adapter; ``vae``: VAE access and gradient copies; ``files``: the input folder and core SVG objects),
so a ComfyUI update breaks, and gets fixed, there.  Tested against the pinned host (README).
"""
from __future__ import annotations

import inspect

import torch

import comfy.model_base
import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ...dreamsampler_core.schedule import Parameterization, time_grid as core_time_grid

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


def parameterization(model) -> Parameterization:
    """Latent convention of a MODEL (a ModelPatcher), or a clear refusal."""
    ms = model_sampling(model)
    ms_mod = comfy.model_sampling
    refused = tuple(getattr(ms_mod, n) for n in ("IMG_TO_IMG", "COSMOS_RFLOW") if hasattr(ms_mod, n))
    if isinstance(ms, refused):
        raise UnsupportedModelError(
            f"DreamSampler does not support this model's prediction type ({type(ms).__name__}): "
            "its latent is not of the form x0 + sigma*eps or (1-sigma)*x0 + sigma*eps. "
            "Supported: eps, v-prediction and flow models (SD1.5, SD2.x, SDXL, SD3, Flux).")
    if isinstance(ms, ms_mod.CONST):
        return Parameterization("flow")
    if isinstance(ms, ms_mod.EPS):        # EPS, V_PREDICTION, EDM, X0 share the VE latent
        return Parameterization("ve")
    raise UnsupportedModelError(
        f"DreamSampler does not know this model's prediction type ({type(ms).__name__}). "
        "Supported: eps, v-prediction and flow models (SD1.5, SD2.x, SDXL, SD3, Flux).")


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
    """The output LATENT: the input's entries (batch_index, ...) with new samples, less ``drop`` and
    the size keys (they describe the empty input, as core SamplerCustomAdvanced does)."""
    out = {k: v for k, v in (latent or {}).items() if k not in LATENT_SIZE_KEYS and k not in drop}
    out["samples"] = samples
    return out


def latent_spec(model) -> tuple[int, int, str]:
    """(latent channels, spatial dimensions, model name) of a MODEL's latent format."""
    fmt = model.get_model_object("latent_format")
    config = getattr(model.model, "model_config", None)
    name = type(config).__name__ if config is not None else type(model.model).__name__
    return int(fmt.latent_channels), int(getattr(fmt, "latent_dimensions", 2)), name


def process_latent_out(model, samples):
    return model.model.process_latent_out(samples)


def intermediate_device():
    return comfy.model_management.intermediate_device()


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
