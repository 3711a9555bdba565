"""The host's sampling seam: one guider and one sampler adapter between ComfyUI and the core.

* ``DreamGuider`` (a core ``CFGGuider``) only guides: the base branch is CFG(positive, negative, cfg)
  exactly as core's ``sampling_function`` computes it, with every hook a model patch sets (the
  cond-batch hook of Skip Layer Guidance, pre-CFG, the CFG function, post-CFG); it also carries the regularizers' extra
  prompts (evaluated in the same model batch as the base), named guided branches (DDS's, Cycle-SDE's
  and CSD's source prompt) and InstructPix2Pix's three-way guidance (core's dual-CFG formula).  What
  one evaluation computes is a frozen ``GuiderCall``, an argument of ``DreamGuider.predict``
  (which returns the guided x0 and the batched extras), never state on the guider.
* ``CoreSampler`` (a ``comfy.samplers.Sampler``) runs one named core pipeline
  (``dreamsampler_core.pipelines``) with its options inside ``guider.sample``, so model loading,
  patches, hooks, ControlNets, the progress bar, previews and /interrupt are ComfyUI's.  It hands the
  pipeline a ``pipelines.Run``: the guider as the core's denoiser contract ``model(x, sigma) -> x0``
  (``dreamsampler_core.denoiser``) with its named branches and extras, the grid, the latents and the
  host services.  ``run_pipeline`` returns the pipeline's ``(latent, report)`` to the node.
  It is a ``Sampler`` rather than a ``KSAMPLER(fn)``: an inverted latent starts as it is (KSAMPLER's
  noise_scaling would scale it by 1 - sigma on flow models), a noise mask is kept by the core's
  ``KeepKnown`` on the source (not core's x0-inpaint wrapper, which would re-noise the inverted
  latent) and several pipelines are not a sampler-shaped loop (distillation, CSD).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

import comfy.conds
import comfy.model_base
import comfy.patcher_extension
import comfy.samplers

from ...dreamsampler_core.denoiser import Host
from ...dreamsampler_core.masks import MaskError, check_mask_values
from ...dreamsampler_core.pipelines import Run
from . import model as M
from .vae import grad_copy


@dataclass(frozen=True)
class GuiderCall:
    """What one evaluation of a ``DreamGuider`` computes.

    branch: a named guided branch (None: the base, CFG(positive, negative)).  raw: the name of one
    extra prediction evaluated alone, without guidance (then nothing else applies).  extras: extra
    predictions evaluated in the base call's model batch and returned with it (base calls only).
    cfg: the guidance scale of this call (None: the guider's or the branch's).  image:
    InstructPix2Pix's image latent of this call (VAE space, one per batch row)."""

    branch: str | None = None
    raw: str | None = None
    extras: tuple[str, ...] = ()
    cfg: float | None = None
    image: torch.Tensor | None = None


BASE_CALL = GuiderCall()


# ----------------------------------------------------------------------------- the guider
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


