"""Flow latents with a noise scale k (x = (1 - sigma) x0 + k sigma eps, newer ComfyUI's CONST):
the core's math holds on the analytic oracle for k != 1 as for k = 1."""
import pytest
import torch

from dreamsampler_core.analytic import GaussianMixture
from dreamsampler_core.inversion import ddim_invert
from dreamsampler_core.regularizers import CFGEdit
from dreamsampler_core.sampler import dream_sample
from dreamsampler_core.schedule import Parameterization

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
