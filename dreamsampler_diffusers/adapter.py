"""DreamSampler on a diffusers Stable Diffusion pipeline (optional: ComfyUI users never need it).

The adapter only translates conventions, then calls the same core functions as the ComfyUI nodes
(``inversion.ddim_invert``, ``sampler.dream_sample`` with ``regularizers.CFGEdit`` or
``restoration.MaskInpaint`` / ``restoration.DataConsistency`` on ``operators.make_operator``'s
degradations, and the pipelines ``pipelines.cyclediffusion`` and ``pipelines.sde_drag``, each on a
``pipelines.Run`` of this pipeline's denoisers).  There is no second implementation of the math here.

Conventions (spec dreamsampler §6, csd §0):

* diffusers keeps the variance-preserving latent ``z_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` at
  an integer timestep t of ``scheduler.alphas_cumprod``;
* the core (ComfyUI's convention, ``Parameterization("ve")``) keeps ``x = x0 + sigma eps`` with
  ``sigma = sqrt((1 - abar) / abar)``, so ``x = z * sqrt(1 + sigma^2)`` and ``abar = 1 / (1 + sigma^2)``.

The denoiser handed to the core feeds ``z = x / sqrt(1 + sigma^2)`` to the UNet at the timestep of
sigma and returns the Tweedie estimate ``x0 = x - sigma * eps`` (epsilon models) or
``sqrt(abar) z - sqrt(1 - abar) v`` (v-prediction models).  Noise grids are the DDIM timesteps of
the pipeline's own scheduler config (``leading`` + ``steps_offset=1`` on SD: at 200 steps
t = 996, 991, ..., 1, ComfyUI's ``ddim_uniform``).  Latents are diffusers' scaled latents
(``vae.encode(x).latent_dist.mean * scaling_factor``), which is also ComfyUI's model-space latent.

Usage::

    from diffusers import StableDiffusionPipeline
    from dreamsampler_diffusers import DreamPipeline
    dream = DreamPipeline(StableDiffusionPipeline.from_pretrained(...))
    out = dream.edit(image, "a zebra", edit_strength=0.2, steps=200)   # out.images[0] is a PIL image
"""
from __future__ import annotations

import functools

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

# absolute: this package and the core are both top-level next to each other on sys.path (a checkout),
# so `import dreamsampler_diffusers` needs no parent package (which would be the ComfyUI entry point)
from dreamsampler_core import cycle, pipelines
from dreamsampler_core.inversion import ddim_invert
from dreamsampler_core.points import check_points_inside
from dreamsampler_core.regularizers import EDIT_SCHEDULES, CFGEdit
from dreamsampler_core.denoiser import Host, randn_like
from dreamsampler_core.sampler import dream_sample
from dreamsampler_core.schedule import Parameterization, discrete_timestep, normalized_times

log = logging.getLogger("DreamSampler")

VE = Parameterization("ve")
GRID_ENDS = ("zero", "scheduler", "floor")


def require_diffusers():
    """Import diffusers lazily, with a message saying what to install."""
    try:
        import diffusers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "dreamsampler_diffusers needs the optional packages 'diffusers' and 'transformers' "
            "(pip install diffusers transformers). The ComfyUI nodes do not need them.") from e
    return diffusers


