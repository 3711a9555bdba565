"""Test / bench-only ComfyUI node: LanPaint inpainting (support.lanpaint), a KSampler that reads
the LATENT's noise_mask (1 = repaint) like core noise-mask inpainting.  Linked into a test server's
custom_nodes (never shipped)."""
import sys
from pathlib import Path

import torch

_TESTS = Path(__file__).resolve().parents[2]
for _p in (str(_TESTS.parent), str(_TESTS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import comfy.model_management  # noqa: E402
import comfy.model_sampling  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.samplers  # noqa: E402

from support import lanpaint as LP  # noqa: E402


class LanPaintGuider(comfy.samplers.CFGGuider):
    """CFG guider that also keeps the same batch's prediction at scale ``cfg_big`` (x0_BIG)."""

    cfg_big = 1.0
    last_big = None
    calls = 0

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        cond, uncond = self.conds.get("positive"), self.conds.get("negative")
        plain = abs(self.cfg - 1.0) < 1e-9 and abs(self.cfg_big - 1.0) < 1e-9
        out = comfy.samplers.calc_cond_batch(self.inner_model, [cond, None if plain else uncond], x, timestep,
                                             model_options)
        LanPaintGuider.calls += x.shape[0] * (1 if plain else 2)
        if plain:
            self.last_big = out[0]
            return out[0]
        self.last_big = comfy.samplers.cfg_function(self.inner_model, cond_pred=out[0], uncond_pred=out[1],
                                                    cond_scale=self.cfg_big, x=x, timestep=timestep,
                                                    model_options=model_options, cond=cond, uncond=uncond)
        return comfy.samplers.cfg_function(self.inner_model, cond_pred=out[0], uncond_pred=out[1], cond_scale=self.cfg,
                                           x=x, timestep=timestep, model_options=model_options, cond=cond,
                                           uncond=uncond)


def _scales(ms, sigma: float):
    """(a, s) of x = a x0 + s eps in k-diffusion space for the model's sampling type."""
    if isinstance(ms, comfy.model_sampling.CONST):
        return 1.0 - sigma, sigma
    return 1.0, sigma


class LanPaintDenoiser:
    """k-diffusion denoiser (x, sigma, denoise_mask, model_options, seed) -> x0 with LanPaint's
    thinking steps before each prediction (the role of core's KSamplerX0Inpaint)."""

    def __init__(self, guider, sigmas, latent_image, noise, opts, gen):
        self.guider, self.sigmas, self.y, self.noise, self.o, self.gen = guider, sigmas, latent_image, noise, opts, gen

    def __call__(self, x, sigma, denoise_mask=None, model_options={}, seed=None):
        g = self.guider
        if denoise_mask is None:
            return g(x, sigma, model_options=model_options, seed=seed)
        if "denoise_mask_function" in model_options:
            denoise_mask = model_options["denoise_mask_function"](sigma, denoise_mask, extra_options={
                "model": g.inner_model, "sigmas": self.sigmas})
        known = 1.0 - (denoise_mask > 0.5).to(x.dtype)
        x = x * (1 - known) + g.inner_model.scale_latent_inpaint(x=x, sigma=sigma, noise=self.noise,
                                                                 latent_image=self.y) * known
        s = float(sigma.reshape(-1)[0])
        a, sc = _scales(g.inner_model.model_sampling, s)
        abt, r = LP.vp_scales(a, sc)
        step = int(torch.argmin((self.sigmas - s).abs()))
        n = LP.thinking_count(self.o["steps"], abt, step, len(self.sigmas) - 1, self.o["early_stop"])
        if n > 0:
            def predict(x_vp):
                x0 = g(x_vp * r, sigma, model_options=model_options, seed=seed)
                return x0, g.last_big
            x_vp = LP.langevin(x / r, abt=abt, known=known, y=self.y, predict=predict, n_iters=n, lam=self.o["lam"],
                               step_size=self.o["step_size"], beta=self.o["beta"], gen=self.gen)
            x = x_vp * r
        out = g(x, sigma, model_options=model_options, seed=seed)
        self.x_out = x
        return out * (1 - known) + self.y * known


class LanPaintSampler(comfy.samplers.KSAMPLER):
    def __init__(self, sampler_name, opts, seed):
        base = comfy.samplers.ksampler(sampler_name)
        super().__init__(base.sampler_function, base.extra_options, base.inpaint_options)
        self.opts, self.seed = opts, seed

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        extra_args["denoise_mask"] = denoise_mask
        gen = torch.Generator().manual_seed(self.seed + 1)
        model_k = LanPaintDenoiser(model_wrap, sigmas, latent_image, noise, self.opts, gen)

        def denoise(x, sigma, **kw):             # the thinking steps move the sampler's x (in place)
            out = model_k(x, sigma, **kw)
            x.copy_(model_k.x_out if kw.get("denoise_mask") is not None else x)
            return out

        x = model_wrap.inner_model.model_sampling.noise_scaling(sigmas[0], noise, latent_image,
                                                                self.max_denoise(model_wrap, sigmas))
        samples = self.sampler_function(denoise, x, sigmas, extra_args=extra_args, callback=None,
                                        disable=disable_pbar, **self.extra_options)
        return model_wrap.inner_model.model_sampling.inverse_noise_scaling(sigmas[-1], samples)


class TestLanPaintKSampler:
    """LanPaint inpainting: KSampler inputs plus thinking steps (N), lambda, step size, beta,
    prompt mode; the LATENT's noise_mask marks the hole (no mask: plain sampling)."""

    CATEGORY = "testing"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",), "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 32}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 1000}),
            "cfg": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 100.0}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS,), "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
            "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "latent_image": ("LATENT",),
            "thinking_steps": ("INT", {"default": 5, "min": 0, "max": 100}),
            "lam": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 50.0}),
            "step_size": ("FLOAT", {"default": 0.2, "min": 0.0001, "max": 1.0}),
            "beta": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0}),
            "prompt_mode": (["Image First", "Prompt First"],),
            "early_stop": ("INT", {"default": 1, "min": 0, "max": 1000})}}

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
               thinking_steps, lam, step_size, beta, prompt_mode, early_stop):
        opts = dict(steps=thinking_steps, lam=lam, step_size=step_size, beta=beta, early_stop=early_stop)
        return (lanpaint_sample(model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
                                positive=positive, negative=negative, latent=latent_image, opts=opts,
                                prompt_mode=prompt_mode),)


