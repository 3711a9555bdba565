"""Every touch point between the pack and ComfyUI's internals lives here.

ComfyUI's ``comfy.*`` modules are not a versioned API; keeping them behind this one module
means a ComfyUI update breaks (and gets fixed in) one file.  Tested against the pinned host
(ComfyUI 0.3.75, see README "Host environment").
"""
from __future__ import annotations

import copy as _copy
import inspect
import io as _io
import logging
import math
import os as _os

import torch

import comfy.conds
import comfy.model_base
import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..dreamsampler_core.inversion import RefineStats, ddim_invert
from ..dreamsampler_core.regularizers import required_predictions
from ..dreamsampler_core.sampler import dream_sample
from ..dreamsampler_core.schedule import Parameterization

log = logging.getLogger("DreamSampler")

SCHEDULER_NAMES = list(comfy.samplers.SCHEDULER_NAMES)
DEFAULT_SCHEDULER = "ddim_uniform" if "ddim_uniform" in SCHEDULER_NAMES else SCHEDULER_NAMES[0]

#: key under which the inversion node records what the sampler needs to continue exactly
INVERSION_KEY = "dream_inversion"


class UnsupportedModelError(ValueError):
    pass


# ----------------------------------------------------------------------------- model facts
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


def timestep_fn(model):
    ms = model_sampling(model)
    return lambda sigma: ms.timestep(torch.as_tensor(sigma, dtype=torch.float32).reshape(1)).double()


def time_grid(model, sigmas: torch.Tensor):
    """(spans, times) of a descending sigma grid in normalized time (1 = sigma_max)."""
    from ..dreamsampler_core.schedule import normalized_times
    ms = model_sampling(model)
    t_max = float(ms.timestep(torch.as_tensor(ms.sigma_max, dtype=torch.float32).reshape(1)))
    t = normalized_times(sigmas.detach().cpu().double(), timestep_fn(model)) / t_max
    return (t[:-1] - t[1:]).clamp_min(0.0), t[:-1]


#: longest full schedule (steps / denoise levels) the pack asks ComfyUI to build; core schedulers
#: build it in full (some level by level in Python) before the tail is kept
MAX_SCHEDULE = 10000


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


#: keys newer ComfyUI (0.38) puts on a LATENT for an empty latent's size: SamplerCustomAdvanced
#: passes them to fix_empty_latent_channels and removes them from its output
LATENT_SIZE_KEYS = ("downscale_ratio_spacial", "downscale_ratio_temporal")


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


def progress_callback(model, steps: int, x0_output: dict | None = None):
    """ComfyUI's progress bar + latent previews; its hook also raises on /interrupt."""
    return latent_preview.prepare_callback(model, steps, x0_output)


def progress_bar_enabled() -> bool:
    return bool(comfy.utils.PROGRESS_BAR_ENABLED)


def throw_if_interrupted():
    """Raise on /interrupt.  Called before every model evaluation of the pack's loops: the progress
    hook (throttled in newer ComfyUI) and ComfyUI's per-layer check (only in its own ops, skipped
    inside torch.compile) are not enough for "stops within one step"."""
    comfy.model_management.throw_exception_if_processing_interrupted()


