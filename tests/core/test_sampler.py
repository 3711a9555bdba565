"""The sampler loop (``dreamsampler_core.sampler``) on an analytic Gaussian-mixture oracle
(float64, no host): the eta noise is seeded, and the eta schedules do what the tooltip says.
(From test_dream_math.py; the eta=0 loop equal to DDIM is checked in test_inversion.py.)
"""
import pytest
import torch

from dreamsampler_core.analytic import mixture_denoiser
from dreamsampler_core.inversion import ddim_invert
from dreamsampler_core.regularizers import StepContext
from dreamsampler_core.sampler import dream_sample
from dreamsampler_core.schedule import Parameterization
from support.oracle_grids import grid


def test_eta_noise_is_seeded_and_changes_the_sample(gm, x0):
    p = Parameterization("ve")
    sig = grid("ve", 20)
    den = mixture_denoiser(gm, p)
    xt = ddim_invert(den, x0, sig, p)
    run = lambda seed, eta: dream_sample(den, xt, sig, p, eta=eta,
                                         generator=torch.Generator().manual_seed(seed))
    a, b, c = run(1, 0.5), run(1, 0.5), run(2, 0.5)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.allclose(run(1, 0.0), run(2, 0.0))


def test_eta_schedules_do_what_the_tooltip_says(gm, x0):
    """'constant' eta = 1 replaces the base noise entirely: the next latent is the Tweedie estimate
    plus fresh noise, whatever the current latent's noise; 'ddim' eta = 1 is the DDPM posterior:
    fresh fraction sigma_{t->s}^2 / (1 - abar_s) = (1 - abar_t / abar_s) / (1 - abar_t), and eta = 0
    is deterministic DDIM."""
    from dreamsampler_core.sampler import eta_at
    p = Parameterization("ve")
    sig = grid("ve", 10)
    den = mixture_denoiser(gm, p)
    xi = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=x0.dtype)
    x = x0 + sig[2] * torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=x0.dtype)
    step = lambda x_, eta, sched: dream_sample(den, x_, sig[2:4], p, eta=eta,
                                               eta_schedule=sched, noise_fn=lambda i, ctx: xi)
    assert torch.allclose(step(x, 1.0, "constant"), den(x, sig[2]) + sig[3] * xi, atol=1e-12)
    ctx = StepContext(i=0, n=1, sigma=sig[2], sigma_next=sig[3], x=x, base=None, eps=None, preds={}, param=p,
                      span=0.1)
    a_t, a_s = ctx.alpha_bar, ctx.alpha_bar_next
    assert eta_at(1.0, "ddim", ctx) == pytest.approx((1 - a_t / a_s) / (1 - a_t))
    assert 0.0 < eta_at(1.0, "ddim", ctx) < 0.9 and eta_at(0.0, "ddim", ctx) == 0.0   # keeps base noise


def _counting(den):
    calls = []

    def model(x, sigma, **kw):
        calls.append(float(sigma))
        return den(x, sigma, **kw)
    return model, calls


@pytest.mark.parametrize("resample", [1, 2])
def test_resample_is_the_step_taken_again_at_the_same_level(gm, x0, resample):
    """resample R: after each step's estimate z (not the last), x = a(σ) z + s(σ) ξ at the same σ and
    the step again. With eta 1 ('constant': the next latent is z plus fresh noise) and no regularizer
    that is exactly the plain sampler on the grid with every level but the last visited R + 1 times,
    fed the same noise draws; R more model calls per step."""
    p = Parameterization("ve")
    sig = grid("ve", 6)
    den = mixture_denoiser(gm, p)
    draws = torch.randn((64,) + tuple(x0.shape), generator=torch.Generator().manual_seed(3), dtype=x0.dtype)

    def noise():
        it = iter(draws)
        return lambda i, ctx: next(it)
    x = x0 + sig[0] * draws[-1]
    model, calls = _counting(den)
    out = dream_sample(model, x, sig, p, eta=1.0, noise_fn=noise(), resample=resample)
    n = len(sig) - 1
    assert len(calls) == n + resample * (n - 1)
    repeated = torch.cat([sig[:-2].repeat_interleave(resample + 1), sig[-2:]])
    ref = dream_sample(den, x, repeated, p, eta=1.0, noise_fn=noise())
    assert torch.allclose(out, ref, atol=1e-12)
    assert not torch.allclose(out, dream_sample(den, x, sig, p, eta=1.0, noise_fn=noise()))
    assert torch.equal(dream_sample(den, x, sig, p, eta=1.0, noise_fn=noise(), resample=0),
                       dream_sample(den, x, sig, p, eta=1.0, noise_fn=noise()))


def test_resample_keeps_a_masked_source_exactly(gm, x0):
    """With a kept region (KeepKnown, as a LATENT's noise mask) the resampled sampler still ends on
    the source outside the mask (to rounding, as the plain one does), and repaints inside it."""
    from dreamsampler_core.regularizers import KeepKnown
    p = Parameterization("ve")
    sig = grid("ve", 8)
    den = mixture_denoiser(gm, p)
    src = x0.reshape(16, 1, 8, 8)
    mask = torch.zeros(1, 1, 8, 8, dtype=src.dtype)
    mask[..., 4:] = 1.0
    model = lambda x, s: den(x.reshape(16, 64), s).reshape(x.shape)
    x = src + sig[0] * torch.randn(src.shape, generator=torch.Generator().manual_seed(6), dtype=src.dtype)
    out = dream_sample(model, x, sig, p, eta=1.0, regularizers=(KeepKnown(src, mask),), resample=1,
                       generator=torch.Generator().manual_seed(2))
    assert torch.allclose(out[..., :4], src[..., :4], rtol=0, atol=1e-12)
    assert (out[..., 4:] - src[..., 4:]).abs().max() > 0.1