class DreamGuider(comfy.samplers.CFGGuider):
    """CFG guider of the pack (see the module docstring).

    ``set_regularizers``: the regularizers' extra prompts, prefixed per regularizer; the base call
    evaluates them in its batch.  ``add_branch(name, cond, cfg)``: a guided branch CFG(cond, negative,
    cfg) (cond None: the negative prediction alone).  ``set_image_cfg``: InstructPix2Pix three-way
    guidance  none + image_cfg (img - none) + cfg (text - img)  with the image of each call.
    """

    def __init__(self, model_patcher):
        super().__init__(model_patcher)
        self.regularizers = ()
        self.extra_names = ()
        self.extra_keys = {}           # extra prediction name -> the registered cond it reads (shared conds once)
        self.branches = {}
        self.image_cfg = None

    def set_regularizers(self, specs):
        """specs: sequence of RegularizerSpec; binds names and registers their conds.  A CONDITIONING
        shared by several regularizers (one text encoder feeding a chain of edits) is registered and
        evaluated once: ComfyUI processes each registered cond into copies of its tensors, and each
        costs a row in every model batch, so n edits of one prompt cost what one does."""
        bound, conds, keys, first = [], {}, {}, {}
        for k, spec in enumerate(specs or ()):
            prefix = f"dream{k}:"
            bound.append(spec.core.bind(prefix))
            for name, cond in spec.conds.items():
                key = first.setdefault(id(cond), prefix + name)
                if key == prefix + name:
                    conds[key] = cond
                keys[prefix + name] = key
        self.regularizers = tuple(bound)
        self.extra_names = tuple(keys)
        self.extra_keys = keys
        if conds:
            self.inner_set_conds(conds)

    def add_branch(self, name: str, cond, cfg: float):
        key = None
        if cond is not None:
            key = f"dream_branch:{name}"
            self.inner_set_conds({key: cond})
        self.branches[name] = (key, float(cfg))

    def set_image_cfg(self, image_cfg: float):
        self.image_cfg = float(image_cfg)

    def sample(self, *args, **kwargs):
        """``CFGGuider.sample``; then each regularizer releases what it held for the run."""
        try:
            return super().sample(*args, **kwargs)
        finally:
            for reg in self.regularizers:
                reg.release()

    def _cfg(self, cond, uncond, cfg, x, timestep, options, extras=()):
        """CFG(cond, uncond) exactly as core ``comfy.samplers.sampling_function`` computes it, every
        hook of the model's ``model_options`` included: the cfg == 1 optimization (unless
        ``disable_cfg1_optimization``), ``sampler_calc_cond_batch_function`` (Skip Layer Guidance),
        ``sampler_pre_cfg_function``, then ``cfg_function`` (``sampler_cfg_function``,
        ``sampler_post_cfg_function``); ``model_function_wrapper``, transformer patches, hooks and
        ControlNets act inside ``calc_cond_batch``.  Also returns the raw predictions of ``extras``
        (names), evaluated in the same model batch as the pair."""
        inner = self.inner_model
        if math.isclose(cfg, 1.0) and not options.get("disable_cfg1_optimization", False):
            uncond = None
        conds = [cond, uncond]
        keys = list(dict.fromkeys(self.extra_keys.get(n, n) for n in extras))
        extra_conds = [self.conds.get(k) for k in keys]
        batch_fn = options.get("sampler_calc_cond_batch_function")
        if batch_fn is not None:
            # the hook decides how [cond, uncond] is evaluated (e.g. with layers skipped for the
            # uncond) and takes exactly that pair: the extras go in a second, plain batch
            out = batch_fn({"conds": conds, "input": x, "sigma": timestep, "model": inner, "model_options": options})
            extra_out = (comfy.samplers.calc_cond_batch(inner, extra_conds, x, timestep, options)
                         if extra_conds else [])
        else:
            out = comfy.samplers.calc_cond_batch(inner, conds + extra_conds, x, timestep, options)
            out, extra_out = out[:2], out[2:]
        for fn in options.get("sampler_pre_cfg_function", []):
            out = fn({"conds": conds, "conds_out": out, "cond_scale": cfg, "timestep": timestep, "input": x,
                      "sigma": timestep, "model": inner, "model_options": options})
        guided = comfy.samplers.cfg_function(inner, out[0], out[1], cfg, x, timestep, model_options=options,
                                             cond=cond, uncond=uncond)
        by_key = dict(zip(keys, extra_out))
        return guided, {n: by_key[self.extra_keys.get(n, n)] for n in extras}

    def _raw(self, cond, x, timestep, options):
        """One prompt's prediction without guidance: core ``calc_cond_batch`` (model wrapper,
        transformer patches, hooks, ControlNets); the CFG hooks (pre/post-CFG, the cond-batch hook,
        which takes a [cond, uncond] pair) belong to guided calls only."""
        return comfy.samplers.calc_cond_batch(self.inner_model, [cond], x, timestep, options)[0]

    def _ip2p(self, text, negative, cfg, image, x, timestep, options):
        """none + image_cfg (img - none) + cfg (text - img), the text / img chunks conditioned on
        ``image`` and the none chunk on zeros (spec csd §0, §1.3; core DualCFGGuider's formula).
        Hooks as core DualCFGGuider applies them: one ``calc_cond_batch`` of the three chunks and
        ``cfg_function`` (CFG function, post-CFG) on the image step; the pair hooks of
        ``sampling_function`` (cond-batch hook, pre-CFG) take a [cond, uncond] pair, not three."""
        inner = self.inner_model
        none_c = _with_image(inner, negative, None, x)
        img_c = _with_image(inner, negative, image, x)
        text_c = None if text is None else _with_image(inner, text, image, x)
        out = comfy.samplers.calc_cond_batch(inner, [none_c, img_c, text_c], x, timestep, options)
        guided = comfy.samplers.cfg_function(inner, out[1], out[0], self.image_cfg, x, timestep,
                                             model_options=options, cond=img_c, uncond=none_c)
        return guided if text is None else guided + cfg * (out[2] - out[1])

    def evaluate(self, call: GuiderCall, x, timestep, model_options) -> tuple[torch.Tensor, dict]:
        """The x0 that ``call`` asks for, and the extra predictions of its batch ({name: x0})."""
        if call.raw is not None:
            return self._raw(self.conds.get(self.extra_keys.get(call.raw, call.raw)), x, timestep, model_options), {}
        negative = self.conds.get("negative")
        if call.branch is None:
            cond, cfg = self.conds.get("positive"), self.cfg
        else:
            key, cfg = self.branches[call.branch]
            cond = None if key is None else self.conds.get(key)
        cfg = cfg if call.cfg is None else call.cfg
        if self.image_cfg is not None:
            return self._ip2p(cond, negative, cfg, call.image, x, timestep, model_options), {}
        if cond is None:      # a branch of the negative prediction alone: a raw prediction, no guidance
            return self._raw(negative, x, timestep, model_options), {}
        return self._cfg(cond, negative, cfg, x, timestep, model_options, call.extras if call.branch is None else ())

    def predict(self, call: GuiderCall, x, timestep, model_options, seed=None) -> tuple[torch.Tensor, dict]:
        """``evaluate`` by ComfyUI's route for a guider call (``CFGGuider.outer_predict_noise``:
        the model's predict-noise wrappers around it).  A wrapper that answers without evaluating
        (LazyCache reusing a step) returns no extras."""
        evaluated = []

        def predict_noise(x, timestep, model_options={}, seed=None):
            x0, extras = self.evaluate(call, x, timestep, model_options)
            evaluated.append(extras)
            return x0

        x0 = comfy.patcher_extension.WrapperExecutor.new_class_executor(
            predict_noise, self,
            comfy.patcher_extension.get_all_wrappers(comfy.patcher_extension.WrappersMP.PREDICT_NOISE,
                                                     self.model_options, is_model_options=True),
        ).execute(x, timestep, model_options, seed)
        return x0, (evaluated[-1] if evaluated else {})

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        """The base branch for ComfyUI's own samplers (the pack's ``CoreSampler`` calls ``predict``)."""
        if self.regularizers:
            raise RuntimeError(
                "This Dream guider carries regularizers, which only the Dream sampler applies. "
                "Connect a 'Dream Sampler (SAMPLER)' node as the sampler, or remove the regularizers.")
        return self.evaluate(BASE_CALL, x, timestep, model_options)[0]


