"""Issue 23: the peers (tests/support/peers.py, test-only nodes in tests/support/peer_nodes.py) each
checked against an identity of its own paper on the analytic flow oracle (exact E[x0 | x] of a
Gaussian mixture as a ComfyUI FLOW model, ModelSamplingSD3 shift 3, `simple` scheduler), run in the
in-process ComfyUI through the nodes; model rows counted by the test-only row-counting wrapper."""
from __future__ import annotations

import pytest
import torch
from dreamsampler_pack.dreamsampler_core.analytic import GaussianMixture
from support import peer_nodes as P
from support.inprocess import run

from tools.tiny_models import class_conditioning, oracle_model

SHAPE = (2, 4, 4, 4)


@pytest.fixture(scope="module")
def oracle(pack):
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    gm = GaussianMixture.two_class(64, sep=3.0, std=0.5)
    with torch.inference_mode():
        model = ModelSamplingSD3().patch(oracle_model(gm, "flow"), 3.0)[0]
    x = torch.stack([gm.means[0] + gm.stds[0] * torch.randn(64, generator=torch.Generator().manual_seed(s),
                                                            dtype=gm.means.dtype) for s in range(2)])
    return model, {"samples": x.float().reshape(SHAPE)}


def sigmas(model, steps, denoise=1.0):
    from comfy_extras.nodes_custom_sampler import BasicScheduler
    return run(BasicScheduler, model, "simple", steps, denoise)[0]


def c(k):
    return class_conditioning(k)


def test_flowedit_with_the_target_equal_to_the_source_returns_the_source_exactly(oracle):
    model, lat = oracle
    sg = sigmas(model, 28)
    with torch.inference_mode():
        same = P.TestFlowEdit().edit(model, source=c(0), target=c(0), negative=c(None), latent_image=lat, sigmas=sg,
                                     n_max=24, n_min=0, n_avg=1, source_cfg=3.5, target_cfg=3.5, seed=0)[0]["samples"]
        moved = P.TestFlowEdit().edit(model, source=c(0), target=c(1), negative=c(None), latent_image=lat, sigmas=sg,
                                      n_max=24, n_min=0, n_avg=1, source_cfg=1.0, target_cfg=1.5, seed=0)[0]["samples"]
    assert torch.equal(same, lat["samples"])
    assert (moved - lat["samples"]).norm() > 0.3 * lat["samples"].norm()


def test_rf_inversion_gamma_0_eta_0_is_the_core_unsampler_recipe(oracle):
    """gamma = 0: the Euler inversion; eta = 0: plain Euler sampling; together the core recipe
    (FlipSigmas + euler with the null prompt, then euler with the target), at denoise 0.8."""
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import FlipSigmas
    model, lat = oracle
    sg = sigmas(model, 16, 0.8)
    with torch.inference_mode():
        ours = P.TestRFInversion().edit(model, null=c(None), target=c(1), negative=c(None), latent_image=lat, sigmas=sg,
                                        gamma=0.0, eta=0.0, eta_start=0, eta_stop=6, cfg=2.0, seed=0)[0]["samples"]
        x = lat["samples"]
        inv = comfy.samplers.CFGGuider(model)
        inv.set_conds(c(None), c(None))
        up = run(FlipSigmas, sg.clone())[0]
        euler = comfy.samplers.sampler_object("euler")
        z = inv.sample(torch.zeros_like(x), x, euler, up, seed=0)
        tar = comfy.samplers.CFGGuider(model)
        tar.set_conds(c(1), c(None))
        tar.set_cfg(2.0)
        core = tar.sample(torch.zeros_like(x), z, euler, sg, seed=0)
        controlled = P.TestRFInversion().edit(model, null=c(None), target=c(1), negative=c(None), latent_image=lat,
                                              sigmas=sg, gamma=0.5, eta=0.0, eta_start=0, eta_stop=6, cfg=2.0,
                                              seed=0)[0]
    err = (ours - core).abs().max()
    assert err < 2e-3 * x.abs().max(), err          # FlipSigmas' 1e-4 start level scales the core's by 1 - 1e-4
    assert (controlled["samples"] - core).abs().max() > 100 * err


