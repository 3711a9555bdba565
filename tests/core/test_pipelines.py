"""dreamsampler_core.pipelines: each pipeline on a ``Run`` is the algorithm it names, bit for bit, on
the analytic oracle; what a run lacks or mismatches is refused with the reason."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from dreamsampler_core import cycle, distill, drag, pipelines
from dreamsampler_core.analytic import GaussianMixture, mixture_denoiser
from dreamsampler_core.denoiser import Host
from dreamsampler_core.inversion import ddim_invert
from dreamsampler_core.regularizers import KeepKnown
from dreamsampler_core.sampler import dream_sample
from dreamsampler_core.schedule import Parameterization, ddim_uniform, scaled_linear_sigmas

VE = Parameterization("ve")
TABLE = scaled_linear_sigmas()


def _grid(steps: int, floor: bool = True):
    grid = ddim_uniform(TABLE, steps)
    return cycle.clean_end_grid(grid, float(TABLE[0])) if floor else grid


def _flat(den):
    """A [B, 4, 4, 4]-latent denoiser over the 64-dimensional oracle."""
    return lambda x, s, **extra: den(x.reshape(x.shape[0], -1), s).reshape(x.shape)


@pytest.fixture(scope="module")
def oracle():
    gm = GaussianMixture.two_class(64, sep=3.0, std=0.5)
    x0 = gm.sample(2, torch.Generator().manual_seed(1), cls_index=0).reshape(2, 4, 4, 4)
    return gm, _flat(mixture_denoiser(gm, VE, 0)), _flat(mixture_denoiser(gm, VE, 1)), x0


# ----------------------------------------------------------------------------- the Run itself
def test_run_names_a_missing_branch_and_defaults_start_to_the_latent(oracle):
    gm, src, tgt, x0 = oracle
    run = pipelines.Run(model=tgt, param=VE, sigmas=_grid(10), latent=x0)
    with pytest.raises(ValueError, match="guided branch 'source'.*gave none"):
        pipelines.cycle_sde_edit(run)
    start = run.start_latent(run.sigmas)
    assert torch.equal(start, x0) and start is not x0
    flipped = run.sigmas.flip(0)
    assert torch.equal(pipelines.sampling_grid(flipped.clone()), run.sigmas)


# ----------------------------------------------------------------------------- DreamSampler and inversion
def test_sample_is_dream_sample_and_keeps_the_masked_source(oracle):
    gm, src, tgt, x0 = oracle
    sig = _grid(12, floor=False)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=x0.dtype)
    calls = []
    run = pipelines.Run(model=tgt, param=VE, sigmas=sig, latent=x0, seed=5, start=lambda g: x0 + g[0] * noise,
                        progress=lambda z, x: calls.append(1))
    out, report = pipelines.sample(run, eta=0.5, resample=1)
    ref = dream_sample(tgt, x0 + sig[0] * noise, sig, VE, eta=0.5, resample=1,
                       generator=torch.Generator().manual_seed(5 + 7))
    assert report is None and torch.equal(out, ref)
    assert len(calls) == len(sig) - 1                                # one progress step per level
    assert int(gm.classify(out.reshape(2, -1)).eq(1).sum()) == 2    # the target prompt's class

    mask = torch.zeros(1, 1, 4, 4, dtype=x0.dtype)
    mask[..., 2:] = 1.0                                              # repaint the right half
    kept, _ = pipelines.sample(dataclasses.replace(run, mask=mask), eta=0.5)
    ref = dream_sample(tgt, x0 + sig[0] * noise, sig, VE, eta=0.5, regularizers=(KeepKnown(x0, mask),),
                       generator=torch.Generator().manual_seed(5 + 7))
    assert torch.equal(kept, ref)
    assert float((kept - x0)[..., :2].abs().max()) < 1e-12 and float((kept - x0)[..., 2:].abs().max()) > 0.1


def test_invert_reports_refinement_only_when_asked(oracle):
    gm, src, tgt, x0 = oracle
    sig = _grid(10, floor=False)
    run = pipelines.Run(model=src, param=VE, sigmas=sig, latent=x0)
    x_t, report = pipelines.invert(run)
    assert report is None and torch.equal(x_t, ddim_invert(src, x0, sig, VE))
    x_r, stats = pipelines.invert(dataclasses.replace(run, sigmas=sig.flip(0).clone()), refine=2)
    assert stats.requested == 2 * (len(sig) - 1) * 2 and stats.non_finite == 0
    assert torch.equal(x_r, ddim_invert(src, x0, sig, VE, refine=2))


# ----------------------------------------------------------------------------- CycleDiffusion, Cycle-SDE
def test_cyclediffusion_is_encode_then_decode(oracle):
    """The diffusers host's CycleDiffusion; the nodes run its two halves as DDPM Encode and
    CycleDiffusion Decode."""
    gm, src, tgt, x0 = oracle
    sig = _grid(20)[-13:]
    calls = []
    run = pipelines.Run(model=tgt, param=VE, sigmas=sig, latent=x0, branches={"source": src},
                        progress=lambda z, x: calls.append(1))
    out, report = pipelines.cyclediffusion(run, eta=0.3, generator=torch.Generator().manual_seed(9))
    code = cycle.dpm_encode(src, x0, sig, VE, eta=0.3, generator=torch.Generator().manual_seed(9))
    assert torch.equal(out, cycle.cycle_decode(tgt, code, VE))
    assert torch.equal(torch.stack(report.code.noises), torch.stack(code.noises))
    assert len(calls) == report.model_calls == 2 * code.steps
    rec, _ = pipelines.cyclediffusion(dataclasses.replace(run, model=src), eta=0.3,
                                      generator=torch.Generator().manual_seed(9))
    assert float((rec - x0).abs().max()) < 1e-9

    # the halves, as the nodes run them: decode checks the grid, the latent and the model family
    x_start, enc = pipelines.cyclediffusion_encode(dataclasses.replace(run, model=src), eta=0.3,
                                                   generator=torch.Generator().manual_seed(9))
    half, _ = pipelines.cyclediffusion_decode(dataclasses.replace(run, latent=x_start), code=enc.code)
    assert torch.equal(half, out)
    with pytest.raises(ValueError, match="not the grid the code was encoded on"):
        pipelines.cyclediffusion_decode(dataclasses.replace(run, sigmas=sig[1:]), code=enc.code)
    with pytest.raises(ValueError, match="does not match the code"):
        pipelines.cyclediffusion_decode(dataclasses.replace(run, latent=x_start[:1]), code=enc.code)
    enc.code.meta["param"] = "eps"
    with pytest.raises(ValueError, match="encoded with a 'eps' model, not 've'"):
        pipelines.cyclediffusion_decode(run, code=enc.code)


def test_cycle_sde_edit_is_the_core_edit(oracle):
    gm, src, tgt, x0 = oracle
    sig = _grid(20)[-13:]
    run = pipelines.Run(model=tgt, param=VE, sigmas=sig, latent=x0, branches={"source": src})
    out, report = pipelines.cycle_sde_edit(run, stage2="cycle_sde", seed=4)
    assert report is None
    assert torch.equal(out, cycle.cycle_sde_edit(src, tgt, x0, sig, VE, stage2="cycle_sde", seed=4))


# ----------------------------------------------------------------------------- SDE-Drag
def test_sde_drag_plans_pixel_points_and_ramps_the_guidance_per_call():
    """What both hosts call: pixel points become latent cells (floor(p / f)), every model call gets
    its level's guidance (drag.guidance_ramp) as cfg=, and otherwise it is drag.sde_drag itself."""
    sig = torch.stack([TABLE[t] for t in range(5, 300, 20)][::-1])
    gm = GaussianMixture.two_class(4 * 8 * 8, sep=3.0, std=0.5)
    mix = mixture_denoiser(gm, VE, 0)
    x0 = gm.sample(1, torch.Generator().manual_seed(0), 0).reshape(1, 4, 8, 8)

    def den(x, s):
        return mix(x.reshape(1, -1), s).reshape(x.shape)

    plan = pipelines.plan_drag([(9, 17)], [(33, 41)], (64, 64), (8, 8), step_size=2.0)
    assert plan.sources == ((1, 2),) and plan.targets == ((4, 5),) and plan.substeps == 2
    seen = []

    def model(x, s, cfg=None):
        seen.append((float(s), cfg))
        return den(x, s)

    run = pipelines.Run(model=model, param=VE, sigmas=sig, latent=x0)
    out, report = pipelines.sde_drag(run, plan=plan, cfg=3.0, radius=1, generator=torch.Generator().manual_seed(1))
    ref = drag.sde_drag(den, x0, sig, VE, [(1, 2)], [(4, 5)], radius=1, step_size=2.0,
                        generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, ref)
    ramp = drag.guidance_ramp(len(sig) - 1, 3.0)
    level = dict(zip(map(float, sig[:-1]), ramp))
    assert len(seen) == report.model_calls == plan.model_calls(sig) == 2 * 2 * (len(sig) - 1)
    assert all(cfg == level[s] for s, cfg in seen)
    assert report.guidance == tuple(ramp) and report.substeps == 2