# ----------------------------------------------------------------------------- the core's denoisers
def guider_predict(model_wrap, call: GuiderCall, x, timestep, extra_args) -> tuple[torch.Tensor, dict]:
    """(x0, {name: x0}) of one call of a guider: ``DreamGuider.predict``; another guider (core
    ``CFGGuider``) is called as ComfyUI's samplers call it (its base branch, no extras)."""
    if isinstance(model_wrap, DreamGuider):
        return model_wrap.predict(call, x, timestep, **extra_args)
    return model_wrap(x, timestep, **extra_args), {}


class GuidedDenoiser:
    """A guider inside sampling as the core's denoiser ``model(x, sigma, image=None, cfg=None) -> x0``.

    ``branch``: a named guided branch (None: the base).  ``cfg``: the guidance scale of this call
    (None: the guider's; SDE-Drag's ramp, ``pipelines.guided_by_level``).  On a ``DreamGuider`` each
    call is one ``GuiderCall``, and ``predict_many`` (the core's ``BatchingDenoiser``) returns the
    base with the regularizers' extra predictions of the same model batch.  Another guider (core
    ``CFGGuider``) is called as ComfyUI's samplers call it."""

    def __init__(self, model_wrap, extra_args, branch=None):
        self.model_wrap = model_wrap
        self.extra_args = extra_args
        self.branch = branch

    def evaluate(self, call: GuiderCall, x, sigma) -> tuple[torch.Tensor, dict]:
        """(x0, {name: x0}) of one guider call at (x, sigma), in inference mode."""
        M.throw_if_interrupted()
        args = dict(self.extra_args, model_options=dict(self.extra_args.get("model_options", {})))
        s_in = x.new_ones([x.shape[0]])
        with torch.inference_mode():
            return guider_predict(self.model_wrap, call, x, torch.as_tensor(sigma).to(s_in) * s_in, args)

    def guider_call(self, image=None, cfg=None, extras=()) -> GuiderCall:
        """This denoiser's call with the core's per-call arguments (``image``: a model-space latent)."""
        if image is not None and getattr(self.model_wrap, "image_cfg", None) is not None:
            # InstructPix2Pix's condition is a VAE-space latent
            image = self.model_wrap.inner_model.process_latent_out(image)
        else:
            image = None
        return GuiderCall(branch=self.branch, extras=extras, cfg=None if cfg is None else float(cfg), image=image)

    def __call__(self, x, sigma, image=None, cfg=None):
        return self.evaluate(self.guider_call(image, cfg), x, sigma)[0]

    def predict_many(self, x, sigma, names):
        """(the base x0, {name: x0}): the named extra predictions from the base call's model batch
        (in the guider's order); one that a predict-noise wrapper left unevaluated is evaluated alone."""
        batched = tuple(n for n in self.model_wrap.extra_names if n in names)
        x0, preds = self.evaluate(self.guider_call(extras=batched), x, sigma)
        return x0, {n: preds[n] if n in preds else self.raw(n, x, sigma) for n in names}

    def raw(self, name, x, sigma, **_):
        """One extra prediction (a regularizer's prompt, no guidance) evaluated alone."""
        return self.evaluate(GuiderCall(raw=name), x, sigma)[0]


