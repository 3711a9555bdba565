"""The peers (support.peers) as test-only ComfyUI nodes, run inside ComfyUI's own sampling
machinery: a CFGGuider that holds every prompt the method needs (conds processed, model loaded and
patched by ComfyUI as for any guider) and a ``comfy.samplers.Sampler`` that runs the peer's loop
over guided velocities v = (x - x0_hat) / sigma from ``comfy.samplers.sampling_function``
(CFG; at cfg 1 the negative is skipped, one row per latent). The latent is taken as it is (no noise
scaling), so an inverted latent at sigma 1 stays finite. Never shipped: loaded into test servers by
tests/support/server_nodes."""
from __future__ import annotations

import torch

from . import peers


def _guided_velocity(guider, extra_args, positive: str, negative: str, cfg: float):
    import comfy.samplers

    def v(x, t):
        s = peers.at(t)
        x0 = comfy.samplers.sampling_function(guider.inner_model, x, x.new_full((x.shape[0],), s),
                                              guider.conds.get(negative), guider.conds.get(positive), cfg,
                                              model_options=extra_args["model_options"], seed=extra_args.get("seed"))
        return (x - x0) / s
    return v


def _run(model, conds: dict, latent: dict, sigmas, seed: int, loop):
    """Run ``loop(velocity, x) -> x`` (velocity(positive, negative, cfg) -> v(x, t)) inside
    ``CFGGuider.sample`` with ``conds`` (name -> CONDITIONING); returns the LATENT dict."""
    import comfy.samplers

    class PeerSampler(comfy.samplers.Sampler):
        def sample(self, guider, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            return loop(lambda p, n, c: _guided_velocity(guider, extra_args, p, n, c), latent_image)

    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds(conds)
    x = latent["samples"]
    out = guider.sample(torch.zeros_like(x), x, PeerSampler(), sigmas, seed=seed)
    return dict(latent, samples=out.to(x.dtype))


def _gen(seed):
    return torch.Generator().manual_seed(int(seed))


#: the inputs every inversion-free edit node takes (its own knobs follow)
_EDIT_INPUTS = {"model": ("MODEL",), "source": ("CONDITIONING",), "target": ("CONDITIONING",),
                "negative": ("CONDITIONING",), "latent_image": ("LATENT",), "sigmas": ("SIGMAS",),
                "n_max": ("INT", {"default": 24, "min": 0, "max": 1000})}


class TestFlowEdit:
    """FlowEdit (Kulikov et al. 2024, Algorithm 1) over SIGMAS (the sampler's descending grid)."""

    CATEGORY = "testing/peers"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {**_EDIT_INPUTS,
                             "n_min": ("INT", {"default": 0, "min": 0, "max": 1000}),
                             "n_avg": ("INT", {"default": 1, "min": 1, "max": 100}),
                             "source_cfg": ("FLOAT", {"default": 1.5, "min": 0.0, "max": 100.0}),
                             "target_cfg": ("FLOAT", {"default": 5.5, "min": 0.0, "max": 100.0}),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31})}}

    def edit(self, model, source, target, negative, latent_image, sigmas, n_max, n_min, n_avg, source_cfg,
             target_cfg, seed):
        def loop(vel, x):
            return peers.flow_edit(vel("source", "negative", source_cfg), vel("target", "negative", target_cfg), x,
                                   sigmas=sigmas.cpu(), n_max=n_max, n_min=n_min, n_avg=n_avg, generator=_gen(seed))
        return (_run(model, {"source": source, "target": target, "negative": negative}, latent_image, sigmas,
                     seed, loop),)


class TestRFInversion:
    """RF-Inversion (Rout et al. 2024): controlled forward ODE (null prompt, gamma, toward a seeded
    noise y1), controlled reverse ODE (target prompt, eta on reverse steps [eta_start, eta_stop))."""

    CATEGORY = "testing/peers"
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("edited", "inverted")
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "null": ("CONDITIONING",), "target": ("CONDITIONING",),
                             "negative": ("CONDITIONING",), "latent_image": ("LATENT",), "sigmas": ("SIGMAS",),
                             "gamma": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0}),
                             "eta": ("FLOAT", {"default": 0.9, "min": 0.0, "max": 1.0}),
                             "eta_start": ("INT", {"default": 0, "min": 0, "max": 1000}),
                             "eta_stop": ("INT", {"default": 6, "min": 0, "max": 1000}),
                             "cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0}),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31})}}

    def edit(self, model, null, target, negative, latent_image, sigmas, gamma, eta, eta_start, eta_stop, cfg, seed):
        box = {}

        def loop(vel, x):
            out, box["inv"] = peers.rf_inversion(vel("null", "negative", 1.0), vel("target", "negative", cfg), x,
                                                 sigmas=sigmas.cpu(), gamma=gamma, eta=eta, eta_start=eta_start,
                                                 eta_stop=eta_stop, generator=_gen(seed))
            return out
        edited = _run(model, {"null": null, "target": target, "negative": negative}, latent_image, sigmas, seed, loop)
        return edited, dict(latent_image, samples=box["inv"].to(latent_image["samples"].dtype))


class TestRFSolverEdit:
    """RF-Solver (Wang et al. 2024) / FireFlow (Deng et al. 2024) / Euler: inversion of the source with
    the null prompt over the flipped SIGMAS, then sampling with the target prompt (cfg)."""

    CATEGORY = "testing/peers"
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("edited", "inverted")
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "null": ("CONDITIONING",), "target": ("CONDITIONING",),
                             "negative": ("CONDITIONING",), "latent_image": ("LATENT",), "sigmas": ("SIGMAS",),
                             "solver": (list(peers.SOLVERS), {"default": "rf_solver"}),
                             "cfg": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 100.0})}}

    def edit(self, model, null, target, negative, latent_image, sigmas, solver, cfg):
        box = {}

        def loop(vel, x):
            out, box["inv"] = peers.invert_edit(vel("null", "negative", 1.0), vel("target", "negative", cfg), x,
                                                sigmas.cpu(), solver)
            return out
        edited = _run(model, {"null": null, "target": target, "negative": negative}, latent_image, sigmas, 0, loop)
        return edited, dict(latent_image, samples=box["inv"].to(latent_image["samples"].dtype))


class TestCountRows:
    """A clone of the MODEL whose every model call adds its batch rows to ``ROWS[key]`` (a UNet
    function wrapper, chained to an existing one)."""

    CATEGORY = "testing/peers"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "key": ("STRING", {"default": "rows"})}}

    def patch(self, model, key):
        m = model.clone()
        inner = m.model_options.get("model_function_wrapper")
        ROWS[key] = 0

        def counting(apply_model, args):
            ROWS[key] += int(args["input"].shape[0])
            return inner(apply_model, args) if inner else apply_model(args["input"], args["timestep"], **args["c"])
        m.set_model_unet_function_wrapper(counting)
        return (m,)


class TestReportRows:
    """Output node: reports ``ROWS[key]`` (after ``latent`` was computed) as its UI output ``rows``."""

    CATEGORY = "testing/peers"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "report"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",), "key": ("STRING", {"default": "rows"})}}

    def report(self, latent, key):
        return {"ui": {"rows": [ROWS.get(key, 0)]}}


ROWS: dict = {}

NODES = {"TestFlowEdit": TestFlowEdit, "TestRFInversion": TestRFInversion, "TestRFSolverEdit": TestRFSolverEdit,
         "TestCountRows": TestCountRows, "TestReportRows": TestReportRows}
