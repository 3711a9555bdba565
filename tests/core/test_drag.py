"""dreamsampler_core.drag: SDE-Drag's geometry and algorithm on the analytic oracle (no host).

Claims checked (spec csd §3.3, §3.5, §3.9): patches shrink at borders to a shared shape; the paste
overwrites the perturbed source where patches overlap; the beta perturbation keeps unit variance;
sub-drags follow P + trunc(k/m d); a no-op drag reconstructs the latent exactly and a mask keeps
the black region exactly.  (The pipeline both hosts call: tests/core/test_pipelines.py.)
"""

import pytest
import torch

from dreamsampler_core import drag, points
from dreamsampler_core.analytic import GaussianMixture, mixture_denoiser
from dreamsampler_core.schedule import Parameterization, scaled_linear_sigmas

VE = Parameterization("ve")


# ----------------------------------------------------------------------------- geometry
def test_substeps():
    assert drag.substep_count([(0, 0)], [(1, 1)], 2.0) == 1
    assert drag.substep_count([(0, 0)], [(10, 0)], 2.0) == 5
    assert drag.substep_count([(0, 0)], [(5, 0)], 2.0) == 3          # 5/3 is closer to 2 than 5/2
    assert drag.substep_count([(0, 0), (0, 0)], [(2, 0), (0, 9)], 2.0) == 5   # longest: 9/5 beats 9/4
    P, Q, m = [(10, 10)], [(3, 17)], 3
    first, _ = drag.substep_points(P, Q, m, 0)
    _, last = drag.substep_points(P, Q, m, m - 1)
    assert first == P and last == Q
    assert drag.substep_points(P, Q, m, 1) == ([(8, 12)], [(6, 14)])  # trunc toward zero: -7/3 -> -2


def test_border_clipping_gives_equal_shapes():
    H = W = 16
    assert drag.patch_extent((0, 0), (3, 3), 5, H, W) == (0, 5, 0, 5)
    assert drag.patch_extent((15, 14), (12, 12), 5, H, W) == (5, 2, 5, 1)
    z = torch.arange(H * W, dtype=torch.float64).reshape(1, 1, H, W)
    out = drag.copy_paste(z, [(15, 14)], [(12, 12)], 5, alpha=2.0, beta=1.0)
    # patch rows y-5 .. y+1, cols x-5 .. x: source rows 9..15, cols 10..15 -> target rows 7..13, cols 7..12
    assert torch.equal(out[0, 0, 7:14, 7:13], 2.0 * z[0, 0, 9:16, 10:16])
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[7:14, 7:13] = False
    outside[9:16, 10:16] = False
    assert torch.equal(out[0, 0][outside], z[0, 0][outside])


def test_overlapping_patches_paste_overwrites_perturbed_source():
    z = torch.randn(1, 4, 20, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p, q, r, beta, alpha = (8, 8), (10, 8), 3, 0.3, 1.1
    out = drag.copy_paste(z, [p], [q], r, alpha, beta, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(7)).double()
    feat = z[..., 5:11, 5:11]
    perturbed = beta * feat + (1 - beta ** 2) ** 0.5 * noise
    assert torch.allclose(out[..., 5:11, 5:7], perturbed[..., :, :2])        # source-only columns
    assert torch.equal(out[..., 5:11, 7:13], alpha * feat)                   # the paste wins on the overlap
    # pairs run in order: pair 2 copies what pair 1 pasted (the original at (14, 14) is gone)
    out2 = drag.copy_paste(z, [(2, 2), (14, 14)], [(14, 14), (2, 2)], 2, 1.0, 1.0)
    assert torch.equal(out2[..., 12:16, 12:16], z[..., 0:4, 0:4])
    assert torch.equal(out2[..., 0:4, 0:4], z[..., 0:4, 0:4])


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.9])
def test_beta_perturbation_preserves_variance(beta):
    z = torch.randn(1, 4, 96, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = drag.copy_paste(z, [(32, 48)], [(80, 48)], 16, 1.0, beta, generator=torch.Generator().manual_seed(2))
    src_new, src_old = out[..., 32:64, 16:48], z[..., 32:64, 16:48]
    assert abs(float(src_new.var()) - 1.0) < 0.05                            # 4096 samples
    corr = float(((src_new - src_new.mean()) * (src_old - src_old.mean())).mean() / (src_new.std() * src_old.std()))
    assert abs(corr - beta) < 0.05


def test_guidance_ramp():
    assert drag.guidance_ramp(5, 3.0) == [3.0, 2.5, 2.0, 1.5, 1.0]
    assert drag.guidance_ramp(3, 3.0, "constant") == [3.0] * 3
    assert drag.guidance_ramp(1, 3.0) == [3.0]


# ----------------------------------------------------------------------------- algorithm
def _setup():
    table = scaled_linear_sigmas()
    sig = torch.stack([table[t] for t in range(5, 300, 20)][::-1])
    gm = GaussianMixture.two_class(4 * 8 * 8, sep=3.0, std=0.5)
    den = mixture_denoiser(gm, VE, 0)
    x0 = gm.sample(1, torch.Generator().manual_seed(0), 0).reshape(1, 4, 8, 8)
    return sig, (lambda x, s: den(x.reshape(1, -1), s).reshape(x.shape)), x0


def test_noop_drag_reconstructs_exactly_and_mask_keeps_black_region():
    sig, den, x0 = _setup()
    same = drag.sde_drag(den, x0, sig, VE, [(3, 3)], [(3, 3)], alpha=1.0, beta=1.0, radius=2,
                         generator=torch.Generator().manual_seed(1))
    assert float((same - x0).abs().max()) < 1e-10                            # Cycle-SDE: exact
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    mask[..., :, :5] = 1.0
    calls = []
    moved = drag.sde_drag(den, x0, sig, VE, [(1, 2)], [(4, 5)], mask=mask, radius=1, step_size=2.0,
                          generator=torch.Generator().manual_seed(1), callback=lambda *a: calls.append(a[:3]))
    assert torch.equal(moved[..., 5:], x0[..., 5:])                          # kept exactly
    assert float((moved[..., :5] - x0[..., :5]).abs().max()) > 1e-3
    m = drag.substep_count([(1, 2)], [(4, 5)], 2.0)
    assert m == 2 and len(calls) == 2 * m * (len(sig) - 1)
    with pytest.raises(points.PointsError, match="outside"):
        drag.sde_drag(den, x0, sig, VE, [(8, 0)], [(1, 1)])
    with pytest.raises(ValueError, match="sigma > 0"):
        drag.sde_drag(den, x0, torch.cat([sig, sig.new_zeros(1)]), VE, [(1, 1)], [(2, 2)])
