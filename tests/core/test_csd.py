"""CSD-Edit core (spec csd §1.2-§1.5) on exact Gaussian-mixture denoisers, and the window tiling.

Claims checked:
* window tiling covers every latent pixel for sizes that are not multiples of the stride (and latents
  smaller than the window), scatter(gather(x)) is x, overlaps take the exact mean; bad strides and a
  panorama batch are refused with a message; a one-frame video latent [1, C, 1, H, W] has the same
  windows;
* one particle (or svgd off) takes exactly the single-image DDS step
  X <- X - lr (1 - abar) (eps_tgt - eps_src), which is lr (1 - abar) (a / s) d of distill.dds_direction;
* in the loop, windows not drawn in an iteration do not move, drawn ones move by the averaged step;
* on the analytic oracle, SVGD particles' edits agree more (relative spread of the per-particle edit
  vectors) than N independent DDS runs with the same lr and iterations, and the edits reach the target;
* the learning-rate schedules.
"""
import math

import pytest
import torch

from dreamsampler_core import csd
from dreamsampler_core.analytic import GaussianMixture
from dreamsampler_core.distill import dds_direction, sigma_from_table
from dreamsampler_core.schedule import Parameterization, scaled_linear_sigmas

pytestmark = pytest.mark.usefixtures("one_thread")




def sigma_at_for(kind):
    if kind == "ve":
        return sigma_from_table(scaled_linear_sigmas())
    return lambda u: float(u)                             # flow: sigma = t


@pytest.fixture(scope="module")
def gm():
    return GaussianMixture.two_class(64, sep=3.0, std=0.5)


def oracle_predict(gm, param, cfg=3.0):
    """(target, source_model): target is CFG toward class 1 at x_t; source_model the null (prior)
    prediction at x~_t.  Both accept (and ignore) the image condition ``image=``."""
    null, one = gm.class_weights(None), gm.class_weights(1)

    def target(x_t, sigma, image=None):
        n = gm.denoise(x_t, sigma, param, null)
        return n + cfg * (gm.denoise(x_t, sigma, param, one) - n)

    def source_model(x_src_t, sigma, image=None):
        return gm.denoise(x_src_t, sigma, param, null)
    return target, source_model


# ----------------------------------------------------------------------------- tiling
@pytest.mark.parametrize("h,w,window,stride", [(13, 37, 8, 3), (8, 24, 8, 4), (5, 30, 8, 8), (64, 240, 64, 16),
                                               (7, 7, 8, 1), (9, 17, 4, 4)])