def lanpaint_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, opts,
                    prompt_mode="Image First"):
    """LATENT dict out, as common_ksampler at denoise 1."""
    x = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = comfy.sample.prepare_noise(x, seed, latent.get("batch_index"))
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()
    guider = LanPaintGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    guider.cfg_big = cfg if prompt_mode == "Image First" else -0.5
    samples = guider.sample(noise, x, LanPaintSampler(sampler_name, opts, seed), sigmas,
                            denoise_mask=latent.get("noise_mask"), seed=seed)
    out = latent.copy()
    out.pop("noise_mask", None)
    out["samples"] = samples.to(comfy.model_management.intermediate_device())
    return out


class TestRowCounter:
    """A clone of the MODEL that counts the rows (batch entries) of every model call under ``tag``."""

    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    counts = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "tag": ("STRING", {"default": "rows"})}}

    def patch(self, model, tag):
        TestRowCounter.counts[tag] = 0

        def wrapper(apply_model, args):
            TestRowCounter.counts[tag] += int(args["input"].shape[0])
            return apply_model(args["input"], args["timestep"], **args["c"])

        m = model.clone()
        m.set_model_unet_function_wrapper(wrapper)
        return (m,)


class TestRowCount:
    """The rows counted under ``tag`` once ``samples`` exists, as a LATENT [1, 1, 1, 1]."""

    CATEGORY = "testing"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "read"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "tag": ("STRING", {"default": "rows"})}}

    def read(self, samples, tag):
        return ({"samples": torch.full((1, 1, 1, 1), float(TestRowCounter.counts.get(tag, -1)))},)


NODE_CLASS_MAPPINGS = {"TestLanPaintKSampler": TestLanPaintKSampler, "TestRowCounter": TestRowCounter,
                       "TestRowCount": TestRowCount}
