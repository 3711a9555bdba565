"""CycleDiffusion's DPM-Encoder and Cycle-SDE on analytic oracles (float64, no host).

Claims checked (spec csd §0, §2.2, §3.2, §3.7):
* the "ddim" eta schedule of the DreamSampler loop is DDIM's sigma_{t->s}(eta) (variance check);
* the Gaussian KL test: with the same sampler, eta = 0 keeps KL(p~_t || p_t) constant, eta = 1 contracts it;
* the Cycle-SDE particle test: recovered noise reconstructs exactly; on an edited prior Cycle-SDE
  and SDE end near the data distribution, the ODE does not;
* DPM-Encoder round trip (posterior coupling) for ve and flow, lock-step == encode-then-decode;
* the sigma > 0 end-level guard (and why: a final step to sigma = 0 is not encodable).
"""
import math

import pytest
import torch

from dreamsampler_core import cycle
from dreamsampler_core.analytic import GaussianMixture, mixture_denoiser
from dreamsampler_core.denoiser import randn_like
from dreamsampler_core.regularizers import StepContext
from dreamsampler_core.sampler import dream_sample, eta_at
from dreamsampler_core.schedule import Parameterization, ddim_uniform, scaled_linear_sigmas

pytestmark = pytest.mark.usefixtures("one_thread")

TABLE = scaled_linear_sigmas()
VE = Parameterization("ve")




def gaussian(m0=1.5, s0=0.3):
    return GaussianMixture.gaussian(torch.tensor([m0], dtype=torch.float64), torch.tensor([s0], dtype=torch.float64))


def kl_gauss(m1, v1, m2, v2):
    return 0.5 * (v1 / v2 + (m1 - m2) ** 2 / v2 - 1.0 + math.log(v2 / v1))


def sd_grid(steps):
    return cycle.clean_end_grid(ddim_uniform(TABLE, steps), float(TABLE[0]))


def test_ddim_schedule_is_song_et_al_sigma():
    s_t, s_s = torch.tensor(3.0, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)
    abar_t, abar_s = 1 / (1 + 9.0), 1 / (1 + 0.49)
    for eta in (0.1, 0.5, 1.0):
        sig2 = eta ** 2 * (1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)
        ctx = StepContext(i=0, n=1, sigma=s_t, sigma_next=s_s, x=None, base=None, eps=None, preds={},
                          param=VE, span=1.0)
        f = eta_at(eta, "ddim", ctx)
        assert f == cycle.ddim_fraction(VE, s_t, s_s, eta)
        assert abs(f * (1 - abar_s) - sig2) < 1e-15
    # eta = 1 is the DDPM posterior variance (1 - abar_s)/(1 - abar_t) * beta_{t->s}
    f1 = cycle.ddim_fraction(VE, s_t, s_s, 1.0)
    assert abs(f1 * (1 - abar_s) - (1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)) < 1e-15


def _propagate_kl(eta, steps=50):
    """Exact KL(p~_t || p_t) along dream_sample's own steps (each step is affine + Gaussian noise)."""
    sig = sd_grid(steps)
    den = mixture_denoiser(gaussian(), VE)
    vp = float(VE.vp_scale(sig[0]))
    p, pt = (0.0, vp ** 2), (0.8 * vp, 0.5 * vp ** 2)          # VP N(0, 1) and N(0.8, 0.5)
    probe_x = torch.tensor([[0.0], [1.0], [0.0]], dtype=torch.float64)
    probe_w = torch.tensor([[0.0], [0.0], [1.0]], dtype=torch.float64)
    kls = [kl_gauss(*pt, *p)]
    for i in range(len(sig) - 1):
        out = dream_sample(den, probe_x, sig[i:i + 2], VE, eta=eta, eta_schedule="ddim",
                           noise_fn=lambda j, ctx: probe_w)
        b, a, c = float(out[0]), float(out[1] - out[0]), float(out[2] - out[0])
        p, pt = (a * p[0] + b, a * a * p[1] + c * c), (a * pt[0] + b, a * a * pt[1] + c * c)
        kls.append(kl_gauss(*pt, *p))
    return kls


