"""Tests of dreamsampler_core.distill against the exact Gaussian-mixture denoiser: the SDS / Tweedie
identity (spec dreamsampler §1.3a) and the DDS closed form, Algorithm 2 with an identity generator
is the DreamSampler sampler, and distillation through the SVG renderer moves the drawing to the
oracle's data mode (text-to-SVG) or to the mode the known pixels select (restoration)."""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from dreamsampler_core import distill as D  # noqa: E402
from dreamsampler_core.analytic import GaussianMixture  # noqa: E402
from dreamsampler_core.operators import Inpainting  # noqa: E402
from dreamsampler_core.regularizers import CFGEdit  # noqa: E402
from dreamsampler_core.sampler import dream_sample  # noqa: E402
from dreamsampler_core.schedule import Parameterization, ddim_uniform, scaled_linear_sigmas  # noqa: E402
from dreamsampler_core.svg import SVGPath, SVGScene, render  # noqa: E402
from dreamsampler_core.svg.init import circle_points  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64




def oracle(gm, param, cls=1):
    """model(x, sigma) -> x0 of the mixture conditioned on class ``cls`` (None = null)."""
    weights = gm.class_weights(cls)

    def model(x, sigma):
        return gm.denoise(x, sigma, param, weights)
    return model


def grid(kind, steps):
    if kind == "flow":
        return torch.cat([torch.linspace(0.98, 0.02, steps, dtype=F64), torch.zeros(1, dtype=F64)])
    return ddim_uniform(scaled_linear_sigmas(), steps)


# ----------------------------------------------------------------------------- identities
@pytest.mark.parametrize("kind,sigma", [("ve", 0.7), ("ve", 6.0), ("flow", 0.4)])
def test_sds_gradient_is_tweedie_regression(kind, sigma):
    """z - T(z_t, eps_hat) = (s/a)(eps_hat - eps) = sqrt((1 - abar)/abar)(eps_hat - eps), and backprop of
    1/2 ||z - sg[T]||^2 through a generator gives J^T d (spec §1.3a)."""
    param = Parameterization(kind)
    gm = GaussianMixture.two_class(48, sep=3.0, std=0.5)
    den = oracle(gm, param)
    g = torch.Generator().manual_seed(0)
    jac = torch.randn(48, 6, generator=g, dtype=F64)
    theta = torch.randn(2, 6, generator=g, dtype=F64, requires_grad=True)
    eps = torch.randn(2, 48, generator=g, dtype=F64)
    s = torch.tensor(sigma, dtype=F64)
    z = theta @ jac.T

    d = D.sds_direction(den, z.detach(), s, eps, param)
    x_t = param.compose(z.detach(), eps, s)
    eps_hat = param.eps(x_t, den(x_t, s), s)
    a, n, abar = param.signal(s), param.noise(s), param.alpha_bar(s)
    assert torch.allclose(d, (n / a) * (eps_hat - eps), atol=1e-12, rtol=1e-10)
    assert torch.allclose(d, ((1 - abar) / abar).sqrt() * (eps_hat - eps), atol=1e-12, rtol=1e-10)
    assert float(d.abs().max()) > 1e-2                       # not a trivial zero

    x0 = den(param.compose(z.detach(), eps, s), s)
    (0.5 * (z - x0.detach()).pow(2).sum()).backward()
    assert torch.allclose(theta.grad, d @ jac, atol=1e-10, rtol=1e-10)


def test_one_sds_fit_step_is_the_sds_gradient_step():
    """fit_generator with SGD on a latent generator: one step moves z by -lr * w * d / N."""
    param = Parameterization("ve")
    gm = GaussianMixture.two_class(32, sep=3.0, std=0.5)
    den = oracle(gm, param)
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(1, 32, generator=g, dtype=F64)
    eps = torch.randn(1, 32, generator=g, dtype=F64)
    s = torch.tensor(2.0, dtype=F64)
    gen = D.LatentGenerator(z0, lr=0.5)
    opt = torch.optim.SGD(gen.param_groups(), lr=0.5)
    D.fit_generator(gen, opt, lambda z: z - D.sds_direction(den, z, s, eps, param), steps=1)
    d = D.sds_direction(den, z0, s, eps, param)
    assert torch.allclose(gen.z.detach(), z0 - 0.5 * d / z0.numel(), atol=1e-14)