def test_rf_inversion_eta_1_over_the_whole_reverse_grid_returns_the_source(oracle):
    model, lat = oracle
    sg = sigmas(model, 12)
    with torch.inference_mode():
        out, inv = P.TestRFInversion().edit(model, null=c(None), target=c(1), negative=c(None), latent_image=lat,
                                            sigmas=sg, gamma=0.5, eta=1.0, eta_start=0, eta_stop=12, cfg=3.0, seed=0)
    assert torch.allclose(out["samples"], lat["samples"], atol=1e-5)
    assert (inv["samples"] - lat["samples"]).norm() > lat["samples"].norm()


def _round_trip(model, lat, solver, steps):
    with torch.inference_mode():
        out = P.TestRFSolverEdit().edit(model, null=c(None), target=c(None), negative=c(None), latent_image=lat,
                                        sigmas=sigmas(model, steps), solver=solver, cfg=1.0)[0]
    return float((out["samples"] - lat["samples"]).norm() / lat["samples"].norm())


@pytest.mark.parametrize("solver", ["rf_solver", "fireflow", "euler"])
def test_round_trip_error_falls_with_the_solver_order(oracle, solver):
    """Inversion then sampling with the null prompt over the same grid (32 -> 64 steps): Euler's error
    halves (first order), RF-Solver's and FireFlow's falls at least 4x (second order; measured 7.9x
    and 7.6x: the round trip over the same grid cancels part of the leading error)."""
    model, lat = oracle
    e1, e2 = _round_trip(model, lat, solver, 32), _round_trip(model, lat, solver, 64)
    ratio = e1 / e2
    if solver == "euler":
        assert 1.6 < ratio < 2.4, (e1, e2, ratio)
    else:
        assert ratio > 3.6 and e2 < 1e-3, (solver, e1, e2, ratio)     # Euler: 7.7e-2 at 64 steps


def test_model_rows_counted_by_the_wrapper(oracle):
    """Rows per edit (batch rows through the model, per source): FlowEdit n_max (1 + 2) with source cfg
    1 and target cfg > 1; RF-Solver 2 steps (1 + 2); FireFlow (steps + 1) (1 + 2); RF-Inversion steps (1 + 2)."""
    model, lat = oracle
    n, steps = SHAPE[0], 10
    sg = sigmas(model, steps)
    cases = {"flowedit": (lambda m: P.TestFlowEdit().edit(m, source=c(0), target=c(1), negative=c(None),
                                                          latent_image=lat, sigmas=sg, n_max=4, n_min=0, n_avg=1,
                                                          source_cfg=1.0, target_cfg=1.5, seed=0),
                          4 * 3),
             "rf_solver": (lambda m: P.TestRFSolverEdit().edit(m, null=c(None), target=c(1), negative=c(None),
                                                               latent_image=lat, sigmas=sg, solver="rf_solver",
                                                               cfg=2.0),
                           2 * steps * 3),
             "fireflow": (lambda m: P.TestRFSolverEdit().edit(m, null=c(None), target=c(1), negative=c(None),
                                                              latent_image=lat, sigmas=sg, solver="fireflow", cfg=2.0),
                          (steps + 1) * 3),
             "rf_inversion": (lambda m: P.TestRFInversion().edit(m, null=c(None), target=c(1), negative=c(None),
                                                                 latent_image=lat, sigmas=sg, gamma=0.5, eta=0.9,
                                                                 eta_start=0, eta_stop=3, cfg=2.0, seed=0), steps * 3)}
    for key, (edit, rows) in cases.items():
        counted = P.TestCountRows().patch(model, key)[0]
        with torch.inference_mode():
            edit(counted)
        assert P.ROWS[key] == n * rows, (key, P.ROWS[key], n * rows)