#: what a MultiGPU run (newest ComfyUI, ``comfy/sampler_helpers.py``) adds to the run's model_options
MULTIGPU_KEYS = ("multigpu_clones", "multigpu_thread_pool")


def grad_denoiser(model_wrap, extra_args):
    """x0(x, sigma) with autograd through the diffusion model, for the opt-in DPS step: the first call
    makes a ``grad_copy`` of the diffusion model (the weights its forward uses, whatever ComfyUI's load
    state), swapped in for each differentiable call (the shared model is restored at once) and freed
    with this closure at the end of the run.  Memory: one extra copy of the weights (on the load
    device while it has room, else on the CPU) plus the activations of a backward pass."""
    inner = model_wrap.inner_model
    patcher = model_wrap.model_patcher
    state = {}
    # the gradient branch runs on the main device: a MultiGPU run (the newest ComfyUI) would send
    # part of the batch to the other devices' clones, whose weights are not the swapped-in copy and
    # run without gradients there
    options = extra_args.get("model_options", {})
    if any(k in options for k in MULTIGPU_KEYS):
        extra_args = dict(extra_args, model_options={k: v for k, v in options.items() if k not in MULTIGPU_KEYS})

    def denoise(x, sigma):
        if "model" not in state:
            # the model is loaded for this run already: read as it is, not reloaded
            state["model"] = grad_copy(inner.diffusion_model, device=patcher.load_device,
                                       dtype=getattr(inner, "manual_cast_dtype", None), what="diffusion model",
                                       budget_from=patcher)
        original = inner.diffusion_model
        inner.diffusion_model = state["model"]
        try:
            M.throw_if_interrupted()
            s_in = x.new_ones([x.shape[0]])
            return guider_predict(model_wrap, BASE_CALL, x, sigma * s_in, extra_args)[0]
        finally:
            inner.diffusion_model = original

    return denoise


