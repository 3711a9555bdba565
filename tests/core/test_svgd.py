"""The SVGD combination of CSD (spec csd §1.2, §1.9): median bandwidth, repulsion sign, N = 1 identity.

Claims checked:
* gamma = log(N + 1) / m with m the LOWER median of all N^2 squared distances, diagonal included
  (the numpy two-middle average, or an off-diagonal median, would give a different number here);
* the kernel-gradient term alone, applied with descent as the CSD update is, increases the distances
  between particles (the code's sign), and the figure's sign would decrease them;
* kernel mixing and R equal their explicit double sums; fp16 inputs are combined in fp32;
* N = 1 returns the direction itself, bit for bit; identical particles stay finite.
"""
import math

import pytest
import torch

from dreamsampler_core.svgd import median_gamma, pairwise_sq_dists, rbf_kernel, svgd_combine

pytestmark = pytest.mark.usefixtures("one_thread")




def feats(n, seed=0, shape=(4, 6, 6), spread=1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=dtype) * spread


def brute_sq_dists(f):
    f = f.reshape(f.shape[0], -1).double()
    return torch.stack([torch.stack([((a - b) ** 2).sum() for b in f]) for a in f])


@pytest.mark.parametrize("n", [3, 4, 5, 8])
def test_bandwidth_is_log_n_plus_one_over_lower_median_with_diagonal(n):
    scale = torch.linspace(0.5, 3.0, n, dtype=torch.float64).reshape(n, 1, 1, 1)
    f = feats(n, seed=n) * scale                          # particles at different spreads: distinct distances
    d = brute_sq_dists(f)
    assert torch.allclose(pairwise_sq_dists(f), d, rtol=1e-10, atol=1e-9)
    entries = d.reshape(-1).sort().values                 # N^2 entries, N zeros among them
    lower_median = float(entries[(n * n - 1) // 2])
    gamma = median_gamma(pairwise_sq_dists(f))
    assert gamma == pytest.approx(math.log(n + 1) / lower_median, rel=1e-10)
    h2 = 0.5 * lower_median / math.log(n + 1)             # the reference code's h^2; gamma = 1 / (2 h^2)
    assert gamma == pytest.approx(1.0 / (2.0 * h2), rel=1e-10)
    # the alternatives a reimplementation might pick give measurably different bandwidths here
    off_diag = d[~torch.eye(n, dtype=torch.bool)]
    assert abs(math.log(n + 1) / float(off_diag.median()) - gamma) > 1e-2 * gamma
    if n * n % 2 == 0:                                    # numpy's median averages the two middle entries
        numpy_median = 0.5 * float(entries[n * n // 2 - 1] + entries[n * n // 2])
        assert abs(math.log(n + 1) / numpy_median - gamma) > 1e-3 * gamma
    k, _, g2 = rbf_kernel(f)
    assert g2 == gamma
    assert torch.allclose(k, torch.exp(-gamma * d), rtol=1e-10, atol=0)
    assert torch.all(k.diagonal() == 1.0)


def test_two_particles_median_is_zero_so_the_smallest_distance_is_used():
    f = feats(2, 1)
    d = float(brute_sq_dists(f)[0, 1])
    assert float(torch.median(pairwise_sq_dists(f).reshape(-1))) == 0.0   # entries 0, 0, d, d
    assert median_gamma(pairwise_sq_dists(f)) == pytest.approx(math.log(3) / d, rel=1e-10)
    k, r, _ = rbf_kernel(f)
    assert float(k[0, 1]) == pytest.approx(1 / 3, rel=1e-10) and torch.isfinite(r).all()


def test_kernel_terms_equal_their_explicit_sums():
    n = 5
    f, delta = feats(n, 1), feats(n, 2)
    k, r, gamma = rbf_kernel(f)
    fl, dl = f.reshape(n, -1), delta.reshape(n, -1)
    r_ref = torch.stack([sum(-2 * gamma * k[i, j] * (fl[i] - fl[j]) for j in range(n)) for i in range(n)])
    mix_ref = torch.stack([sum(k[i, j] * dl[j] for j in range(n)) for i in range(n)])
    assert torch.allclose(r.reshape(n, -1), r_ref, rtol=1e-10, atol=1e-12)
    g = svgd_combine(delta, f)
    assert torch.allclose(g.reshape(n, -1), (mix_ref + r_ref) / n, rtol=1e-10, atol=1e-12)
    g0 = svgd_combine(delta, f, repulsion=0.0)
    assert torch.allclose(g0.reshape(n, -1), mix_ref / n, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 6])
def test_repulsion_term_alone_increases_pairwise_distances(n):
    """CSD applies descent x <- x - lr * g; with the deltas at zero only R acts."""
    f = feats(n, seed=10 + n, spread=0.3) + feats(1, seed=99)         # a cluster away from the origin
    zeros = torch.zeros_like(f)
    step = svgd_combine(zeros, f)                                      # = R / N
    assert float(step.abs().max()) > 0
    eta = 0.05 / float(step.abs().max())
    before = torch.cdist(f.reshape(n, -1), f.reshape(n, -1))
    after = torch.cdist((f - eta * step).reshape(n, -1), (f - eta * step).reshape(n, -1))
    figure_sign = torch.cdist((f + eta * step).reshape(n, -1), (f + eta * step).reshape(n, -1))
    iu = torch.triu_indices(n, n, 1)
    b, a, w = before[iu[0], iu[1]], after[iu[0], iu[1]], figure_sign[iu[0], iu[1]]
    assert float(a.sum()) > float(b.sum()) * (1 + 1e-4)                # spreads out
    assert float(a.min()) > float(b.min())                             # the closest pair separates
    assert float(w.sum()) < float(b.sum())                             # the figure's '+grad k' would attract
    if n == 2:
        assert float(a[0]) > float(b[0])


def test_single_particle_is_exactly_the_single_image_update():
    delta = feats(1, 3, dtype=torch.float32)
    f = feats(1, 4, dtype=torch.float32)
    out = svgd_combine(delta, f)
    assert torch.equal(out, delta) and out is not delta
    assert torch.equal(svgd_combine(delta.half(), f.half()), delta.half())


def test_identical_particles_stay_finite_and_average():
    f = feats(1, 5).expand(4, -1, -1, -1).clone()
    delta = feats(4, 6)
    out = svgd_combine(delta, f)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, delta.mean(0, keepdim=True).expand_as(delta), atol=1e-12)   # K = 1, R = 0
    f[0] += 1.0                                                        # 3 identical + 1: median is 0
    out = svgd_combine(delta, f)
    assert torch.isfinite(out).all()


def test_half_precision_inputs_use_float32_kernel_math():
    f = feats(6, 7, dtype=torch.float64) * 0.1 + 30.0                  # far from the origin: cancellation-prone
    delta = feats(6, 8, dtype=torch.float64)
    ref = svgd_combine(delta, f)
    out = svgd_combine(delta.half(), f.half())
    assert out.dtype == torch.float16
    ref_h = svgd_combine(delta.half().double(), f.half().double())     # same rounded inputs, float64 math
    assert torch.allclose(out.double(), ref_h, rtol=2e-3, atol=2e-3)
    assert torch.isfinite(ref).all()


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="one row per particle"):
        svgd_combine(feats(3, 0), feats(2, 1))
    with pytest.raises(ValueError, match="feature space"):
        svgd_combine(feats(3, 0), feats(3, 1, shape=(2, 2)))
