"""Every touch point between the pack and ComfyUI's internals lives here.

ComfyUI's ``comfy.*`` modules are not a versioned API; keeping them behind this one module
means a ComfyUI update breaks (and gets fixed in) one file.  Tested against the pinned host
(ComfyUI 0.3.75, see README "Host environment").
"""
from __future__ import annotations

import logging
import math

import torch

import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..dreamsampler_core.inversion import ddim_invert
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


def calculate_sigmas(model, scheduler: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """Descending sigma grid exactly as core BasicScheduler builds it (denoise keeps the tail)."""
    total = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.FloatTensor([])
        total = int(steps / denoise)
    sigmas = comfy.samplers.calculate_sigmas(model_sampling(model), scheduler, total).cpu()
    return sigmas[-(steps + 1):]


def prepare_noise(latent: dict, seed: int) -> torch.Tensor:
    return comfy.sample.prepare_noise(latent["samples"], seed, latent.get("batch_index"))


def fix_empty_latent_channels(model, samples):
    return comfy.sample.fix_empty_latent_channels(model, samples)


def process_latent_out(model, samples):
    return model.model.process_latent_out(samples)


def progress_callback(model, steps: int, x0_output: dict | None = None):
    """ComfyUI's progress bar + latent previews; its hook also raises on /interrupt."""
    return latent_preview.prepare_callback(model, steps, x0_output)


def progress_bar_enabled() -> bool:
    return bool(comfy.utils.PROGRESS_BAR_ENABLED)


def throw_if_interrupted():
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

    def __init__(self, mode="sample", eta=0.0, eta_schedule="constant", regularizers=(), refine=0):
        self.mode = mode
        self.eta = float(eta)
        self.eta_schedule = eta_schedule
        self.regularizers = tuple(regularizers)
        self.refine = int(refine)
        self.noise_fn = None          # optional noise provider (recorded trajectories), see core.sampler

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
            return model_wrap(x, sigma * s_in, **extra_args)

        if self.mode == "invert":
            def cb(k, x):
                if callback is not None:
                    callback(k, x, x, n)
            return ddim_invert(base_x0, latent_image, sigmas, param, refine=self.refine, callback=cb)

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
            regs = regs + (KeepKnown(latent_image, denoise_mask),)

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
                                     "source_latent": latent_image, "seed": seed})
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