# ----------------------------------------------------------------------------- the sampler adapter
class CoreSampler(comfy.samplers.Sampler):
    """Runs the core pipeline ``pipeline(run, **options)`` (``dreamsampler_core.pipelines``) inside
    ``guider.sample`` (see the module docstring); ``run`` is the ``pipelines.Run`` of this sampling
    call.  ``report`` is the last run's report, which ``run_pipeline`` returns with the latent
    (``guider.sample`` returns a latent only).

    steps: progress-bar length in model calls (None: the grid's steps).

    The run's ``start(sigmas)``: the input noised to sigmas[0] with the run's noise, as KSampler does;
    an all-zero noise (DisableNoise, an inverted latent) starts from the latent as it is.  Its
    ``finish``: KSAMPLER's inverse noise scaling where the grid ends at level 0."""

    def __init__(self, pipeline: Callable[..., tuple], steps: int | None = None, **options):
        self.pipeline = pipeline
        self.options = options
        self.steps = steps
        self.report = None

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        if denoise_mask is not None:
            try:
                check_mask_values(denoise_mask)
            except MaskError as e:
                raise MaskError(f"the latent's noise_mask (Set Latent Noise Mask) cannot be used: {e}") from None
        inner = model_wrap.inner_model
        ms = inner.model_sampling            # the object this run's model samples with
        latent_image = torch.zeros_like(noise) if latent_image is None else latent_image
        is_dream = isinstance(model_wrap, DreamGuider)
        base = GuidedDenoiser(model_wrap, extra_args)
        extras = {n: functools.partial(base.raw, n) for n in (model_wrap.extra_names if is_dream else ())}
        branches = {n: GuidedDenoiser(model_wrap, extra_args, branch=n)
                    for n in (model_wrap.branches if is_dream else ())}
        total = self.steps if self.steps is not None else len(sigmas) - 1
        counter = [0]

        def progress(x0, x):
            if callback is not None:
                callback(counter[0], x0, x, total)
            counter[0] += 1

        def start(grid):
            if torch.count_nonzero(noise) == 0:
                return latent_image.clone()
            return ms.noise_scaling(grid[0], noise, latent_image, self.max_denoise(model_wrap, grid))

        def finish(out):
            if len(sigmas) > 1 and float(sigmas[-1]) == 0.0:
                return ms.inverse_noise_scaling(sigmas[-1], out)
            return out

        latent_in, latent_out = M.latent_maps(inner)
        host = Host(latent_in=latent_in, latent_out=latent_out,
                    grad_model=grad_denoiser(model_wrap, extra_args), sigma_at=M.sigma_at(ms),
                    interrupt=M.throw_if_interrupted)
        seed = extra_args.get("seed")
        run = Run(model=base, param=M.run_parameterization(inner), sigmas=sigmas, latent=latent_image,
                  branches=branches, extras=extras,
                  regularizers=tuple(model_wrap.regularizers) if is_dream else (), mask=denoise_mask,
                  seed=int(seed) if seed is not None else 0, host=host, progress=progress, start=start,
                  time_grid=lambda grid: M.time_grid(ms, grid), finish=finish)
        self.report = None
        out, self.report = self.pipeline(run, **self.options)
        return out


def new_guider(model, positive, negative, cfg: float, regularizers=None) -> DreamGuider:
    guider = DreamGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    guider.set_regularizers(regularizers)
    return guider


def run_pipeline(guider, sampler: CoreSampler, sigmas, samples, noise=None, seed: int = 0, denoise_mask=None,
                 x0_output: dict | None = None, progress: bool = True) -> tuple[torch.Tensor, Any]:
    """guider.sample with a CoreSampler like core SamplerCustom: progress bar and previews over the
    sampler's steps, /interrupt honoured.  ``samples``: VAE-space latent (the model's
    process_latent_in is applied for the run); returns the VAE-space result and the pipeline's report."""
    total = sampler.steps if sampler.steps is not None else len(sigmas) - 1
    callback = M.progress_callback(guider.model_patcher, total, x0_output) if progress else None
    noise = torch.zeros_like(samples) if noise is None else noise
    out = guider.sample(noise, samples, sampler, sigmas, denoise_mask=denoise_mask, callback=callback,
                        disable_pbar=not M.progress_bar_enabled(), seed=seed)
    return out, sampler.report