def test_dds_direction_closed_form_and_null_edit():
    param = Parameterization("ve")
    gm = GaussianMixture.two_class(32, sep=3.0, std=0.5)
    tgt, src = oracle(gm, param, 1), oracle(gm, param, 0)
    g = torch.Generator().manual_seed(2)
    z, z_src, eps = (torch.randn(1, 32, generator=g, dtype=F64) for _ in range(3))
    s = torch.tensor(1.5, dtype=F64)
    d = D.dds_direction(tgt, src, z, z_src, s, eps, param)
    x_t, x_s = param.compose(z, eps, s), param.compose(z_src, eps, s)
    e_t = param.eps(x_t, tgt(x_t, s), s)
    e_s = param.eps(x_s, src(x_s, s), s)
    assert torch.allclose(d, s * (e_t - e_s), atol=1e-12)
    # same prompt on both branches at the source itself: no edit at all
    same = oracle(gm, param, 0)
    assert float(D.dds_direction(same, same, z_src, z_src, s, eps, param).abs().max()) == 0.0


@pytest.mark.parametrize("kind", ["ve", "flow"])
def test_algorithm2_with_identity_generator_is_the_dreamsampler_sampler(kind):
    """An exact fit (SGD, lr = N, one step) of the identity generator makes Algorithm 2 the reverse
    DreamSampler loop, regularizers and fresh noise included."""
    param = Parameterization(kind)
    gm = GaussianMixture.two_class(4 * 4 * 4, sep=3.0, std=0.5)
    sigmas = grid(kind, 12)

    base = oracle(gm, param, None)
    extras = {"target": oracle(gm, param, 1)}

    regs = [CFGEdit(strength=0.3, schedule="constant")]
    x_t = param.compose(torch.zeros(2, 4, 4, 4, dtype=F64),
                        torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3), dtype=F64), sigmas[0])
    ref = dream_sample(base, x_t.clone(), sigmas, param, extras=extras, regularizers=regs, eta=0.3,
                       generator=torch.Generator().manual_seed(4))
    gen = D.LatentGenerator(torch.zeros_like(x_t))
    opt = torch.optim.SGD([gen.z], lr=float(x_t.numel()))
    res = D.dream_distill(base, gen, sigmas, param, D.FitConfig(space="latent", inner_steps=1), extras=extras,
                          regularizers=regs, eta=0.3, x=x_t.clone(), optimizer=opt,
                          rng=torch.Generator().manual_seed(4))
    assert float((res.latent - ref).abs().max()) < 1e-10
    assert (gm.classify(res.latent) == 1).all()


# ----------------------------------------------------------------------------- SDS / DDS on the oracle
def test_sds_and_dds_on_latent_generator_reach_the_target_mode():
    param = Parameterization("ve")
    gm = GaussianMixture.two_class(64, sep=3.0, std=0.5)
    sigma_at = D.sigma_from_table(scaled_linear_sigmas())
    g = torch.Generator().manual_seed(5)
    z0 = gm.means[0][None] + 0.1 * torch.randn(1, 64, generator=g, dtype=F64)     # near the other mode
    mu1 = gm.means[1][None]
    gen = D.LatentGenerator(z0, lr=0.05)
    D.sds(oracle(gm, param), gen, sigma_at, param, D.RandomLevels(iterations=300),
          rng=torch.Generator().manual_seed(6))
    before, after = float((z0 - mu1).norm()), float((gen.z.detach() - mu1).norm())
    assert int(gm.classify(z0)) == 0 and int(gm.classify(gen.z.detach())) == 1
    assert after < 0.2 * before, (before, after)            # mode seeking: lands on the class-1 mean

    src = gm.sample(1, torch.Generator().manual_seed(7), 0)
    gen = D.LatentGenerator(src, lr=0.05)
    D.dds(oracle(gm, param, 1), oracle(gm, param, 0), gen, sigma_at, param, D.RandomLevels(iterations=200),
          rng=torch.Generator().manual_seed(8))
    assert int(gm.classify(src)) == 0 and int(gm.classify(gen.z.detach())) == 1
    # same prompt on both branches: DDS leaves the source exactly as it is
    gen = D.LatentGenerator(src, lr=0.05)
    D.dds(oracle(gm, param, 0), oracle(gm, param, 0), gen, sigma_at, param, D.RandomLevels(iterations=20),
          rng=torch.Generator().manual_seed(8))
    assert torch.equal(gen.z.detach(), src)