def test_gaussian_kl_ode_invariant_sde_contracts():
    ode = _propagate_kl(0.0)
    assert abs(ode[0] - 0.41657359) < 1e-7
    assert max(abs(k - ode[0]) for k in ode) < 1e-9            # measured ~1e-15
    sde = _propagate_kl(1.0)
    assert all(a >= b - 1e-15 for a, b in zip(sde, sde[1:]))  # monotone contraction
    assert sde[len(sde) // 2] < 1e-2 and sde[-1] < 1e-3        # measured 4.5e-3 midway, 2.3e-4 at the end


def _drag_grid():
    ts = list(range(5, 600, 10))                               # t = 595, 585, ..., 5 (t0 = 0.6)
    return torch.stack([TABLE[t] for t in ts[::-1]])


def test_cycle_sde_particles():
    sig, m0, s0 = _drag_grid(), 1.5, 0.3
    den = mixture_denoiser(gaussian(m0, s0), VE)
    g = torch.Generator().manual_seed(0)
    x0 = gaussian(m0, s0).sample(100_000, g)
    code = cycle.dpm_encode(den, x0, sig, VE, eta=1.0, coupling="markov", generator=g)
    rec = cycle.cycle_decode(den, code, VE)
    assert float((rec - x0).abs().max()) < 1e-12               # measured 2e-15
    vp, abar = float(VE.vp_scale(sig[0])), float(VE.alpha_bar(sig[0]))
    edited = code.x_start + 0.8 * vp                           # VP shift by 0.8
    kl0 = kl_gauss(float(edited.mean()), float(edited.var()), math.sqrt(abar) * m0 * vp,
                   (abar * s0 ** 2 + 1 - abar) * vp ** 2)
    assert 0.3 < kl0 < 0.45                                    # measured 0.374
    ends = {"cycle_sde": cycle.cycle_decode(den, code, VE, x_start=edited),
            "sde": cycle.cycle_sample(den, edited.clone(), sig, VE, eta=1.0, generator=torch.Generator().manual_seed(1)),
            "ode": cycle.cycle_sample(den, edited.clone(), sig, VE, eta=0.0)}
    kl = {k: kl_gauss(float(v.mean()), float(v.var()), m0, s0 ** 2) for k, v in ends.items()}
    # measured: cycle_sde 0.007, sde 0.009, ode 0.372 (spec: 0.0086, 0.0124, 0.352)
    assert kl["cycle_sde"] < 0.02 and kl["sde"] < 0.02, kl
    assert kl["ode"] > 0.3, kl
    assert kl["ode"] > 10 * max(kl["cycle_sde"], kl["sde"]), kl


@pytest.mark.parametrize("kind", ["ve", "flow"])
@pytest.mark.parametrize("eta", [0.1, 1.0])
def test_dpm_encoder_round_trip_and_target_decode(kind, eta):
    param = Parameterization(kind)
    gm = GaussianMixture.two_class(16, sep=3.0, std=0.5)
    if kind == "ve":
        sig = sd_grid(25)[-16:]                                # strength ~0.6
    else:
        sig = cycle.clean_end_grid(torch.linspace(1.0, 0.0, 26, dtype=torch.float64), 1e-3)
    g = torch.Generator().manual_seed(3)
    x0 = gm.sample(8, g, cls_index=0)
    src, tgt = mixture_denoiser(gm, param, 0), mixture_denoiser(gm, param, 1)
    code = cycle.dpm_encode(src, x0, sig, param, eta=eta, generator=g)
    assert code.steps == len(sig) - 1 and code.nbytes == (2 * len(sig) - 1) * x0.numel() * 8
    rec = cycle.cycle_decode(src, code, param)
    assert float((rec - x0).abs().max()) < 1e-9                # measured ~1e-14
    assert all(torch.isfinite(n).all() for n in code.noises)
    edited = cycle.cycle_decode(tgt, code, param)              # CycleDiffusion: decode with the target
    assert (gm.classify(edited) == 1).float().mean() >= 0.75


def test_lockstep_source_equals_encode_then_decode():
    gm = GaussianMixture.two_class(16, sep=3.0, std=0.5)
    sig = sd_grid(20)[-13:]
    src, tgt = mixture_denoiser(gm, VE, 0), mixture_denoiser(gm, VE, 1)
    x0 = gm.sample(4, torch.Generator().manual_seed(5), cls_index=0)
    code = cycle.dpm_encode(src, x0, sig, VE, eta=0.3, generator=torch.Generator().manual_seed(9))
    a = cycle.cycle_decode(tgt, code, VE)
    g = torch.Generator().manual_seed(9)
    x_start = VE.compose(x0, randn_like(x0, g), sig[0])      # the encoder's first draw
    provider = cycle.lockstep_source(src, x0, sig, VE, x_start, eta=0.3, generator=g)
    b = cycle.cycle_sample(tgt, x_start, sig, VE, eta=0.3, noise_fn=provider)
    assert torch.allclose(a, b, atol=1e-12)
    assert float((a - x0).abs().max()) > 0.1                   # the target decode did edit


def test_mask_reset_keeps_unedited_region_exact():
    gm = GaussianMixture.two_class(16, sep=3.0, std=0.5)
    sig = _drag_grid()[-20:]
    den, tgt = mixture_denoiser(gm, VE, 0), mixture_denoiser(gm, VE, 1)
    x0 = gm.sample(2, torch.Generator().manual_seed(1), cls_index=0).reshape(2, 1, 4, 4)
    code = cycle.dpm_encode(lambda x, s: den(x.reshape(2, -1), s).reshape(x.shape), x0, sig, VE, eta=1.0,
                            coupling="markov", generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    mask[..., :2, :] = 1.0
    out = cycle.cycle_decode(lambda x, s: tgt(x.reshape(2, -1), s).reshape(x.shape), code, VE,
                             x_start=code.x_start + 0.5, mask=mask)
    assert torch.equal(out[..., 2:, :], x0[..., 2:, :])        # reset to the forward path, exact at the end
    assert float((out[..., :2, :] - x0[..., :2, :]).abs().max()) > 0.1


def test_end_level_guard():
    den = mixture_denoiser(gaussian(), VE)
    x0 = torch.ones(4, 1, dtype=torch.float64)
    bad = ddim_uniform(TABLE, 10)                              # ComfyUI grids end at sigma = 0
    with pytest.raises(ValueError, match="sigma > 0"):
        cycle.dpm_encode(den, x0, bad, VE, eta=1.0)
    with pytest.raises(ValueError, match="sigma = 0"):
        cycle.recover_noise(x0, x0, x0, bad[-2], bad[-1], VE, 1.0)
    with pytest.raises(ValueError, match="eta"):
        cycle.dpm_encode(den, x0, cycle.clean_end_grid(bad, float(TABLE[0])), VE, eta=0.0)
    with pytest.raises(ValueError, match="Markov"):
        cycle.forward_trajectory(x0, cycle.clean_end_grid(bad, float(TABLE[0])), VE, eta=0.5, coupling="markov")
    good = cycle.clean_end_grid(bad, float(TABLE[0]))
    assert float(good[-1]) == float(TABLE[0]) and len(good) == len(bad) and cycle.end_level_error(good) is None
    # a grid whose last level is already the floor just drops the 0 (no zero-length step)
    assert len(cycle.clean_end_grid(torch.cat([good, good.new_zeros(1)]), float(TABLE[0]))) == len(good)


def test_why_the_guard_exists_final_step_to_zero_is_not_encodable():
    """Encode all but the last step, decode the last one deterministically (what a 0-ending grid
    allows): the residual of the last step is lost and the reconstruction is far from exact."""
    gm = GaussianMixture.two_class(16, sep=3.0, std=0.5)
    den = mixture_denoiser(gm, VE, 0)
    good = sd_grid(10)
    x0 = gm.sample(8, torch.Generator().manual_seed(0), 0)
    code = cycle.dpm_encode(den, x0, good, VE, eta=1.0, generator=torch.Generator().manual_seed(1))
    assert float((cycle.cycle_decode(den, code, VE) - x0).abs().max()) < 1e-9
    zero_end = torch.cat([good[:-1], good.new_zeros(1)])
    x = dream_sample(den, code.x_start.clone(), zero_end, VE, eta=1.0,
                     eta_schedule="ddim", noise_fn=cycle.recorded_noise(code.noises))
    assert float((x - x0).abs().max()) > 0.05
