"""The guarded fixed-point refinement of DDIM inversion (issue 18), on analytic oracles.

* where the refinement map contracts (the exact mixture denoiser) the guard changes nothing: the
  same iterates as the plain loop x <- x - c r, every iteration counted as helping;
* on a model whose sigma = 1 map is expansive (support/expansive.py) the plain loop runs away to
  NaN, the guarded one stays finite, never has a larger reverse-step residual than the plain step,
  and the round trip is better than plain inversion;
* NaN predictions are discarded per batch item;
* DDIM inversion + eta=0 reconstruction is exact up to float error once each inversion step is
  solved (fixed-point refinement), and the DreamSampler loop with no regularizer is that same DDIM;
  plain DDIM inversion is not, and refinement lowers its error (from test_dream_math.py).
"""
import pytest
import torch

from dreamsampler_core.analytic import mixture_denoiser
from dreamsampler_core.inversion import (RefineStats, ddim_invert, ddim_reconstruct, invert_step, refine_gain,
                                         step_residual)
from dreamsampler_core.sampler import dream_sample
from dreamsampler_core.schedule import Parameterization
from support import expansive
from support.oracle_grids import grid


def levels(sigmas):
    """(s_lo, s_hi) of each inversion step, bottom up."""
    n = len(sigmas) - 1
    return [(sigmas[n - k], sigmas[n - k - 1]) for k in range(n)]


def unguarded(den, x_lo, s_lo, s_hi, p, iters):
    """The refinement before issue 18: plain step, then x <- x - c r a fixed number of times."""
    x = invert_step(den, x_lo, s_lo, s_hi, p)
    c = refine_gain(s_lo, s_hi, p)
    for _ in range(iters):
        x = x - c * step_residual(den, x, x_lo, s_lo, s_hi, p)
    return x


@pytest.mark.parametrize("kind", ["ve", "flow"])
def test_guard_is_transparent_where_the_map_contracts(gm, kind):
    p = Parameterization(kind)
    den = mixture_denoiser(gm, p)
    x = gm.sample(3, torch.Generator().manual_seed(1), cls_index=0)
    calls = [0]

    def counted(x_, s):
        calls[0] += 1
        return den(x_, s)

    for s_lo, s_hi in levels(grid(kind, 10)):
        stats, before = RefineStats(), calls[0]
        guarded = invert_step(counted, x, s_lo, s_hi, p, refine=3, stats=stats)
        plain_loop = unguarded(den, x, s_lo, s_hi, p, 3)
        if kind == "flow" and float(s_hi) == 1.0:
            # D(x, 1) is the prior mean whatever x: one iteration solves the step to round-off, after
            # which the residual stops shrinking and the guard keeps the best iterate
            assert torch.allclose(guarded, plain_loop, rtol=0.0, atol=1e-12)
            assert 3 <= stats.helped < stats.requested and calls[0] - before <= 1 + 1 + 3
        else:
            assert torch.equal(guarded, plain_loop)
            assert stats.helped == stats.requested == 3 * 3
            assert calls[0] - before == 1 + 1 + 3          # plain step, its residual, one per iteration
        assert stats.non_finite == 0
        x = guarded


def test_expansive_model_unguarded_diverges_guarded_is_finite_and_no_worse(one_thread):
    p = Parameterization("flow")
    d = 64
    gm = expansive.mean_free_mixture(d)
    den = expansive.expansive_denoiser(mixture_denoiser(gm, p))
    x0 = expansive.sample(gm, 2, 1, (d,))
    sig = grid("flow", 12)
    (s_lo, s_hi) = levels(sig)[-1]                    # the step into sigma = 1
    assert float(s_hi) == 1.0
    x_lo = ddim_invert(den, x0, sig[1:], p, refine=12)
    # the plain fixed-point map is expansive: its derivative along the mean direction is ~ -10
    plain = invert_step(den, x_lo, s_lo, s_hi, p)
    r_plain = step_residual(den, plain, x_lo, s_lo, s_hi, p).flatten(1).norm(dim=1)
    runaway = unguarded(den, x_lo, s_lo, s_hi, p, 30)
    assert not torch.isfinite(runaway).any()
    for iters in (1, 12, 30, 50):
        stats = RefineStats()
        x_hi = invert_step(den, x_lo, s_lo, s_hi, p, refine=iters, stats=stats)
        assert torch.isfinite(x_hi).all()
        r = step_residual(den, x_hi, x_lo, s_lo, s_hi, p).flatten(1).norm(dim=1)
        assert (r <= r_plain).all() and (r < 1e-2 * r_plain).all(), (r, r_plain)
        assert 1 <= stats.helped < stats.requested or iters == 1
    # the whole round trip: better than plain inversion, finite where the unguarded one is not
    st = RefineStats()
    refined = ddim_reconstruct(den, ddim_invert(den, x0, sig, p, refine=30, stats=st), sig, p)
    plain_rt = ddim_reconstruct(den, ddim_invert(den, x0, sig, p), sig, p)
    err, err_plain = float((refined - x0).norm()), float((plain_rt - x0).norm())
    assert err < 1e-3 * err_plain, (err, err_plain)
    assert st.helped < st.requested


def test_non_finite_predictions_are_discarded_per_batch_item(gm):
    p = Parameterization("ve")
    den = mixture_denoiser(gm, p)
    x = gm.sample(2, torch.Generator().manual_seed(2), cls_index=0)
    s_lo, s_hi = levels(grid("ve", 10))[4]
    plain_calls = [0]

    def nan_for_item_1(x_, s):
        plain_calls[0] += 1
        out = den(x_, s)
        if plain_calls[0] > 2:                       # after the plain step and its residual
            out[1] = float("nan")
        return out

    stats = RefineStats()
    out = invert_step(nan_for_item_1, x, s_lo, s_hi, p, refine=4, stats=stats)
    assert torch.equal(out[1], invert_step(den, x, s_lo, s_hi, p)[1])          # item 1: the plain step
    assert torch.equal(out[0], unguarded(den, x, s_lo, s_hi, p, 4)[0])         # item 0: fully refined
    assert stats.non_finite == 1 and stats.helped == 4


@pytest.mark.parametrize("kind", ["ve", "flow"])
def test_refined_inversion_round_trip_is_exact_in_float64(gm, x0, kind):
    p = Parameterization(kind)
    sig = grid(kind, 50)
    den = mixture_denoiser(gm, p)
    plain = ddim_reconstruct(den, ddim_invert(den, x0, sig, p), sig, p)
    exact = ddim_reconstruct(den, ddim_invert(den, x0, sig, p, refine=12), sig, p)
    err_plain = float((plain - x0).abs().max())
    err_exact = float((exact - x0).abs().max())
    assert err_exact < 1e-8, err_exact          # float64 round trip
    assert err_plain > 1e3 * err_exact           # plain DDIM inversion is only approximate
    # the DreamSampler loop with no regularizer and eta=0 is that same DDIM
    xt = ddim_invert(den, x0, sig, p, refine=12)
    loop = dream_sample(den, xt, sig, p)
    assert torch.allclose(loop, exact, atol=1e-12)


@pytest.mark.parametrize("kind", ["ve", "flow"])
def test_refinement_lowers_round_trip_error_at_equal_steps(gm, x0, kind):
    p = Parameterization(kind)
    den = mixture_denoiser(gm, p)
    for steps in (10, 25):
        sig = grid(kind, steps)
        errs = [float((ddim_reconstruct(den, ddim_invert(den, x0, sig, p, refine=r), sig, p) - x0).norm())
                for r in (0, 1, 3)]
        assert errs[0] > errs[1] > errs[2], errs
