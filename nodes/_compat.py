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
import copy as _copy


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