def test_windows_cover_every_pixel_and_averaging_is_exact(h, w, window, stride):
    lay = csd.window_layout(h, w, window, stride)
    wh, ww = lay.size
    assert (wh, ww) == (min(window, h), min(window, w))
    for y, x in lay.origins:
        assert 0 <= y <= h - wh and 0 <= x <= w - ww
    cover = lay.coverage()
    assert float(cover.min()) >= 1.0, "some latent pixel is in no window"
    # brute-force coverage and scatter of distinct per-window values = their mean per pixel
    idx = torch.arange(lay.count)
    vals = torch.arange(1, lay.count + 1, dtype=torch.float64).reshape(-1, 1, 1, 1).expand(-1, 2, wh, ww)
    like = torch.zeros(1, 2, h, w, dtype=torch.float64)
    total, count = torch.zeros_like(like), torch.zeros(1, 1, h, w, dtype=torch.float64)
    for k, (y, x) in enumerate(lay.origins):
        total[:, :, y:y + wh, x:x + ww] += k + 1
        count[:, :, y:y + wh, x:x + ww] += 1
    assert torch.equal(count, cover.double())
    assert torch.allclose(lay.scatter(vals, idx, like), total / count, rtol=0, atol=1e-12)
    x = torch.randn(1, 2, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(lay.scatter(lay.gather(x, idx), idx, x), x, rtol=0, atol=1e-12)
    # the official stride-aligned grid: interior starts are multiples of the stride
    assert all(y % stride == 0 for y, _ in lay.origins if y != h - wh)


def test_subset_scatter_leaves_uncovered_pixels_at_zero():
    lay = csd.window_layout(8, 40, 8, 8)                   # 5 disjoint windows
    idx = torch.tensor([1, 3])
    out = lay.scatter(torch.ones(2, 1, 8, 8), idx, torch.zeros(1, 1, 8, 40))
    assert float(out[..., 8:16].min()) == 1.0 and float(out[..., 24:32].min()) == 1.0
    assert float(out[..., :8].abs().max()) == 0.0 and float(out[..., 32:].abs().max()) == 0.0


def test_windows_of_a_one_frame_video_latent_are_the_image_windows():
    """A video VAE's image latent [1, C, 1, H, W] (Qwen-Image's): the windows cut the last two axes."""
    lay = csd.window_layout(9, 17, 4, 3)
    x = torch.randn(1, 2, 9, 17, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    idx = torch.arange(lay.count)
    win = lay.gather(x.unsqueeze(2), idx)
    assert torch.equal(win, lay.gather(x, idx).unsqueeze(2))
    assert torch.equal(lay.scatter(win * 2, idx, x.unsqueeze(2)), lay.scatter(win.squeeze(2) * 2, idx, x).unsqueeze(2))


def test_bad_tiling_is_refused_clearly():
    with pytest.raises(ValueError, match="stride .* larger than the window"):
        csd.window_layout(16, 64, 8, 9)
    with pytest.raises(ValueError, match="at least 1"):
        csd.window_layout(16, 64, 0, 1)
    with pytest.raises(ValueError, match="panorama mode edits one large image"):
        csd.make_layout("panorama", torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="mode"):
        csd.make_layout("tiles", torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="t_range"):
        csd.csd_edit(None, None, torch.zeros(1, 4, 8, 8), lambda u: u, Parameterization("ve"), t_range=(0.0, 0.5))


# ----------------------------------------------------------------------------- the update
@pytest.mark.parametrize("kind", ["ve", "flow"])
@pytest.mark.parametrize("svgd", [True, False])
def test_one_particle_is_exactly_the_dds_step(gm, kind, svgd):
    param = Parameterization(kind)
    (target, source_model), sigma_at = oracle_predict(gm, param), sigma_at_for(kind)
    src = gm.sample(1, torch.Generator().manual_seed(1), 0).reshape(1, 4, 4, 4)
    lr = 1.5
    out = csd.csd_edit(target, source_model, src, sigma_at, param, mode="frames", iterations=1, lr=lr, svgd=svgd,
                       generator=torch.Generator().manual_seed(7))
    # replay the same draws: level, then noise
    g = torch.Generator().manual_seed(7)
    u = 0.02 + 0.48 * float(torch.rand((), generator=g, dtype=torch.float64))
    sigma = torch.as_tensor(sigma_at(u), dtype=torch.float64)
    eps = torch.randn(src.shape, generator=g, dtype=torch.float32).double()
    x_t, xs_t = param.compose(src, eps, sigma), param.compose(src, eps, sigma)
    x0_t, x0_s = target(x_t, sigma, image=src), source_model(xs_t, sigma, image=src)
    delta = param.eps(x_t, x0_t, sigma) - param.eps(xs_t, x0_s, sigma)
    w = 1.0 - float(param.alpha_bar(sigma))
    assert torch.allclose(out, src - lr * w * delta, rtol=0, atol=1e-12)
    # the same step through the score-distillation module's DDS direction: Delta E = (a / s) d
    d = dds_direction(target, source_model, src, src, sigma, eps, param)
    a, s = float(param.signal(sigma)), float(param.noise(sigma))
    assert torch.allclose(out, src - lr * w * (a / s) * d, rtol=0, atol=1e-10)
    assert float((out - src).abs().max()) > 1e-3                  # a real step, not a no-op


def test_window_loop_moves_only_drawn_windows_by_the_averaged_step():
    """Denoisers with a constant Delta E = c: every drawn pixel moves by exactly lr w c."""
    param = Parameterization("ve")
    c = 0.25

    def target(x_t, sigma, image=None):
        return x_t - float(sigma) * c                    # eps_t = c

    def source_model(x_src_t, sigma, image=None):
        return x_src_t                                   # eps_s = 0

    src = torch.zeros(1, 1, 8, 40, dtype=torch.float64)
    seen = {}
    out = csd.csd_edit(target, source_model, src, sigma_from_table(scaled_linear_sigmas()), param, mode="panorama", window=8,
                       stride=8, particles=2, iterations=1, lr=1.0, svgd=False,
                       generator=torch.Generator().manual_seed(3), callback=lambda k, n, x: seen.setdefault(k, x))
    moved = (out.abs() > 0).reshape(8, 40).any(0)
    assert int(moved.sum()) == 16                                  # two 8-wide windows of five
    vals = out[out != 0]
    assert torch.allclose(vals, vals[0].expand_as(vals)) and float(vals[0]) < 0
    assert 0 in seen


def test_the_image_condition_is_the_source_not_the_current_target(gm):
    """Both denoisers' ``image=`` (InstructPix2Pix's image condition) stays the SOURCE as X moves away."""
    param = Parameterization("ve")
    inner_t, inner_s = oracle_predict(gm, param)
    src = gm.sample(3, torch.Generator().manual_seed(2), 0).reshape(3, 4, 4, 4)
    seen, seen_src = [], []

    def target(x_t, sigma, image=None):
        seen.append(image.clone())
        return inner_t(x_t, sigma, image=image)

    def source_model(x_src_t, sigma, image=None):
        seen_src.append(image.clone())
        return inner_s(x_src_t, sigma, image=image)

    out = csd.csd_edit(target, source_model, src, sigma_at_for("ve"), param, mode="frames", iterations=3, lr=2.0,
                       generator=torch.Generator().manual_seed(0))
    assert float((out - src).abs().max()) > 1e-2
    assert len(seen) == 3 and all(torch.equal(s, src) for s in seen)
    assert len(seen_src) == 3 and all(torch.equal(s, src) for s in seen_src)


def test_svgd_edits_agree_more_than_independent_dds_runs(gm):
    """N similar sources (frames) of class 0 edited toward class 1 with the same lr and iterations."""
    param = Parameterization("ve")
    (target, source_model), sigma_at = oracle_predict(gm, param), sigma_at_for("ve")
    N = 8
    src = gm.sample(N, torch.Generator().manual_seed(3), 0).reshape(N, 4, 4, 4)

    def spread(x):
        e = (x - src).reshape(N, -1)
        mean = e.mean(0)
        return float(((e - mean) ** 2).sum(1).mean() / (mean ** 2).sum())

    res = {}
    for svgd in (True, False):
        spreads, reached = [], []
        for seed in range(4):
            out = csd.csd_edit(target, source_model, src, sigma_at, param, mode="frames", iterations=30, lr=2.0, svgd=svgd,
                               generator=torch.Generator().manual_seed(seed))
            spreads.append(spread(out))
            reached.append(float((gm.classify(out) == 1).double().mean()))
        res[svgd] = (sum(spreads) / 4, min(reached))
    # measured: svgd 0.015, independent 0.100 (relative spread of the edit vectors)
    assert res[True][0] < 0.5 * res[False][0], res
    assert res[True][1] == 1.0 and res[False][1] >= 0.75, res      # both actually edit toward class 1


def test_lr_schedules():
    assert [csd.lr_at(k, 2.0, "step", 200) for k in (0, 19, 20, 40)] == pytest.approx([2.0, 2.0, 1.8, 1.62])
    assert csd.lr_at(123, 2.0, "constant", 200) == 2.0
    assert csd.lr_at(0, 2.0, "cosine", 100) == 2.0 and csd.lr_at(100, 2.0, "cosine", 100) == pytest.approx(0.0)
    assert csd.lr_at(50, 2.0, "cosine", 100) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        csd.lr_at(0, 1.0, "linear", 10)
    assert math.isclose(csd.STEP_GAMMA, 0.9) and csd.STEP_EVERY == 20
