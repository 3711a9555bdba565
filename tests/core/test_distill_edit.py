"""dreamsampler_core.distill.distill_edit (issue 23's inversion-free edit) on an elementwise
Gaussian oracle: exact E[x0 | x] for x0 ~ N(mu_prompt, 1) per element, in the flow and the VE
parameterization; images and video latents."""
from __future__ import annotations

import math

import pytest
import torch

from dreamsampler_core.distill import distill_edit, distill_edit_weight
from dreamsampler_core.schedule import Parameterization


def gaussian(mu: float, param: Parameterization):
    """x0(x, sigma) = E[x0 | x] for x0 ~ N(mu, 1) elementwise, x = a x0 + s eps."""
    def x0(x, sigma):
        a, s = float(param.signal(torch.as_tensor(float(sigma)))), float(param.noise(torch.as_tensor(float(sigma))))
        return mu + a * (x - a * mu) / (a * a + s * s)
    return x0


def grid(kind: str, n: int) -> torch.Tensor:
    if kind == "flow":
        t = torch.linspace(1, 0, n + 1)
        return 3 * t / (1 + 2 * t)                  # shift 3
    return torch.cat([torch.exp(torch.linspace(math.log(14.6), math.log(0.03), n)), torch.zeros(1)])


@pytest.mark.parametrize("kind", ["flow", "ve"])
@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (1, 4, 5, 8, 8)])
def test_identity_mask_and_direction(kind, shape):
    param = Parameterization(kind)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    sg = grid(kind, 12)[4:]
    same = distill_edit(gaussian(0.0, param), gaussian(0.0, param), x, sg, param,
                        rng=torch.Generator().manual_seed(1))
    assert torch.equal(same, x)
    out = distill_edit(gaussian(2.0, param), gaussian(0.0, param), x, sg, param, strength=1.5,
                       rng=torch.Generator().manual_seed(1))
    assert float((out - x).mean()) > 1.0            # toward the target's mean
    mask = torch.zeros((1, 1) + shape[2:])
    if len(shape) == 5:
        mask[:, :, 2] = 1.0                          # one frame edits
    else:
        mask[..., :4] = 1.0
    masked = distill_edit(gaussian(2.0, param), gaussian(0.0, param), x, sg, param, strength=1.5, mask=mask,
                          rng=torch.Generator().manual_seed(1))
    keep = mask.expand_as(x) == 0
    assert torch.equal(masked[keep], x[keep])
    assert torch.allclose(masked[~keep], out[~keep])


def test_fixed_point_of_a_constant_direction():
    """With target - source = d constant, z - X follows (z - X) <- (1 - w)(z - X) + w s d at fidelity 1:
    it ends at s d exactly when the grid's last step goes to sigma = 0 (w = 1)."""
    param = Parameterization("flow")
    x = torch.zeros(1, 1, 2, 2)
    d = 0.3
    out = distill_edit(lambda z, s: torch.full_like(z, d), lambda z, s: torch.zeros_like(z), x, grid("flow", 10)[3:],
                       param, strength=2.0, rng=torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.full_like(x, 2.0 * d))
    assert distill_edit_weight(0.5, 0.0) == 1.0


def test_bad_weights_raise():
    param = Parameterization("flow")
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError):
        distill_edit(lambda z, s: z, lambda z, s: z, x, grid("flow", 4), param, fidelity=-1.0)
