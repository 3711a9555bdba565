"""Parameterizations against ComfyUI's formulas (spec comfyui §A4) and the DDIM grid (spec dreamsampler §4);
flow latents with a noise scale k (x = (1 - sigma) x0 + k sigma eps, newer ComfyUI's CONST): the core's
math holds on the analytic oracle for k != 1 as for k = 1."""
import pytest
import torch

from dreamsampler_core.analytic import GaussianMixture
from dreamsampler_core.inversion import ddim_invert
from dreamsampler_core.regularizers import CFGEdit
from dreamsampler_core.sampler import dream_sample

from dreamsampler_core.schedule import (Parameterization, ddim_uniform, discrete_timestep, normalized_times,
                                        scaled_linear_sigmas)


def test_sd_schedule_matches_known_alphas():
    sig = scaled_linear_sigmas()
    abar = 1 / (1 + sig ** 2)
    assert abs(float(abar[0]) - 0.99915) < 1e-5          # SD1.5 final_alpha_cumprod (spec §2.1)
    assert abs(float(abar[-1]) - 0.0047) < 2e-4


def test_ddim_uniform_200_is_the_official_grid():
    sig = scaled_linear_sigmas()
    grid = ddim_uniform(sig, 200)
    t = discrete_timestep(sig, grid[:-1]).round().long()
    assert t[0] == 996 and t[-1] == 1 and (t[:-1] - t[1:] == 5).all()
    assert float(grid[-1]) == 0.0
    u = normalized_times(grid, lambda s: discrete_timestep(sig, s))
    assert float(u[-1]) == pytest.approx(-4.0)              # the official last step goes to t = -4


@pytest.mark.parametrize("kind", ["ve", "flow"])
def test_compose_eps_x0_are_inverse(kind):
    p = Parameterization(kind)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    for s in (0.1, 0.5, 0.9, 3.0 if kind == "ve" else 0.99):
        sigma = torch.tensor(s, dtype=torch.float64)
        x = p.compose(x0, eps, sigma)
        assert torch.allclose(p.eps(x, x0, sigma), eps)
        assert torch.allclose(p.x0(x, eps, sigma), x0)
        # VP latent has unit-variance signal+noise decomposition: abar + (1 - abar) = 1
        z_scale = p.vp_scale(sigma)
        assert torch.allclose((p.signal(sigma) / z_scale) ** 2 + (p.noise(sigma) / z_scale) ** 2,
                              torch.tensor(1.0, dtype=torch.float64))


def test_alpha_bar_ve_is_one_over_one_plus_sigma_squared():
    p = Parameterization("ve")
    s = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    assert torch.allclose(p.alpha_bar(s), 1 / (1 + s ** 2))


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown parameterization"):
        Parameterization("edm")


# ----------------------------------------------------------------------------- a flow noise scale k
F64 = torch.float64


@pytest.mark.parametrize("k", [1.0, 2.0, 0.5])
def test_refined_inversion_round_trip_and_null_edit_with_a_noise_scale(k):
    param = Parameterization("flow", noise_scale=k)
    gm = GaussianMixture.two_class(16, sep=3.0, std=0.5)
    null = lambda x, s: gm.denoise(x, s, param, gm.class_weights(None))        # noqa: E731
    tgt = lambda x, s: gm.denoise(x, s, param, gm.class_weights(1))            # noqa: E731
    sigmas = torch.cat([torch.linspace(0.95, 0.05, 20, dtype=F64), torch.zeros(1, dtype=F64)])
    x0 = gm.sample(3, torch.Generator().manual_seed(0), 0)
    x_t = ddim_invert(null, x0, sigmas, param, refine=8)
    back = dream_sample(null, x_t, sigmas, param)
    plain = dream_sample(null, ddim_invert(null, x0, sigmas, param), sigmas, param)
    err, err_plain = float((back - x0).abs().max()), float((plain - x0).abs().max())
    assert err < 1e-4 and err < 0.05 * err_plain, (err, err_plain)
    # strength 0 is the reconstruction; a real strength moves toward the target class
    same = dream_sample(null, x_t, sigmas, param, extras={"target": tgt}, regularizers=[CFGEdit(strength=0.0)])
    assert torch.equal(same, back)
    edited = dream_sample(null, x_t, sigmas, param, extras={"target": tgt}, regularizers=[CFGEdit(strength=0.5)])
    assert (gm.classify(edited) == 1).all() and (gm.classify(back) == 0).all()


def test_noise_scale_is_validated():
    with pytest.raises(ValueError, match="noise_scale"):
        Parameterization("flow", noise_scale=0.0)
    with pytest.raises(ValueError, match="ve latent"):
        Parameterization("ve", noise_scale=2.0)
    p = Parameterization("flow", noise_scale=2.0)
    assert float(p.noise(torch.tensor(0.5))) == 1.0 and float(p.signal(torch.tensor(0.5))) == 0.5