# ----------------------------------------------------------------------------- guider
class DreamGuider(comfy.samplers.CFGGuider):
    """CFG guider that also evaluates the regularizers' extra conditionings in the same batch.

    After each call ``self.dream_preds`` holds the named x0 predictions (e.g. an edit target)
    and ``self.dream_positive`` the raw positive prediction.  The base (returned) prediction is
    ordinary CFG, with the model's pre/post-CFG hooks applied as core guiders do.
    """

    def __init__(self, model_patcher):
        super().__init__(model_patcher)
        self.dream_regularizers = ()
        self.dream_extra = ()
        self.dream_preds = {}
        self.dream_active = False     # set by DreamRawSampler while it drives this guider

    def set_regularizers(self, specs):
        """specs: sequence of RegularizerSpec; binds names and registers their conds."""
        bound, conds = [], {}
        for k, spec in enumerate(specs or ()):
            prefix = f"dream{k}:"
            bound.append(spec.core.bind(prefix))
            for name, cond in spec.conds.items():
                conds[prefix + name] = cond
        self.dream_regularizers = tuple(bound)
        self.dream_extra = tuple(conds)
        if conds:
            self.inner_set_conds(conds)

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        if self.dream_regularizers and not self.dream_active:
            raise RuntimeError(
                "This Dream guider carries regularizers, which only the Dream sampler applies. "
                "Connect a 'Dream Sampler (SAMPLER)' node as the sampler, or remove the regularizers.")
        positive = self.conds.get("positive")
        negative = self.conds.get("negative")
        if math.isclose(self.cfg, 1.0) and not model_options.get("disable_cfg1_optimization", False):
            negative = None
        extra = [self.conds.get(n) for n in self.dream_extra]
        out = comfy.samplers.calc_cond_batch(self.inner_model, [positive, negative] + extra, x, timestep, model_options)
        pair = out[:2]
        for fn in model_options.get("sampler_pre_cfg_function", []):
            args = {"conds": [positive, negative], "conds_out": pair, "cond_scale": self.cfg, "timestep": timestep,
                    "input": x, "sigma": timestep, "model": self.inner_model, "model_options": model_options}
            pair = fn(args)
        if negative is None:
            pair = [pair[0], pair[0]]     # cfg == 1: the base is the positive prediction
        self.dream_positive = pair[0]
        self.dream_preds = dict(zip(self.dream_extra, out[2:]))
        return comfy.samplers.cfg_function(self.inner_model, pair[0], pair[1], self.cfg, x, timestep,
                                           model_options=model_options, cond=positive, uncond=negative)


# ----------------------------------------------------------------------------- sampler
class DreamRawSampler(comfy.samplers.Sampler):
    """The DreamSampler loop as a raw ComfyUI ``Sampler`` (works inside SamplerCustomAdvanced).

    mode "sample": reverse DreamSampler steps (eta, regularizers); "invert": DDIM inversion of
    the input latent up the same sigma grid.  An all-zero ``noise`` (DisableNoise, or a latent
    from the inversion node) means "start from the latent as it is".
    """

    def __init__(self, mode="sample", eta=0.0, eta_schedule="constant", regularizers=(), refine=0,
                 known_source=None):
        self.mode = mode
        self.known_source = known_source   # clean latent (VAE space) a noise mask keeps, when the input is x_T
        self.eta = float(eta)
        self.eta_schedule = eta_schedule
        self.regularizers = tuple(regularizers)
        self.refine = int(refine)
        self.noise_fn = None          # optional noise provider (recorded trajectories), see core.sampler
        self.refine_stats = None      # RefineStats of the last inversion with refine > 0

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        inner = model_wrap.inner_model
        patcher = model_wrap.model_patcher
        param = parameterization(patcher)
        if len(sigmas) > 1 and float(sigmas[0]) < float(sigmas[-1]):
            sigmas = sigmas.flip(0)           # FlipSigmas output: use the sampling grid
            if float(sigmas[-1]) < 1e-3:
                sigmas[-1] = 0.0
        n = len(sigmas) - 1
        if latent_image is None:
            latent_image = torch.zeros_like(noise)
        s_in = noise.new_ones([noise.shape[0]])
        seed = extra_args.get("seed")

        def base_x0(x, sigma):
            throw_if_interrupted()
            return model_wrap(x, sigma * s_in, **extra_args)

        if self.mode == "invert":
            def cb(k, x):
                if callback is not None:
                    callback(k, x, x, n)
            stats = RefineStats()
            x_t = ddim_invert(base_x0, latent_image, sigmas, param, refine=self.refine, callback=cb, stats=stats)
            if self.refine > 0:
                self.refine_stats = stats
                log.info("DDIM inversion refinement: %d of %d iterations lowered the reverse-step residual "
                         "(%d steps x %d refine_steps x %d latents; %d non-finite iterates discarded)",
                         stats.helped, stats.requested, n, self.refine, latent_image.shape[0], stats.non_finite)
            return x_t

        regs = tuple(getattr(model_wrap, "dream_regularizers", ())) + self.regularizers
        needed = required_predictions(regs)
        if needed and not isinstance(model_wrap, DreamGuider):
            raise RuntimeError("The regularizers need a 'Dream Guider' (they read extra prompt predictions); "
                               "connect one as the guider.")

        def denoise(x, sigma):
            x0 = base_x0(x, sigma)
            preds = model_wrap.dream_preds if isinstance(model_wrap, DreamGuider) else {}
            return x0, preds

        if torch.count_nonzero(noise) == 0:
            x = latent_image.clone()
        else:
            x = inner.model_sampling.noise_scaling(sigmas[0], noise, latent_image, self.max_denoise(model_wrap, sigmas))
        spans, times = time_grid(patcher, sigmas)
        generator = torch.Generator(device="cpu").manual_seed(int(seed if seed is not None else 0) + 7)
        if denoise_mask is not None:
            from ..dreamsampler_core.regularizers import KeepKnown
            known = latent_image
            if self.known_source is not None:       # an inverted latent: keep the un-inverted source
                known = inner.process_latent_in(self.known_source.to(latent_image))
            regs = regs + (KeepKnown(known, denoise_mask),)

        def cb(i, z, x_):
            if callback is not None:
                callback(i, z, x_, n)

        if isinstance(model_wrap, DreamGuider):
            model_wrap.dream_active = True
        try:
            out = dream_sample(denoise, x, sigmas, param, regularizers=regs, eta=self.eta,
                               eta_schedule=self.eta_schedule, spans=spans, times=times,
                               generator=generator, callback=cb, noise_fn=self.noise_fn,
                               host={"process_latent_in": inner.process_latent_in,
                                     "process_latent_out": inner.process_latent_out,
                                     "source_latent": latent_image, "seed": seed,
                                     "denoise_grad": grad_denoiser(model_wrap, extra_args)})
        finally:
            if isinstance(model_wrap, DreamGuider):
                model_wrap.dream_active = False
        if float(sigmas[-1]) > 0.0:
            return out
        return inner.model_sampling.inverse_noise_scaling(sigmas[-1], out)