# ----------------------------------------------------------------------------- score distillation
class _Codec:
    """An identity codec in a scaled latent space: ``in_model_space`` makes the run's copy."""

    def __init__(self, log, scale=1.0):
        self.log, self.scale = log, scale

    def in_model_space(self, latent_in, latent_out):
        self.log.append("made")
        return _Codec(self.log, float(latent_in(torch.ones(())) / latent_out(torch.ones(()))))

    def encode(self, x):
        return x

    def decode(self, z):
        return z

    def release(self):
        self.log.append(f"released {self.scale:g}")


def test_score_distill_runs_each_method_with_gradients_and_releases_its_codec():
    gm = GaussianMixture.two_class(64, sep=3.0, std=0.5)
    tgt, src = mixture_denoiser(gm, VE, 1), mixture_denoiser(gm, VE, 0)
    z0 = gm.sample(1, torch.Generator().manual_seed(7), 0)
    host = Host(sigma_at=distill.sigma_from_table(TABLE), latent_in=lambda z: 2.0 * z, latent_out=lambda z: z / 2.0)
    run = pipelines.Run(model=tgt, param=VE, sigmas=torch.tensor([1.0, 0.0]), latent=z0, branches={"source": src},
                        host=host)
    levels = distill.RandomLevels(iterations=30)
    fit = distill.FitConfig(space="latent", inner_steps=1)
    make = lambda z: distill.LatentGenerator(z, lr=0.05)   # noqa: E731
    previews, log = [], []
    with torch.inference_mode():                                    # as a ComfyUI node runs
        out, gen = pipelines.score_distill(run, method="dds", make_generator=make, fit=fit, codec=_Codec(log),
                                           levels=levels, seed=8, preview=lambda i, n, g: previews.append((i, n)))
    ref = distill.LatentGenerator(z0, lr=0.05)
    distill.dds(tgt, src, ref, host.sigma_at, VE, levels, fit, source_latent=z0, rng=torch.Generator().manual_seed(8))
    assert torch.equal(gen.z.detach(), ref.z.detach()) and torch.equal(out, ref.z.detach())
    assert previews == [(i, 30) for i in range(30)]
    assert log == ["made", "released 4"]                        # the run's copy, put in the model space
    assert int(gm.classify(out)) == 1

    out, _ = pipelines.score_distill(run, method="sds", make_generator=make, fit=fit, levels=levels, seed=8)
    ref = distill.LatentGenerator(z0, lr=0.05)
    distill.sds(tgt, ref, host.sigma_at, VE, levels, fit, rng=torch.Generator().manual_seed(8))
    assert torch.equal(out, ref.z.detach())
    with pytest.raises(ValueError, match="method must be one of"):
        pipelines.score_distill(run, method="vsd", make_generator=make, fit=fit)