# ----------------------------------------------------------------------------- through the SVG renderer
SIZE = 16


def two_disks(c_left, c_right, centers=((5.0, 8.0), (11.0, 8.0)), radius=4.0):
    pts = circle_points(torch.tensor(centers, dtype=torch.float32), radius, 4)
    paths = [SVGPath(pts[k], fill=torch.tensor([*c, 1.0])) for k, c in enumerate((c_left, c_right))]
    return SVGScene(SIZE, SIZE, paths)


RED, BLUE, GREEN, YELLOW, GREY = (1., 0., 0.), (0., 0., 1.), (0., .8, 0.), (1., 1., 0.), (.5, .5, .5)


def image_modes(std=0.1):
    a = render(two_disks(RED, BLUE), layout="BCHW")[0] * 2 - 1
    b = render(two_disks(GREEN, YELLOW), layout="BCHW")[0] * 2 - 1
    means = torch.stack([a.flatten(), b.flatten()]).double()
    return GaussianMixture(means, torch.full_like(means, std), torch.tensor([0.5, 0.5], dtype=F64)), a, b


def start_scene():
    return two_disks(GREY, GREY, centers=((6.5, 7.0), (9.5, 9.0)), radius=3.5)


def mse(x, y):
    return float((x.double() - y.double()).pow(2).mean())


def test_dreamsampler_distillation_draws_the_prompted_mode():
    """Text-to-SVG on the oracle: Algorithm 2 through the renderer ends on the class-1 picture."""
    param = Parameterization("ve")
    gm, _, mode_b = image_modes()
    gen = D.SVGGenerator([start_scene()], point_lr=0.3, color_lr=0.05)
    start = gen.render().detach()[0]
    seen = []
    res = D.dream_distill(oracle(gm, param, 1), gen, grid("ve", 20), param,
                          D.FitConfig(space="pixel", inner_steps=10), rng=torch.Generator().manual_seed(9),
                          callback=lambda i, n, z: seen.append(i))
    out = gen.render().detach()[0]
    assert seen == list(range(20))
    assert torch.allclose(res.latent[0], out)
    assert int(gm.classify(out[None])) == 1
    assert mse(out, mode_b) < mse(start, mode_b) / 10, (mse(start, mode_b), mse(out, mode_b))
    assert mse(out, mode_b) < 0.02


