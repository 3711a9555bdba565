"""The math on every family's own grid (issue 14): the analytic Gaussian-mixture oracle wrapped in
the family's model config, model type, latent format and a model_sampling built from them as ComfyUI
builds it (``tools.tiny_models.oracle_like``: SD's discrete eps / v schedules, SD3 / AuraFlow / Wan /
Lumina shifted flow grids, Flux's and Qwen-Image's timestep = sigma with shift 1.15, Cosmos'
rectified flow on EDM sigmas up to 80, LTX-Video's and Flux.2's shifts ...), through the pack's nodes
in the in-process ComfyUI: exact refined inversion, generation that follows the data, a
step-count-invariant edit, and Cycle-SDE's exact reconstruction where the plain SDE is not.

Random-weight networks are not smooth enough for these checks everywhere (a refined inversion does
not converge on a random eps UNet at sigma_max 14.6); the oracle is, on every grid.
"""
from __future__ import annotations

import math

import pytest
import torch

from dreamsampler_pack.dreamsampler_core.analytic import GaussianMixture
from support.families import families
from support.families._refine import model_and_null
from support.inprocess import run
from tools.tiny_models import class_conditioning

#: the instruction-edit rows (reference latents) have their base row's config and grid: not repeated here
FAMILIES = {name: fam for name, fam in families().items() if not fam.reference}
SD_GRIDS = ("sd15", "sd2v", "sdxl")          # discrete eps / v: the paper's ddim_uniform
#: steps of every check: 50, the top of the families' default ranges.  Strongly shifted grids need
#: them: at Wan's shift 8, 20 steps leave the refined inversion at 2e-2 (refine 4 or 8) and generate
#: samples with 0.70x the data's spread; at 50 steps 6e-4 and 0.88x (flux_dev at 20: 4e-4, 0.87x)
STEPS = 50


@pytest.fixture(scope="module")
def nodes(pack):
    from dreamsampler_pack.nodes import cycle, regularizers, sampling
    return sampling, regularizers, cycle


@pytest.fixture(scope="module")
def oracles(pack):
    from tools.tiny_models import oracle_like
    cache = {}

    def get(name):
        if name not in cache:
            with torch.inference_mode():
                model = model_and_null(FAMILIES[name])[0]
            fmt = model.model.latent_format
            dims = getattr(fmt, "latent_dimensions", 2)
            shape = (fmt.latent_channels,) + (1,) * (dims - 2) + (4, 4)      # 3-D formats: one frame
            gm = GaussianMixture.two_class(math.prod(shape), sep=3.0, std=0.5)
            cache[name] = oracle_like(gm, model), gm, shape
        return cache[name]
    return get


def _scheduler(name):
    return "ddim_uniform" if name in SD_GRIDS else "simple"


def _source(model, gm, shape, cls=0, n=2, seed=1):
    """(model-space x0 of class ``cls``, the LATENT a user's graph holds: process_latent_out of it)."""
    x0 = gm.sample(n, torch.Generator().manual_seed(seed), cls).reshape(n, *shape).float()
    return x0, {"samples": model.model.process_latent_out(x0)}


def _model_space(model, latent):
    return model.model.process_latent_in(latent["samples"]).double()


def _null():
    return class_conditioning(None)


def _invert_and_sample(sampling, model, name, lat, steps, refine, edit=None):
    """Dream DDIM Inversion (null prompt, ``refine``) -> DreamSampler (eta 0, cfg 1, ``edit``), in model space."""
    (inv,) = run(sampling.DreamDDIMInversion, model, _null(), lat, steps=steps, scheduler=_scheduler(name), denoise=1.0,
                 refine_steps=refine)
    out, _ = run(sampling.DreamSampler, model, seed=0, steps=steps, cfg=1.0, scheduler=_scheduler(name),
                 positive=_null(), negative=_null(), latent_image=inv, denoise=1.0, eta=0.0, eta_schedule="constant",
                 regularizers=edit)
    return _model_space(model, out)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_refined_inversion_is_exact_on_the_family_grid(nodes, oracles, name):
    sampling, _, _ = nodes
    model, gm, shape = oracles(name)
    x0, lat = _source(model, gm, shape)
    errs = {refine: float((_invert_and_sample(sampling, model, name, lat, STEPS, refine) - x0).abs().max())
            for refine in (0, 4)}
    assert errs[4] < 2e-3 and errs[4] < errs[0], errs


@pytest.mark.parametrize("name", list(FAMILIES))
def test_generation_follows_the_data_on_the_family_grid(nodes, oracles, name):
    """DreamSampler from noise (added as KSampler adds it, in the family's convention) with the
    class-1 prompt lands in class 1 with the class's spread (std 0.5): a wrong noise scaling or
    timestep mapping puts the samples off in scale."""
    sampling, _, _ = nodes
    model, gm, shape = oracles(name)
    empty = {"samples": model.model.process_latent_out(torch.zeros(8, *shape))}
    out, _ = run(sampling.DreamSampler, model, seed=3, steps=STEPS, cfg=1.0, scheduler=_scheduler(name),
                 positive=class_conditioning(1), negative=_null(), latent_image=empty, denoise=1.0, eta=0.0,
                 eta_schedule="constant")
    x = _model_space(model, out).reshape(8, -1)
    assert (gm.classify(x) == 1).all()
    spread = float((x - gm.means[1]).pow(2).mean().sqrt())
    assert 0.4 < spread < 0.6, spread               # deterministic DDIM under-disperses a little: 0.42-0.50


@pytest.mark.parametrize("name", list(FAMILIES))
def test_invariant_edit_is_step_count_invariant_on_the_family_grid(nodes, oracles, name):
    sampling, regs, _ = nodes
    model, gm, shape = oracles(name)
    x0, lat = _source(model, gm, shape, n=1)
    (edit,) = run(regs.DreamCFGEdit, class_conditioning(1), 0.3, "invariant", 1.0, 0.0)
    out = {steps: _invert_and_sample(sampling, model, name, lat, steps, 3, edit) for steps in (STEPS, 4 * STEPS)}
    moved = float((out[4 * STEPS] - x0).norm())
    assert moved > 0.05 * float(x0.norm())                              # the edit does something
    gap = float((out[STEPS] - out[4 * STEPS]).norm())
    assert gap < 0.1 * moved, (gap, moved)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_cycle_sde_reconstructs_where_the_plain_sde_does_not_on_the_family_grid(nodes, oracles, name):
    _, _, cycle = nodes
    model, gm, shape = oracles(name)
    x0, lat = _source(model, gm, shape)
    errs = {}
    for stage in ("cycle_sde", "sde"):
        source = class_conditioning(0)
        (o,) = run(cycle.DreamCycleSDEEdit, model, source=source, target=source, negative=_null(), latent_image=lat,
                   seed=5, steps=12, scheduler=_scheduler(name), t0=0.6, stage2=stage, cfg=1.0, source_cfg=1.0)
        errs[stage] = float((_model_space(model, o) - x0).abs().max())
    assert errs["cycle_sde"] < 1e-3 and errs["sde"] > 1e-2, errs