def run_guider(guider, sampler, sigmas, latent: dict, noise, seed: int, x0_output: dict | None = None):
    """Run a guider + sampler like core SamplerCustom: progress bar, previews, interruption."""
    samples = latent["samples"]
    callback = progress_callback(guider.model_patcher, len(sigmas) - 1, x0_output)
    return guider.sample(noise, samples, sampler, sigmas, denoise_mask=latent.get("noise_mask"),
                         callback=callback, disable_pbar=not progress_bar_enabled(), seed=seed)


# =============================================================================================
# Inverse problems (issue 3, nodes/inverse.py): VAE access and a differentiable model call.
# This section is owned by the inverse-problems feature; the code above does not depend on it
# except DreamRawSampler's host entry "denoise_grad".
# =============================================================================================


class VAECodec:
    """A ComfyUI VAE as the codec of ``dreamsampler_core.inverse.DataConsistency``:
    VAE-space latent [B, C, h, w] <-> pixels [B, 3, H, W] in [-1, 1].

    ``decode`` / ``encode`` go through ComfyUI's VAE (model loading, batching, tiled OOM fallback;
    no gradients; encode returns the posterior mean).  ``decode_grad`` runs a deep copy of
    ``first_stage_model`` made outside inference mode (spec comfyui §A6: the loaded weights are
    inference tensors that autograd cannot save), without the output clamp; the copy is kept
    until ``release()``, which the regularizer calls at the end of each sampling run.
    """

    def __init__(self, vae):
        self.vae = vae
        self._grad_model = None

    def check(self):
        """Raise ValueError unless this VAE is an image VAE (2-D latents, RGB pixels)."""
        vae = self.vae
        if getattr(vae, "first_stage_model", None) is None or not hasattr(vae, "decode"):
            raise ValueError("the VAE input is not a valid VAE (connect a checkpoint's or a VAE loader's VAE)")
        if getattr(vae, "latent_dim", 2) != 2 or getattr(vae, "output_channels", 3) != 3:
            raise ValueError("data consistency needs an image VAE (2-D latents, RGB output); "
                             "video and audio VAEs are not supported")

    def downscale(self) -> int:
        return int(self.vae.spacial_compression_encode())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        px = self.vae.decode(z)                                   # [B, H, W, C] in [0, 1]
        if px.ndim != 4 or px.shape[-1] != 3:
            raise ValueError(f"the VAE decoded to shape {tuple(px.shape)}; an RGB image VAE is needed")
        return px.to(z.device).movedim(-1, 1) * 2.0 - 1.0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(((x + 1.0) / 2.0).movedim(1, -1))

    def decode_grad(self, z: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        if self._grad_model is None:
            with torch.inference_mode(False):
                comfy.model_management.load_models_gpu([vae.patcher])
                self._grad_model = _copy.deepcopy(vae.first_stage_model).requires_grad_(False)
        out = self._grad_model.decode(z.to(device=vae.device, dtype=vae.vae_dtype))
        return out.float().to(z.device)

    def release(self):
        self._grad_model = None


def vae_codec(vae) -> VAECodec:
    codec = VAECodec(vae)
    codec.check()
    return codec


def grad_denoiser(model_wrap, extra_args):
    """x0(x, sigma) with autograd through the diffusion model, for the opt-in DPS step.

    The first call deep-copies the diffusion model outside inference mode (its loaded weights are
    inference tensors); the copy is swapped in for each differentiable call and freed with this
    closure at the end of the sampling run.  Memory: one extra copy of the model's weights plus
    the activations of a backward pass."""
    inner = model_wrap.inner_model
    state = {}

    def denoise(x, sigma):
        if "model" not in state:
            with torch.inference_mode(False):
                state["model"] = _copy.deepcopy(inner.diffusion_model).requires_grad_(False)
        original = inner.diffusion_model
        inner.diffusion_model = state["model"]
        try:
            throw_if_interrupted()
            s_in = x.new_ones([x.shape[0]])
            return model_wrap(x, sigma * s_in, **extra_args)
        finally:
            inner.diffusion_model = original

    return denoise


# =============================================================================================
# CycleDiffusion / Cycle-SDE / SDE-Drag (issue 5, nodes/cycle.py and nodes/drag.py): run a core
# algorithm inside ComfyUI's sampling machinery.  Owned by that feature; nothing above uses it.
# =============================================================================================
def sigma_floor(model) -> float:
    """The model's smallest positive sigma: where CycleDiffusion / SDE-Drag put the clean latent."""
    return float(model_sampling(model).sigma_min)


def intermediate_device():
    return comfy.model_management.intermediate_device()


class DreamCoreSampler(comfy.samplers.Sampler):
    """Raw sampler that hands ComfyUI's model to a core routine.

    ``run(denoise, x, sigmas, param, step_callback, mask) -> x``: ``denoise(x, sigma) -> x0`` is
    the guider (CFG, patches, ControlNets active); ``x`` the input latent in model space;
    ``step_callback(x0_hat, x)`` advances ComfyUI's progress bar (and honours /interrupt);
    ``mask`` the LATENT's noise_mask prepared to the latent shape (1 = editable), or None.
    ``guidance``: optional {float(sigma): cfg} applied to the guider per noise level.
    """

    def __init__(self, run, total_steps: int, guidance: dict | None = None):
        self.run = run
        self.total_steps = int(total_steps)
        self.guidance = guidance

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        param = parameterization(model_wrap.model_patcher)
        s_in = noise.new_ones([noise.shape[0]])
        base_cfg = getattr(model_wrap, "cfg", None)
        step = [0]

        def denoise(x, sigma):
            throw_if_interrupted()
            if self.guidance is not None:
                model_wrap.cfg = self.guidance.get(float(sigma), base_cfg)
            return model_wrap(x, sigma * s_in, **extra_args)

        def step_callback(x0_hat, x):
            if callback is not None:
                callback(step[0], x0_hat, x, self.total_steps)
            step[0] += 1

        x = latent_image if latent_image is not None else torch.zeros_like(noise)
        try:
            return self.run(denoise, x, sigmas, param, step_callback, denoise_mask)
        finally:
            if base_cfg is not None:
                model_wrap.cfg = base_cfg


def run_core(guider, run, sigmas, samples, seed: int, total_steps: int, guidance: dict | None = None):
    """guider.sample with a DreamCoreSampler: progress bar over ``total_steps`` model calls.

    ``samples``: VAE-space latent (ComfyUI's process_latent_in is applied); returns VAE space."""
    sampler = DreamCoreSampler(run, total_steps, guidance)
    callback = progress_callback(guider.model_patcher, total_steps)
    return guider.sample(torch.zeros_like(samples), samples, sampler, sigmas, callback=callback,
                         disable_pbar=not progress_bar_enabled(), seed=seed)


# =============================================================================================
# Score distillation and SVG (issue 4, nodes/distill.py and nodes/svg.py): a guider with DDS's
# source branch, a VAE codec with a differentiable encoder, the raw Sampler that runs
# dreamsampler_core.distill inside guider.sample, progress previews, core SVG objects and the
# input folder.  Owned by that feature; nothing above uses it.
# =============================================================================================

DISTILL_SOURCE = "dream_distill_source"


class DistillGuider(DreamGuider):
    """DreamGuider (CFG, the regularizers' extra conds in one batch) with a second CFG branch: while
    ``distill_branch == "source"`` it evaluates (source, negative) instead of (positive, negative),
    for DDS's source prompt (spec dreamsampler §1.3b)."""

    def __init__(self, model_patcher):
        super().__init__(model_patcher)
        self.distill_branch = "target"

    def set_source(self, source):
        self.inner_set_conds({DISTILL_SOURCE: source})

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        if self.distill_branch != "source":
            return super().predict_noise(x, timestep, model_options, seed)
        conds, extra = self.conds, self.dream_extra
        if DISTILL_SOURCE not in conds:
            raise RuntimeError("DDS needs a source prompt: connect the 'source' conditioning")
        self.conds = dict(conds, positive=conds[DISTILL_SOURCE])
        self.dream_extra = ()
        try:
            return super().predict_noise(x, timestep, model_options, seed)
        finally:
            self.conds, self.dream_extra = conds, extra


class DistillCodec:
    """A ComfyUI VAE as the distillation codec, in the model's latent space: pixels [B, 3, H, W] in
    [-1, 1] <-> model-space latents (``latent_in`` / ``latent_out`` = the model's process_latent_in/out).

    ``encode`` is differentiable when its input requires grad: it runs a deep copy of
    ``first_stage_model`` made outside inference mode (spec comfyui §A6: the loaded weights are
    inference tensors autograd cannot save), without any clamp.  Otherwise, and for ``decode``,
    ComfyUI's own VAE path (memory-aware batching, tiled fallback; encode = posterior mean) runs
    under inference mode.  ``release()`` frees the copy."""

    def __init__(self, vae, latent_in=None, latent_out=None):
        self.vae = vae
        self.latent_in = latent_in or (lambda z: z)
        self.latent_out = latent_out or (lambda z: z)
        self._model = None

    def check(self):
        """Raise ValueError unless this is an image VAE (2-D latents, RGB pixels)."""
        vae = self.vae
        if getattr(vae, "first_stage_model", None) is None or not hasattr(vae, "encode"):
            raise ValueError("the VAE input is not a valid VAE (connect a checkpoint's or a VAE loader's VAE)")
        if getattr(vae, "latent_dim", 2) != 2 or getattr(vae, "output_channels", 3) != 3:
            raise ValueError("score distillation needs an image VAE (2-D latents, RGB output); "
                             "video and audio VAEs are not supported")
        return self

    def downscale(self) -> int:
        return int(self.vae.spacial_compression_encode())

    def _grad_model(self):
        if self._model is None:
            with torch.inference_mode(False):
                comfy.model_management.load_models_gpu([self.vae.patcher])
                self._model = _copy.deepcopy(self.vae.first_stage_model).requires_grad_(False).to(self.vae.device)
        return self._model

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        if x.requires_grad and torch.is_grad_enabled():
            pixels = vae.process_input((x + 1.0) / 2.0).to(device=vae.device, dtype=vae.vae_dtype)
            z = self._grad_model().encode(pixels)
            z = (z[0] if isinstance(z, tuple) else z).to(device=x.device, dtype=x.dtype)
        else:
            with torch.inference_mode():
                z = vae.encode(((x.detach() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1))
            z = z.clone().to(device=x.device, dtype=x.dtype)
        return self.latent_in(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            px = self.vae.decode(self.latent_out(z))
        if px.ndim != 4 or px.shape[-1] != 3:
            raise ValueError(f"the VAE decoded to shape {tuple(px.shape)}; an RGB image VAE is needed")
        return (px.clone().movedim(-1, 1) * 2.0 - 1.0).to(device=z.device, dtype=z.dtype)

    def release(self):
        self._model = None


def sigma_at(model_sampling_obj):
    """u in [0, 1] (1 = pure noise) -> sigma, through the model's own percent_to_sigma."""
    return lambda u: float(model_sampling_obj.percent_to_sigma(1.0 - float(u)))


class DistillSampler(comfy.samplers.Sampler):
    """Raw sampler that runs a routine of ``dreamsampler_core.distill`` inside ``guider.sample``, so
    model patches, LoRAs, hooks and ControlNets are active (core TrainSampler pattern, spec comfyui §A2).

    ``run(denoise, x, sigmas, param, host) -> latent`` executes outside inference mode with autograd
    enabled (for the generator and the VAE-encoder copy).  ``denoise(x, sigma, branch) -> (x0, preds)``
    calls the guider under inference mode, no gradients: "target" = CFG of positive vs negative plus
    the regularizers' extra predictions, "source" = DDS's source prompt.  ``x``: the input latent noised
    to sigmas[0] (model space; the latent as it is when ``noise`` is all zero).  ``host``:
    process_latent_in/out, the clean input latent ("source_latent"), the seed and ``sigma_at``."""

    def __init__(self, run):
        self.run = run

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        inner = model_wrap.inner_model
        param = parameterization(model_wrap.model_patcher)
        if latent_image is None:
            latent_image = torch.zeros_like(noise)
        s_in = noise.new_ones([noise.shape[0]])
        is_dream = isinstance(model_wrap, DreamGuider)
        is_distill = isinstance(model_wrap, DistillGuider)

        def denoise(x, sigma, branch="target"):
            throw_if_interrupted()
            if branch == "source" and not is_distill:
                raise RuntimeError("DDS needs the Dream distillation guider (a source prompt)")
            with torch.inference_mode():
                if is_distill:
                    model_wrap.distill_branch = branch
                try:
                    x0 = model_wrap(x, torch.as_tensor(sigma).to(s_in) * s_in, **extra_args)
                finally:
                    if is_distill:
                        model_wrap.distill_branch = "target"
                preds = dict(model_wrap.dream_preds) if is_dream and branch == "target" else {}
            return x0, preds

        if torch.count_nonzero(noise) == 0:
            x = latent_image
        else:
            x = inner.model_sampling.noise_scaling(sigmas[0], noise, latent_image,
                                                   self.max_denoise(model_wrap, sigmas))
        host = {"process_latent_in": inner.process_latent_in, "process_latent_out": inner.process_latent_out,
                "source_latent": latent_image, "seed": extra_args.get("seed"),
                "sigma_at": sigma_at(inner.model_sampling)}
        if is_dream:
            model_wrap.dream_active = True
        try:
            with torch.inference_mode(False), torch.enable_grad():
                return self.run(denoise, x, sigmas, param, host)
        finally:
            if is_dream:
                model_wrap.dream_active = False


def progress_bar(total: int):
    """ComfyUI's progress bar (its server hook also raises on /interrupt); ``update_absolute(value,
    total, ("JPEG", PIL image, max size))`` shows a preview."""
    return comfy.utils.ProgressBar(int(total))


class _SVGData:
    """Stand-in for comfy_extras.nodes_images.SVG where that module cannot be imported (it imports the
    server; e.g. ComfyUI used as a library).  SaveSVGNode reads only ``.data``."""

    def __init__(self, data):
        self.data = data

    def combine(self, other):
        return type(self)(self.data + other.data)


def core_svg(svg_texts):
    """A core ``SVG`` object (comfy_extras.nodes_images.SVG: a list of BytesIO in ``.data``, what
    SaveSVGNode consumes) of SVG texts.  SaveSVGNode pastes the prompt into a CDATA block right after
    the ``<svg>`` tag and writes the rest verbatim: the texts must hold no ']]>' and no script."""
    for t in svg_texts:
        low = t.lower()
        if "]]>" in t or "<script" in low or "<![cdata[" in low or "<metadata" in low:
            raise ValueError("refusing to hand an SVG with ']]>', CDATA, <metadata> or <script> to Save SVG")
    try:
        from comfy_extras.nodes_images import SVG
    except Exception:          # noqa: BLE001 - any import failure: the same payload in a stand-in
        SVG = _SVGData
    return SVG([_io.BytesIO(t.encode("utf-8")) for t in svg_texts])


def input_directory() -> str:
    import folder_paths
    return folder_paths.get_input_directory()


def input_svg_files() -> list[str]:
    """The .svg files directly or in sub-folders of ComfyUI's input folder (relative, '/'-separated)."""
    root = input_directory()
    found = []
    if _os.path.isdir(root):
        for dirpath, _, files in _os.walk(root):
            for f in files:
                if f.lower().endswith(".svg"):
                    found.append(_os.path.relpath(_os.path.join(dirpath, f), root).replace(_os.sep, "/"))
    return sorted(found)


#: longest name accepted for a file / folder inside the input folder (Linux allows 255 per part)
MAX_INPUT_NAME = 1024


def input_file_path(name: str, kind: str = "file") -> str:
    """Absolute path of ``name`` inside ComfyUI's input folder; ValueError if it escapes the folder
    (absolute paths, '..', symlinks out) or is not a regular file (``kind="folder"``: a folder).
    Containment is decided on the name alone before the file system is asked whether anything
    exists, so the message never tells whether a path outside the folder exists."""
    name = str(name)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the name contains an invalid character (a lone UTF-16 surrogate); retype it") from None
    if len(name) > MAX_INPUT_NAME or any(len(part.encode("utf-8", "replace")) > 255
                                         for part in name.replace("\\", "/").split("/")):
        raise ValueError(f"the name is too long ({len(name)} characters; at most {MAX_INPUT_NAME}, 255 per "
                         "folder level); give a path inside ComfyUI's input folder")
    outside = f"{name!r} is not inside ComfyUI's input folder; give a path relative to that folder"
    if "\0" in name:
        raise ValueError(outside)
    root = _os.path.realpath(input_directory())
    path = _os.path.realpath(_os.path.join(root, name))
    if _os.path.isabs(name) or _os.path.commonpath([root, path]) != root:
        raise ValueError(outside)
    if not (_os.path.isdir(path) if kind == "folder" else _os.path.isfile(path)):
        raise ValueError(f"{name!r} is not a {kind} in ComfyUI's input folder")
    return path


def free_ram_bytes() -> int:
    """RAM the OS can still give this process (ComfyUI's own estimate)."""
    return int(comfy.model_management.get_free_memory(torch.device("cpu")))


# =============================================================================================
# Collaborative Score Distillation (issue 6, nodes/csd.py): a raw sampler that hands a core
# routine a predictor of the target and source branches, with InstructPix2Pix's image condition
# set per particle.  Owned by that feature; nothing above uses it.
# =============================================================================================


def csd_model_kind(model) -> str:
    """'ip2p' (InstructPix2Pix: 8-channel UNet with the image latent concatenated), 'plain'
    (text-to-image), or 'concat' (another channel-concat model, e.g. inpainting: unsupported)."""
    base = model.model
    if isinstance(base, comfy.model_base.IP2P):
        return "ip2p"
    return "concat" if tuple(getattr(base, "concat_keys", ()) or ()) else "plain"


def vae_downscale(vae) -> int:
    return int(vae.spacial_compression_encode())


def vae_encode(vae, pixels: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """pixels [B, H, W, 3] in [0, 1] (H, W multiples of the downscale) -> VAE-space latent; ComfyUI's
    tiled encoder (tile x tile pixels, tile/8 overlap) when ``tile`` > 0 and the image is larger."""
    if tile > 0 and max(pixels.shape[1], pixels.shape[2]) > tile:
        return vae.encode_tiled(pixels, tile_x=tile, tile_y=tile, overlap=tile // 8)
    return vae.encode(pixels)


def vae_decode(vae, latent: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """VAE-space latent -> pixels [B, H, W, 3]; tiled (as VAE Decode (Tiled)) when ``tile`` > 0 pixels
    and the image is larger."""
    ds = int(vae.spacial_compression_decode())
    if tile > 0 and max(latent.shape[-2], latent.shape[-1]) * ds > tile:
        out = vae.decode_tiled(latent, tile_x=tile // ds, tile_y=tile // ds, overlap=max(1, tile // 8 // ds))
    else:
        out = vae.decode(latent)
    return out.reshape(-1, *out.shape[-3:])


def _with_image(inner, cond, image, x):
    """Copy of processed conds whose InstructPix2Pix image condition is ``image`` (VAE-space latent,
    one per batch row; None = the zero 'no image' latent), built by the model's own concat_cond."""
    concat = comfy.conds.CONDNoiseShape(inner.concat_cond(concat_latent_image=image, noise=x, device=x.device))
    out = []
    for c in cond:
        c = c.copy()
        c["model_conds"] = dict(c["model_conds"], c_concat=concat)
        out.append(c)
    return out


class DreamCSDSampler(comfy.samplers.Sampler):
    """Raw sampler that runs ``run(predict, x, param, step_callback)`` inside ComfyUI's sampling
    machinery (models loaded, patches and hooks active).  The guider holds processed conds
    "positive" (target / instruction), "negative" and optionally "source".

    ``predict(x_t, x_src_t, sigma, source) -> (x0_target, x0_source)``:
      * text-to-image: CFG(target vs negative, text_cfg) at x_t and CFG(source vs negative, text_cfg)
        at x_src_t (no source prompt: the negative prediction alone);
      * InstructPix2Pix: three-way guidance  none + image_cfg (img - none) + text_cfg (text - img)
        (spec csd §0, §1.3) with the text / img chunks conditioned on the particle's *source* latent
        and the none chunk on zeros; the source branch uses the source prompt (default: the negative,
        whose text term is then exactly 0).
    ``source`` arrives in model space; the image condition is given in VAE space as ComfyUI's
    InstructPixToPixConditioning does (the IP2P convention: unscaled VAE latents).
    """

    def __init__(self, run, total_steps: int, text_cfg: float, image_cfg: float):
        self.run = run
        self.total_steps = int(total_steps)
        self.text_cfg = float(text_cfg)
        self.image_cfg = float(image_cfg)

    def _guided(self, inner, options, x, ts, text, negative, image, ip2p: bool):
        if ip2p:
            none_c = _with_image(inner, negative, None, x)
            img_c = _with_image(inner, negative, image, x)
            text_c = None if text is None else _with_image(inner, text, image, x)
            out = comfy.samplers.calc_cond_batch(inner, [none_c, img_c, text_c], x, ts, options)
            guided = comfy.samplers.cfg_function(inner, out[1], out[0], self.image_cfg, x, ts, model_options=options,
                                                 cond=img_c, uncond=none_c)
            return guided if text is None else guided + self.text_cfg * (out[2] - out[1])
        if text is None:
            return comfy.samplers.calc_cond_batch(inner, [negative], x, ts, options)[0]
        out = comfy.samplers.calc_cond_batch(inner, [text, negative], x, ts, options)
        for fn in options.get("sampler_pre_cfg_function", []):
            out = fn({"conds": [text, negative], "conds_out": out, "cond_scale": self.text_cfg, "timestep": ts,
                      "input": x, "sigma": ts, "model": inner, "model_options": options})
        return comfy.samplers.cfg_function(inner, out[0], out[1], self.text_cfg, x, ts, model_options=options,
                                           cond=text, uncond=negative)

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        inner = model_wrap.inner_model
        param = parameterization(model_wrap.model_patcher)
        ip2p = isinstance(inner, comfy.model_base.IP2P)
        options = extra_args.get("model_options", {})
        target, negative = model_wrap.conds["positive"], model_wrap.conds["negative"]
        source = model_wrap.conds.get("source")
        step = [0]

        def predict(x_t, x_src_t, sigma, src):
            throw_if_interrupted()
            ts = torch.as_tensor(sigma, dtype=torch.float32, device=x_t.device).reshape(1).expand(x_t.shape[0])
            image = inner.process_latent_out(src) if ip2p else None
            x0_tgt = self._guided(inner, options, x_t, ts, target, negative, image, ip2p)
            x0_src = self._guided(inner, options, x_src_t, ts, source, negative, image, ip2p)
            return x0_tgt, x0_src

        def step_callback(x):
            if callback is not None:
                callback(step[0], x, x, self.total_steps)
            step[0] += 1

        x = latent_image if latent_image is not None else torch.zeros_like(noise)
        return self.run(predict, x, param, step_callback)


def run_csd(model, target, negative, source, run, samples, seed: int, total_steps: int, text_cfg: float,
            image_cfg: float, sigma_range: tuple):
    """guider.sample with a DreamCSDSampler: progress bar and latent previews over ``total_steps``
    iterations, /interrupt honoured by the progress hook.  ``samples``: VAE-space latent (ComfyUI's
    process_latent_in is applied for the run); returns the VAE-space result."""
    guider = comfy.samplers.CFGGuider(model)
    conds = {"positive": target, "negative": negative}
    if source is not None:
        conds["source"] = source
    guider.inner_set_conds(conds)
    guider.set_cfg(text_cfg)
    sampler = DreamCSDSampler(run, total_steps, text_cfg, image_cfg)
    callback = progress_callback(model, total_steps)
    sigmas = torch.tensor([float(sigma_range[1]), float(sigma_range[0])], dtype=torch.float32)
    return guider.sample(torch.zeros_like(samples), samples, sampler, sigmas, callback=callback,
                         disable_pbar=not progress_bar_enabled(), seed=seed)