# ----------------------------------------------------------------------------- noise table
@dataclass(frozen=True)
class NoiseTable:
    """A scheduler's abar_t table in sigma form.

    alphas_cumprod: [T] float64, abar_t of the training timesteps t = 0..T-1.
    final_alpha_cumprod: the level diffusers' DDIM steps end at (1.0 with ``set_alpha_to_one``,
        else abar_0 = 0.99915 on SD: the clean latent then still carries sigma = 0.029).
    """

    alphas_cumprod: Tensor
    final_alpha_cumprod: float

    @classmethod
    def from_scheduler(cls, scheduler) -> "NoiseTable":
        abar = torch.as_tensor(scheduler.alphas_cumprod).detach().cpu().to(torch.float64)
        final = getattr(scheduler, "final_alpha_cumprod", None)
        final = float(abar[0]) if final is None else float(torch.as_tensor(final))
        return cls(abar, final)

    @property
    def sigmas(self) -> Tensor:
        """[T] ascending sigma_t = sqrt((1 - abar_t) / abar_t)."""
        return ((1.0 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    @property
    def t_max(self) -> int:
        return len(self.alphas_cumprod) - 1

    def sigma(self, t: int) -> float:
        return float(self.sigmas[int(t)])

    @staticmethod
    def sigma_of(alpha_bar: float) -> float:
        return math.sqrt(max(0.0, 1.0 - alpha_bar) / alpha_bar)

    def timestep(self, sigma) -> float:
        """Timestep of a noise level: the table's integer t where sigma is one of its entries
        (relative 1e-6), else log-sigma interpolation (a fractional timestep)."""
        s = float(sigma)
        if s <= 0.0:
            return 0.0
        table = self.sigmas
        i = int(torch.argmin((table - s).abs()))
        if abs(float(table[i]) - s) <= 1e-6 * s:
            return float(i)
        return float(discrete_timestep(table, torch.tensor(s, dtype=torch.float64)))

    def floor_sigma(self) -> float:
        """Where the clean latent sits for CycleDiffusion / SDE-Drag: the scheduler's final level if it
        keeps noise (SD: abar_0), else the table's smallest sigma (as ComfyUI's sigma_min)."""
        if self.final_alpha_cumprod < 1.0:
            return self.sigma_of(self.final_alpha_cumprod)
        return float(self.sigmas[0])


def ddim_timesteps(scheduler_config, steps: int, strength: float = 1.0) -> list:
    """The DDIM scheduler's timesteps for ``steps`` (descending), truncated as diffusers' img2img
    ``get_timesteps`` truncates them for ``strength`` (the last int(steps * strength) are kept)."""
    from diffusers import DDIMScheduler
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(steps)
    ts = [int(t) for t in sched.timesteps]
    keep = min(int(steps * strength), steps)
    if keep < 1:
        raise ValueError(f"steps={steps} with strength={strength} leaves no step; raise steps or strength")
    return ts[len(ts) - keep:]


# ----------------------------------------------------------------------------- model
class UNetDenoiser:
    """The pipeline's UNet as the core's denoiser, batched over prompts.

    ``x0(x, sigma, contexts)``: x [B, C, h, w] in VE model space at ``sigma``; contexts a list of K
    text embeddings [1 or B, L, D]; returns K Tweedie estimates [B, C, h, w] from one UNet call on a
    batch of K * B.  ``calls`` / ``samples`` count UNet calls and batch rows (for benchmarks).
    """

    def __init__(self, unet, table: NoiseTable, prediction_type: str = "epsilon"):
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type {prediction_type!r} is not supported (epsilon or v_prediction)")
        self.unet = unet
        self.table = table
        self.prediction_type = prediction_type
        self.calls = 0
        self.samples = 0

    def x0(self, x: Tensor, sigma, contexts: Sequence[Tensor]) -> list:
        s = float(sigma)
        k, b = len(contexts), x.shape[0]
        vp = math.sqrt(1.0 + s * s)
        z = (x / vp).repeat(k, 1, 1, 1)
        ctx = torch.cat([c.expand(b, *c.shape[1:]) for c in contexts])
        dtype = self.unet.dtype
        t = self.table.timestep(s)
        t = torch.tensor(int(t) if float(t).is_integer() else t, device=x.device)
        out = self.unet(z.to(dtype), t, encoder_hidden_states=ctx.to(device=x.device, dtype=dtype)).sample
        out = out.to(x.dtype)
        self.calls += 1
        self.samples += k * b
        if self.prediction_type == "epsilon":
            x0 = x.repeat(k, 1, 1, 1) - s * out                       # x0 = x - sigma eps (VE Tweedie)
        else:
            abar = 1.0 / (1.0 + s * s)                               # x0 = sqrt(abar) z - sqrt(1 - abar) v
            x0 = abar ** 0.5 * z - (1.0 - abar) ** 0.5 * out
        return list(x0.chunk(k))


@dataclass
class Prompt:
    """A guided prediction: cond + cfg * (cond - uncond); cfg may depend on sigma (a callable)."""

    cond: Tensor
    uncond: Tensor | None = None
    cfg: float | Callable = 1.0

    def scale(self, sigma) -> float:
        return float(self.cfg(sigma)) if callable(self.cfg) else float(self.cfg)


class BatchedDenoiser:
    """The base prompt as the core's denoiser ``model(x, sigma) -> x0`` (``denoiser.py``), with the
    extra prompts as ``extras`` (a mapping of denoisers, each evaluated alone) and
    ``predict_many(x, sigma, names)``: the base and the named extras from one UNet batch (the core's
    ``BatchingDenoiser``).

    A prompt with cfg == 1 needs only its conditional row (as ComfyUI's cfg1 optimization)."""

    def __init__(self, model: UNetDenoiser, base: Prompt, extras: dict | None = None):
        self.model, self.base, self.embeds = model, base, dict(extras or {})
        self.extras = {n: functools.partial(self._extra, n) for n in self.embeds}

    def __call__(self, x, sigma, cfg=None):
        """``cfg``: the guidance scale of this call (None: the prompt's; SDE-Drag's ramp)."""
        return self._batch(x, sigma, (), cfg)[0]

    def predict_many(self, x, sigma, names):
        """(x0 of the base, {name: x0}) for the named extra prompts, one UNet batch (rows in the
        order the prompts were given)."""
        return self._batch(x, sigma, tuple(n for n in self.embeds if n in names))

    def _batch(self, x, sigma, names, cfg=None):
        w = self.base.scale(sigma) if cfg is None else float(cfg)
        if w != 1.0 and self.base.uncond is None:
            raise ValueError(f"guidance {w:g} needs a negative prompt, but the prompt was made without one (cfg 1)")
        rows = [self.base.cond] + ([self.base.uncond] if w != 1.0 else []) + [self.embeds[n] for n in names]
        preds = self.model.x0(x, sigma, rows)
        x0 = preds[0]
        if w != 1.0:
            u = preds[1]
            x0 = u + w * (x0 - u)
        return x0, dict(zip(names, preds[len(rows) - len(names):]))

    def _extra(self, name, x, sigma):
        return self.model.x0(x, sigma, [self.embeds[name]])[0]


def plain_denoiser(model: UNetDenoiser, prompt: Prompt):
    """model(x, sigma) -> x0: the guided prediction of one prompt."""
    return BatchedDenoiser(model, prompt)


# ----------------------------------------------------------------------------- VAE codec
class DiffusersVAECodec:
    """The pipeline's VAE as the codec of ``restoration.DataConsistency``: VAE-space latent (unscaled)
    [B, C, h, w] <-> pixels [B, 3, H, W] in [-1, 1]; encode returns the posterior mean."""

    def __init__(self, vae):
        self.vae = vae

    def _dev(self, t: Tensor) -> Tensor:
        p = next(self.vae.parameters())
        return t.to(device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(self._dev(z)).sample.float().to(z.device)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        return self.vae.encode(self._dev(x)).latent_dist.mean.float().to(x.device)

    def decode_grad(self, z: Tensor) -> Tensor:
        return self.vae.decode(self._dev(z)).sample.float().to(z.device)


# ----------------------------------------------------------------------------- results
@dataclass
class Inversion:
    """A DDIM-inverted latent: ``latent`` [B, C, h, w] in VE model space at ``sigmas[0]`` (``vp``: the
    diffusers latent z_T), on the descending grid ``sigmas`` it was inverted along."""

    latent: Tensor
    sigmas: Tensor
    timesteps: list
    prompt: str = ""

    @property
    def vp(self) -> Tensor:
        return self.latent / math.sqrt(1.0 + float(self.sigmas[0]) ** 2)


@dataclass
class DreamOutput:
    """``images``: decoded as ``output_type`` ("pil", "np", "pt"; the latents for "latent");
    ``latents``: clean scaled latents [B, C, h, w]; ``info``: model-call counts and extras."""

    images: object
    latents: Tensor
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- pipeline
class DreamPipeline:
    """DreamSampler's algorithms on a diffusers ``StableDiffusionPipeline`` (SD 1.x / 2.x).

    The pipeline is not modified (its scheduler is only read: the grids come from a DDIMScheduler
    built from its config).  Images are anything ``pipe.image_processor.preprocess`` takes (PIL,
    numpy [H, W, 3], tensors [B, 3, H, W] in [0, 1]); a tensor with the UNet's channel count is
    taken as a scaled latent.  Masks are [H, W] / [B, H, W] / [B, 1, H, W] tensors, numpy arrays or
    PIL images, white (1) = edit/repaint.
    """

    def __init__(self, pipe, scheduler_config=None):
        require_diffusers()
        for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
            if getattr(pipe, part, None) is None:
                raise ValueError(f"the pipeline has no {part}; DreamPipeline needs a StableDiffusionPipeline "
                                 "(UNet, VAE, CLIP text encoder + tokenizer, scheduler)")
        if getattr(pipe.unet.config, "addition_embed_type", None) is not None:
            raise ValueError("this UNet needs added conditioning (SDXL-style text_time embeddings); "
                             "DreamPipeline supports Stable Diffusion 1.x / 2.x pipelines")
        self.pipe = pipe
        self.scheduler_config = dict(scheduler_config or pipe.scheduler.config)
        from diffusers import DDIMScheduler
        ddim = DDIMScheduler.from_config(self.scheduler_config)
        if ddim.config.clip_sample or ddim.config.thresholding:
            log.warning("the scheduler config clips or thresholds x0; DreamSampler never does (SD configs have "
                        "clip_sample=False), so diffusers' DDIM with this config differs from the adapter")
        self.table = NoiseTable.from_scheduler(ddim)
        self.model = UNetDenoiser(pipe.unet, self.table, ddim.config.prediction_type)
        self.codec = DiffusersVAECodec(pipe.vae)
        self._embeds: dict = {}

    # --- conventions ---------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return getattr(self.pipe, "_execution_device", None) or self.pipe.unet.device

    @property
    def scaling_factor(self) -> float:
        return float(self.pipe.vae.config.scaling_factor)

    def timesteps(self, steps: int, strength: float = 1.0) -> list:
        return ddim_timesteps(self.scheduler_config, steps, strength)

    def sigmas(self, steps: int, strength: float = 1.0, end: str = "zero") -> Tensor:
        """Descending float64 grid: the DDIM timesteps' sigmas, then the clean end.

        end: "zero" (sigma 0: the sampler outputs its last Tweedie estimate, as the official edit and
        ComfyUI's ddim_uniform), "scheduler" (diffusers' final_alpha_cumprod level; 0 with
        set_alpha_to_one) or "floor" (a level > 0 where the clean latent is exactly encodable:
        CycleDiffusion, SDE-Drag; ``NoiseTable.floor_sigma``)."""
        ts = self.timesteps(steps, strength)
        levels = [self.table.sigma(t) for t in ts]
        if end == "zero":
            return torch.tensor(levels + [0.0], dtype=torch.float64)
        if end == "scheduler":
            return torch.tensor(levels + [self.table.sigma_of(self.table.final_alpha_cumprod)], dtype=torch.float64)
        if end == "floor":
            return cycle.clean_end_grid(torch.tensor(levels + [0.0], dtype=torch.float64), self.table.floor_sigma())
        raise ValueError(f"end must be one of {GRID_ENDS}, got {end!r}")

    def time_grid(self, sigmas: Tensor):
        """(spans, times) in normalized time, computed as the ComfyUI host does (integer timesteps)."""
        t = normalized_times(sigmas, self.table.timestep) / self.table.t_max
        return (t[:-1] - t[1:]).clamp_min(0.0), t[:-1]

    # --- text ----------------------------------------------------------------------
    def embed(self, prompt: str | Tensor) -> Tensor:
        """[1, L, D] text embedding (cached); a tensor is passed through (precomputed embeddings)."""
        if torch.is_tensor(prompt):
            return prompt.to(self.device)
        if prompt not in self._embeds:
            with torch.no_grad():
                emb = self.pipe.encode_prompt(prompt, self.device, 1, False)[0]
            self._embeds[prompt] = emb
        return self._embeds[prompt]

    def prompt(self, text, negative="", cfg: float | Callable = 1.0) -> Prompt:
        return Prompt(self.embed(text), None if (not callable(cfg) and cfg == 1.0) else self.embed(negative), cfg)

    def denoiser(self, text="", negative="", cfg: float | Callable = 1.0):
        """denoise(x, sigma) -> x0 for a prompt with CFG (for direct use of the core functions)."""
        return plain_denoiser(self.model, self.prompt(text, negative, cfg))

    # --- images --------------------------------------------------------------------
    def _pixels(self, image, keep_size: bool = False) -> Tensor:
        """Pixels [B, 3, H, W] in [-1, 1] via ``image_processor.preprocess`` (which rounds the size to
        a multiple of the VAE factor unless ``keep_size``: measurements keep their exact size)."""
        size = {}
        if keep_size:
            from PIL import Image
            if isinstance(image, Image.Image):
                size = {"width": image.size[0], "height": image.size[1]}
            elif hasattr(image, "shape"):
                h, w = (image.shape[-2:] if torch.is_tensor(image) else image.shape[-3:-1])
                size = {"height": int(h), "width": int(w)}
        x = self.pipe.image_processor.preprocess(image, **size)
        return x.to(device=self.device, dtype=torch.float32)

    def encode(self, image, generator: torch.Generator | None = None) -> Tensor:
        """Scaled latent [B, C, h, w] (posterior mean); a 4-channel tensor is returned as it is."""
        if torch.is_tensor(image) and image.ndim == 4 and image.shape[1] == self.pipe.unet.config.in_channels:
            return image.to(device=self.device, dtype=torch.float32)
        return self.encode_pixels(self._pixels(image))

    def encode_pixels(self, x: Tensor) -> Tensor:
        """Pixels [B, 3, H, W] in [-1, 1] -> scaled latent."""
        return self.codec.encode(x) * self.scaling_factor

    def decode(self, latents: Tensor, output_type: str = "pil"):
        if output_type == "latent":
            return latents
        with torch.no_grad():
            px = self.codec.decode(latents / self.scaling_factor)
        return self.pipe.image_processor.postprocess(px, output_type=output_type)

    def mask(self, mask, hw=None) -> Tensor:
        """A mask as [B, 1, H, W] float in [0, 1] (1 = edit); resized to ``hw`` if given."""
        if not torch.is_tensor(mask):
            import numpy as np
            arr = np.asarray(mask.convert("L") if hasattr(mask, "convert") else mask, dtype=np.float32)
            mask = torch.from_numpy(arr / 255.0 if arr.max() > 1.0 else arr)
        from dreamsampler_core.masks import as_mask4d
        m = as_mask4d(mask.float())
        if hw is not None and tuple(m.shape[-2:]) != tuple(hw):
            m = torch.nn.functional.interpolate(m, size=tuple(hw), mode="bilinear", align_corners=False)
        return m.to(self.device)

    def _out(self, latents: Tensor, output_type: str, **info) -> DreamOutput:
        info.update(unet_calls=self.model.calls, unet_samples=self.model.samples)
        return DreamOutput(self.decode(latents, output_type), latents, info)

    def reset_counts(self):
        self.model.calls = self.model.samples = 0

    # --- DDIM inversion (spec dreamsampler §2.1) ---------------------------------------
    @torch.no_grad()
    def invert(self, image, prompt: str = "", *, steps: int = 50, strength: float = 1.0, refine: int = 0,
               end: str = "zero", callback=None) -> Inversion:
        """Null-text DDIM inversion of an image (or scaled latent) up the sampler's grid.

        prompt: the null / source prompt (the papers use ""), evaluated without CFG (omega_inv = 0).
        end: "zero" treats the input as clean (abar = 1: diffusers' DDIMInverseScheduler with
        set_alpha_to_one=True, ComfyUI); "scheduler" as the VP latent at final_alpha_cumprod's level
        (DDIMInverseScheduler with set_alpha_to_one=False, the official code's abar_{t<0}).
        ``callback(k, x)`` after each step with x in VE model space.
        """
        z0 = self.encode(image)
        sigmas = self.sigmas(steps, strength, end=end)
        x_lo = z0 * math.sqrt(1.0 + float(sigmas[-1]) ** 2)           # x = z sqrt(1 + sigma^2)
        x_t = ddim_invert(self.denoiser(prompt), x_lo, sigmas, VE, refine=refine, callback=callback)
        return Inversion(x_t, sigmas, self.timesteps(steps, strength), prompt if isinstance(prompt, str) else "")

    # --- editing (spec dreamsampler §2.2) ---------------------------------------------
    @torch.no_grad()
    def edit(self, image, prompt: str, *, source_prompt: str = "", edit_strength: float = 0.2, steps: int = 50,
             schedule: str = "invariant", start: float = 1.0, end: float = 0.0, strength: float = 1.0,
             eta: float = 0.0, refine: int = 0, inversion: Inversion | None = None,
             generator: torch.Generator | None = None, output_type: str = "pil") -> DreamOutput:
        """DreamSampler text editing: null-text DDIM inversion, then the reverse loop whose Tweedie
        estimate moves toward the target prompt's (``CFGEdit``) while renoising with the source noise.

        edit_strength: omega (0.2 is the paper's horse->zebra at 200 steps); schedule: "invariant"
        (default; the same edit at any step count), "paper" (omega * abar_t per step, the official
        code) or "constant".  strength: the fraction of the schedule to invert and run (img2img).
        One UNet call of batch 2 (source, target) per step; the inversion costs batch 1 per step.
        """
        if schedule not in EDIT_SCHEDULES:
            raise ValueError(f"schedule must be one of {EDIT_SCHEDULES}, got {schedule!r}")
        self.reset_counts()
        sigmas = self.sigmas(steps, strength)
        if inversion is None:
            inversion = self.invert(image, source_prompt, steps=steps, strength=strength, refine=refine)
        elif len(inversion.sigmas) != len(sigmas) or not torch.allclose(inversion.sigmas[:-1], sigmas[:-1]):
            raise ValueError("the inversion was made on another grid; invert with the same steps and strength")
        spans, times = self.time_grid(sigmas)
        den = BatchedDenoiser(self.model, self.prompt(source_prompt), {"target": self.embed(prompt)})
        reg = CFGEdit(strength=float(edit_strength), schedule=schedule, start=start, end=end)
        x = dream_sample(den, inversion.latent.clone(), sigmas, VE, extras=den.extras, regularizers=[reg], eta=eta,
                         spans=spans, times=times, generator=generator)
        return self._out(x, output_type, inverted=inversion.latent)

    # --- inpainting / restoration (spec dreamsampler §2.3, §6) ----------------------------
    def _inverse_host(self, grad_model=None) -> Host:
        sf = self.scaling_factor
        return Host(latent_in=lambda z: z * sf, latent_out=lambda z: z / sf, grad_model=grad_model)

    @torch.no_grad()
    def inpaint(self, image, mask, prompt: str | None, *, source_prompt: str = "", steps: int = 50,
                preset: str = "restore", strength: float = 1.0, data_consistency: float = 1.0,
                sigma_y: float = 0.0, mu: float = 1e-4, dps: float = 0.0, feather: float = 0.0,
                overlap: str = "average", generator: torch.Generator | None = None,
                output_type: str = "pil") -> DreamOutput:
        """Text-guided inpainting, the official dream_inpaint structure: the known pixels are the
        measurement y = M x (M = 1 - mask), E(A^T y) (hole = grey) is DDIM-inverted with the source
        prompt, then sampled with ``DataConsistency`` (pixel replacement through the VAE, weight
        ``data_consistency`` * gamma_t) and ``MaskInpaint`` (the hole follows ``prompt``'s estimate
        with guidance ``strength``, 1 = the prompt's own, at any step count; None = the source prompt
        alone).

        mask: one mask, or a list of masks with ``prompt`` a list of the same length (one prompt per
        region; ``overlap`` says how overlapping regions share).  preset: ``restoration.PRESETS``
        ("paper" = the official data-consistency schedule and fresh noise, "restore" = every step).
        dps: the opt-in DPS step (backpropagates through the UNet and the decoder).
        """
        from dreamsampler_core.restoration import DataConsistency, MaskInpaint, preset as get_preset
        from dreamsampler_core.masks import feather as feather_mask, union
        from dreamsampler_core.operators import degrade, make_operator
        sched = get_preset(preset)
        x = self._pixels(image)
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
        prompts = list(prompt) if isinstance(prompt, (list, tuple)) else [prompt] * len(masks)
        if len(prompts) != len(masks):
            raise ValueError(f"{len(masks)} masks but {len(prompts)} prompts; give one prompt (or None) per mask")
        ms = [feather_mask(self.mask(m, x.shape[-2:]), feather) for m in masks]
        op = make_operator("inpainting", mask=union(ms))
        y = degrade(x, op)
        self.reset_counts()
        sigmas = self.sigmas(steps)
        inv = self.invert(self.encode_pixels(op.At(y)), source_prompt, steps=steps)
        names = tuple(None if p is None else f"target{i}" for i, p in enumerate(prompts))
        extras = {n: self.embed(p) for n, p in zip(names, prompts) if n is not None}
        regs = [DataConsistency(op=op, y=y, codec=self.codec, strength=float(data_consistency),
                                sigma_y=float(sigma_y), mu=float(mu), schedule=sched, dps=float(dps)),
                MaskInpaint(masks=tuple(ms), targets=names, strength=float(strength), overlap=overlap,
                            schedule=sched)]
        return self._run_regularized(inv.latent, sigmas, source_prompt, extras, regs, generator, output_type,
                                     dps=dps, measurement=y)

    @torch.no_grad()
    def restore(self, measurement, operator, prompt: str = "", *, steps: int = 50, strength: float = 0.75,
                preset: str = "restore", data_consistency: float = 1.0, sigma_y: float = 0.01, mu: float = 1e-4,
                dps: float = 0.0, scale: int = 4, blur_sigma: float = 3.0, kernel_size: int = 0,
                motion_angle: float = 0.0, generator: torch.Generator | None = None,
                output_type: str = "pil") -> DreamOutput:
        """Image restoration y = A x + n (super-resolution, deblurring, colorization, inpainting):
        A^T y (upsampled for SR) is encoded, noised to the ``strength`` level and sampled with
        ``DataConsistency`` on the ``preset`` schedule (as the pack's restoration workflows).

        measurement: the degraded image (anything ``image_processor.preprocess`` takes; for SR at the
        low resolution; for colorization its gray channel mean is used).  operator: an
        ``operators.LinearOperator`` or a name of ``operators.OPERATOR_NAMES`` built with scale /
        blur_sigma / kernel_size / motion_angle (``operators.make_operator``, as the nodes build it).
        """
        from dreamsampler_core.restoration import DataConsistency, preset as get_preset
        from dreamsampler_core.operators import LinearOperator, fit_measurement, make_operator
        op = operator if isinstance(operator, LinearOperator) else make_operator(
            operator, scale=scale, blur_sigma=blur_sigma, kernel_size=kernel_size, motion_angle=motion_angle)
        y, _ = fit_measurement(op, self._pixels(measurement, keep_size=True))
        self.reset_counts()
        z_init = self.encode_pixels(op.initial_image(y).clamp(-1.0, 1.0))
        sigmas = self.sigmas(steps, strength)
        noise = randn_like(z_init, generator)
        x_start = VE.compose(z_init, noise, float(sigmas[0]))
        reg = DataConsistency(op=op, y=y, codec=self.codec, strength=float(data_consistency), sigma_y=float(sigma_y),
                              mu=float(mu), schedule=get_preset(preset), dps=float(dps))
        return self._run_regularized(x_start, sigmas, prompt, {}, [reg], generator, output_type, dps=dps,
                                     measurement=y)

    def _run_regularized(self, x, sigmas, base_prompt, extras, regs, generator, output_type, dps=0.0, **info):
        host = self._inverse_host(self.denoiser(base_prompt) if dps > 0.0 else None)
        spans, times = self.time_grid(sigmas)
        den = BatchedDenoiser(self.model, self.prompt(base_prompt), extras)
        out = dream_sample(den, x, sigmas, VE, extras=den.extras, regularizers=regs, spans=spans, times=times,
                           generator=generator, host=host)
        return self._out(out, output_type, **info)

    # --- CycleDiffusion (spec csd §2.2-2.3) --------------------------------------------
    @torch.no_grad()
    def cyclediffusion(self, image, prompt: str, source_prompt: str, *, steps: int = 50, strength: float = 0.8,
                       eta: float = 0.1, guidance_scale: float = 3.0, source_guidance_scale: float = 1.0,
                       negative_prompt: str = "", coupling: str = "posterior", mask=None,
                       generator: torch.Generator | None = None, output_type: str = "pil") -> DreamOutput:
        """Zero-shot editing with CycleDiffusion: DPM-Encoder with the source prompt (``cycle.dpm_encode``),
        then the stochastic DDIM(eta) decode of the same code with the target prompt (``cycle.cycle_decode``).

        Same grid, noise draws (with the same ``generator``) and guidance as diffusers'
        ``CycleDiffusionPipeline``; the clean latent sits at ``NoiseTable.floor_sigma`` (see the
        endpoint note in the tests).  mask: optional, 1 = editable; the rest follows the source path.
        Costs 2 x steps UNet calls (x2 rows each with CFG); the code holds 2 x steps latents.
        """
        z0 = self.encode(image)
        sigmas = self.sigmas(steps, strength, end="floor")
        self.reset_counts()
        src = self.denoiser(source_prompt, negative_prompt, source_guidance_scale)
        tgt = self.denoiser(prompt, negative_prompt, guidance_scale)
        run = pipelines.Run(model=tgt, param=VE, sigmas=sigmas, latent=z0, branches={"source": src})
        x, report = pipelines.cyclediffusion(run, eta=eta, coupling=coupling, generator=generator,
                                             mask=self._latent_mask(mask, z0))
        return self._out(x, output_type, code=report.code)

    def _latent_mask(self, mask, z0: Tensor) -> Tensor | None:
        """A mask (1 = editable) as a binary mask on z0's latent grid (``cycle.mask_to_latent``), or None."""
        return None if mask is None else cycle.mask_to_latent(self.mask(mask)[:, 0].cpu(), z0.shape[-2:]).to(z0)

    # --- SDE-Drag (spec csd §3.3) --------------------------------------------------------
    @torch.no_grad()
    def sde_drag(self, image, prompt: str, sources, targets, *, mask=None, steps: int = 100, t0: float = 0.6,
                 guidance_scale: float = 3.0, guidance_ramp: str = "linear", negative_prompt: str = "",
                 alpha: float = 1.1, beta: float = 0.3, radius: int = 5, step_size: float = 2.0,
                 generator: torch.Generator | None = None, output_type: str = "pil") -> DreamOutput:
        """SDE-Drag: drag the content at pixel points ``sources`` [(x, y), ...] to ``targets`` by latent
        copy-paste at t0 and Cycle-SDE (``pipelines.sde_drag``).  mask (1 = editable) keeps the
        rest on the source path.  The guidance ramps linearly from ``guidance_scale`` at t0 to 1 at the end."""
        z0 = self.encode(image)
        h, w = z0.shape[-2:]
        f = int(getattr(self.pipe, "vae_scale_factor", 8))
        H, W = h * f, w * f
        check_points_inside(sources, W, H, "source point")
        check_points_inside(targets, W, H, "target point")
        plan = pipelines.plan_drag(sources, targets, (W, H), (w, h), step_size)
        sigmas = self.sigmas(steps, t0, end="floor")
        # the negative prompt is kept even at guidance 1: the ramp sets each call's scale (cfg=)
        den = BatchedDenoiser(self.model, Prompt(self.embed(prompt), self.embed(negative_prompt), guidance_scale))
        m = self._latent_mask(mask, z0)
        self.reset_counts()
        run = pipelines.Run(model=den, param=VE, sigmas=sigmas, latent=z0)
        x, _ = pipelines.sde_drag(run, plan=plan, cfg=guidance_scale, guidance_ramp=guidance_ramp, mask=m, alpha=alpha,
                                  beta=beta, radius=radius, generator=generator)
        return self._out(x, output_type)