def test_svg_restoration_known_pixels_select_the_mode_for_the_hole():
    """Masked raster of mode A (right half missing), unconditional oracle prior over {A, B}: the data
    term on the known half plus the prior fill the hole with A's right disk, not B's."""
    param = Parameterization("ve")
    gm, mode_a, mode_b = image_modes()
    keep = torch.zeros(1, 1, SIZE, SIZE)
    keep[..., : SIZE // 2] = 1.0
    term = D.PixelDataTerm(Inpainting(keep), (mode_a * keep)[None], weight=1.0)
    prior = oracle(gm, param, None)
    right = (slice(None), slice(None), slice(SIZE // 2 + 1, None))

    gen = D.SVGGenerator([start_scene()], point_lr=0.3, color_lr=0.05)
    D.dream_distill(prior, gen, grid("ve", 20), param, D.FitConfig(space="pixel", inner_steps=10, data_term=term),
                    rng=torch.Generator().manual_seed(10))
    out = gen.render().detach()[0]
    assert mse(out * keep[0], mode_a * keep[0]) < 0.01                      # the known half is kept
    hole_a, hole_b = mse(out[right], mode_a[right]), mse(out[right], mode_b[right])
    assert hole_a < hole_b / 5, (hole_a, hole_b)

    # data term alone (no prior): the hole keeps the grey start, far from A
    gen = D.SVGGenerator([start_scene()], point_lr=0.3, color_lr=0.05)
    D.fit_generator(gen, gen.optimizer(), gen.render().detach(), space="pixel", steps=200, weight=0.0,
                    data_term=term)
    alone = gen.render().detach()[0]
    assert mse(alone[right], mode_a[right]) > 2 * hole_a


def test_bad_arguments_are_refused():
    param = Parameterization("ve")
    gen = D.LatentGenerator(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="fit_space"):
        D.dream_distill(lambda x, s: x, gen, grid("ve", 2), param, D.FitConfig(space="voxel"))
    with pytest.raises(ValueError, match="pixel generator"):
        D.dream_distill(lambda x, s: x, gen, grid("ve", 2), param,
                        D.FitConfig(space="pixel", inner_steps=10,
                                    data_term=D.PixelDataTerm(Inpainting(torch.ones(1, 1, 2, 2)), torch.zeros(1, 3, 2, 2))))
    with pytest.raises(ValueError, match="t_range"):
        D.sds(lambda x, s: x, gen, lambda u: 1.0, param, D.RandomLevels(t_range=(0.9, 0.1)))
    with pytest.raises(ValueError, match="learning rate"):
        D.LatentGenerator(torch.zeros(1, 4), lr=0.0).optimizer()
    with pytest.raises(ValueError, match="NaN"):
        D.PixelDataTerm(None, torch.full((1, 3, 2, 2), float("nan")))


def _square_scene(size, shift=0.0):
    """A black square over a third of a white canvas of ``size`` px, moved by ``shift`` * size."""
    a, b = (0.3 + shift) * size, (0.6 + shift) * size
    v = torch.tensor([(a, a), (b, a), (b, b), (a, b)])
    pts = torch.stack([v, v + (v.roll(-1, 0) - v) / 3, v + 2 * (v.roll(-1, 0) - v) / 3], 1).reshape(-1, 2)
    return SVGScene(size, size, [SVGPath(pts, torch.tensor([0.0, 0.0, 0.0, 1.0]))], torch.tensor([1.0, 1.0, 1.0]))


def test_adam_point_step_does_not_depend_on_canvas_size():
    """The same drawing on a 64 px and a 512 px canvas, one fit step toward a faint (1 %) copy moved
    by 5 % of the canvas: each control point moves by the point lr (Adam's normalized first step) on
    both canvases.  With eps = 1e-6 on the mean loss they moved by 0.96-0.99 lr (64 px) and 0.82-0.90 lr
    (512 px): damped by a canvas-dependent amount."""
    lr = 1.0
    moves = {}
    for size in (64, 512):
        start = render(_square_scene(size), layout="BCHW") * 2 - 1
        moved = render(_square_scene(size, 0.05), layout="BCHW") * 2 - 1
        gen = D.SVGGenerator([_square_scene(size)], point_lr=lr, color_lr=0.0)
        p0 = gen.scenes[0].paths[0].points.detach().clone()
        D.fit_generator(gen, gen.optimizer(), start + 0.01 * (moved - start), space="pixel", steps=1)
        moves[size] = (gen.scenes[0].paths[0].points.detach() - p0).abs()
    for size, d in moves.items():
        active = d[d > 1e-3]
        assert len(active) >= 8, (size, d)                      # the edges' points move, x and y
        assert torch.allclose(active, torch.full_like(active, lr), rtol=1e-3), (size, d)
    assert torch.allclose(moves[64], moves[512], atol=1e-3), moves
