"""The regularizers (``dreamsampler_core.regularizers``) on analytic Gaussian-mixture oracles
(float64, no host).

Claims checked (spec dreamsampler §1.3, §2.1, §2.2):
* the CFG-edit closed form equals an explicit DDS gradient step (identity 1.3b), for ve and flow;
* an edit toward class B moves class-A samples into class B; strength 0 reconstructs;
* the 'invariant' strength gives the same edit at 20, 50 and 200 steps, the 'paper' one does not;
* with a source prompt the edit is DDS with a source text.
(From test_dream_math.py; the edits run through ``inversion.ddim_invert`` and ``sampler.dream_sample``.)
"""
import pytest
import torch

from dreamsampler_core.analytic import mixture_denoiser
from dreamsampler_core.inversion import ddim_invert
from dreamsampler_core.regularizers import REFERENCE_SPAN, CFGEdit, StepContext
from dreamsampler_core.sampler import dream_sample
from dreamsampler_core.schedule import Parameterization
from support.oracle_grids import grid, time_grid


@pytest.mark.parametrize("kind", ["ve", "flow"])
@pytest.mark.parametrize("omega", [0.2, 3.0])
def test_cfg_edit_closed_form_equals_explicit_dds_step(gm, kind, omega):
    """Identity 1.3b: one DDS gradient step from the null Tweedie with gamma*w = sqrt(abar(1-abar))
    equals the paper's CFG-on-Tweedie update with scale omega*abar_t."""
    p = Parameterization(kind)
    sigma = torch.tensor(0.8 if kind == "ve" else 0.4, dtype=torch.float64)
    x = gm.sample(4, torch.Generator().manual_seed(3), 0) * p.signal(sigma) + \
        p.noise(sigma) * torch.randn(4, gm.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    d_null = mixture_denoiser(gm, p)(x, sigma)
    d_tgt = mixture_denoiser(gm, p, 1)(x, sigma)
    # explicit DDS: loss = w * <sg[eps_tgt^omega - eps_null], z>, z_t^src = z_t (same noise, same t)
    eps_null, eps_tgt = p.eps(x, d_null, sigma), p.eps(x, d_tgt, sigma)
    abar = p.alpha_bar(sigma)
    z = d_null.clone().requires_grad_(True)
    loss = ((omega * (eps_tgt - eps_null)).detach() * z).sum()   # w folded into the step size below
    (grad,) = torch.autograd.grad(loss, z)
    gamma_w = torch.sqrt(abar * (1 - abar))
    dds = d_null - gamma_w * grad
    ctx = StepContext(i=0, n=1, sigma=sigma, sigma_next=sigma * 0, x=x, base=d_null, eps=eps_null,
                      preds={"target": d_tgt}, param=p, span=REFERENCE_SPAN)
    closed = CFGEdit(strength=omega, schedule="paper")(d_null, ctx)
    assert torch.allclose(closed, dds, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(closed, d_null)


_INVERTED = {}


def _inverted(gm, x0, kind, steps):
    """The null-prompt inversion (refine 8) of x0 on the ``steps`` grid, once per module's fixtures
    (the edits below differ only after it)."""
    key = (id(gm), id(x0), kind, steps)
    if key not in _INVERTED:
        p = Parameterization(kind)
        _INVERTED[key] = ddim_invert(mixture_denoiser(gm, p), x0, grid(kind, steps), p, refine=8)
    return _INVERTED[key].clone()


def _edit(gm, x0, kind, steps, strength, schedule="invariant"):
    p = Parameterization(kind)
    sig = grid(kind, steps)
    spans, times = time_grid(kind, sig)
    null, tgt = mixture_denoiser(gm, p), mixture_denoiser(gm, p, 1)
    xt = _inverted(gm, x0, kind, steps)
    return dream_sample(null, xt, sig, p, extras={"target": tgt},
                        regularizers=[CFGEdit(strength=strength, schedule=schedule)], spans=spans, times=times)


@pytest.mark.parametrize("kind", ["ve", "flow"])
def test_edit_moves_class_a_into_class_b_and_strength_zero_reconstructs(gm, x0, kind):
    assert (gm.classify(x0) == 0).all()
    rec = _edit(gm, x0, kind, 50, 0.0)
    assert float((rec - x0).abs().max()) < 1e-6
    edited = _edit(gm, x0, kind, 50, 0.5)
    assert (gm.classify(edited) == 1).all()
    # the edit keeps the sample's own structure: closer to the source than a fresh class-B sample is
    fresh = gm.sample(16, torch.Generator().manual_seed(9), cls_index=1)
    assert (edited - x0).norm() < (fresh - x0).norm()


def test_invariant_strength_is_step_count_invariant_and_paper_is_not(gm, x0):
    for strength in (0.2, 1.0):
        inv = {n: _edit(gm, x0, "ve", n, strength, "invariant") for n in (20, 50, 200)}
        pap = {n: _edit(gm, x0, "ve", n, strength, "paper") for n in (20, 200)}
        scale = (inv[200] - x0).norm()
        for n in (20, 50):
            assert (inv[n] - inv[200]).norm() / scale < 0.05
        assert (pap[20] - pap[200]).norm() / (pap[200] - x0).norm() > 0.2
        # on the official 200-step ddim_uniform grid both parameterizations agree
        assert (inv[200] - pap[200]).norm() / scale < 1e-3


def _edit_src(gm, x0, steps, strength):
    """Edit class 0 -> 1 with the source prompt connected: direction x0_target - x0_source."""
    p = Parameterization("ve")
    sig = grid("ve", steps)
    spans, times = time_grid("ve", sig)
    null, src, tgt = mixture_denoiser(gm, p), mixture_denoiser(gm, p, 0), mixture_denoiser(gm, p, 1)
    xt = _inverted(gm, x0, "ve", steps)
    return dream_sample(null, xt, sig, p, extras={"target": tgt, "source": src},
                        regularizers=[CFGEdit(strength=strength, source="source")], spans=spans, times=times)


def test_source_prompt_edit_is_dds_with_a_source_text_reconstructs_and_is_step_count_invariant(gm, x0):
    """With a source prompt the step is z + lambda_t (x0_tgt - x0_src) (spec §1.3b with c_src = the
    source text), strength 0 still reconstructs (the base renoises), and the 'invariant' strength
    gives the same edit at 20, 50 and 200 steps."""
    p = Parameterization("ve")
    sigma = torch.tensor(0.8, dtype=torch.float64)
    x = x0[:4] + sigma * torch.randn(4, gm.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    d_null, d_src, d_tgt = (mixture_denoiser(gm, p, c)(x, sigma) for c in (None, 0, 1))
    ctx = StepContext(i=0, n=1, sigma=sigma, sigma_next=sigma * 0, x=x, base=d_null, eps=p.eps(x, d_null, sigma),
                      preds={"target": d_tgt, "source": d_src}, param=p, span=REFERENCE_SPAN)
    w = 0.3 * float(p.alpha_bar(sigma))
    assert torch.allclose(CFGEdit(strength=0.3, schedule="paper", source="source")(d_null, ctx),
                          d_null + w * (d_tgt - d_src), atol=1e-12)
    assert not torch.allclose(d_src, d_null)          # a different direction from the null-source edit
    assert float((_edit_src(gm, x0, 50, 0.0) - x0).abs().max()) < 1e-6
    edited = {n: _edit_src(gm, x0, n, 0.2) for n in (20, 50, 200)}
    assert (gm.classify(edited[50]) == 1).all()
    scale = (edited[200] - x0).norm()
    for n in (20, 50):
        assert (edited[n] - edited[200]).norm() / scale < 0.05
