"""Measurement operators: exact adjoints, closed form = CG, the discrepancy rule, degradations, errors,
the guard of the CG solve."""
import math
import re

import pytest
import torch

from dreamsampler_core import operators as O

SHAPE = (2, 3, 24, 40)          # non-square, batch 2: catches transposed axes


def _keep(soft=False):
    g = torch.Generator().manual_seed(5)
    k = torch.rand(1, 1, *SHAPE[-2:], generator=g, dtype=torch.float64)
    return k if soft else (k > 0.4).double()


OPS = {
    "inpainting": lambda: O.make_operator("inpainting", keep=_keep()),
    "inpainting_soft": lambda: O.Inpainting(_keep(soft=True)),
    "sr_avgpool_x2": lambda: O.make_operator("sr_avgpool", scale=2),
    "sr_avgpool_x8": lambda: O.make_operator("sr_avgpool", scale=8),
    "sr_bicubic_x2": lambda: O.make_operator("sr_bicubic", scale=2),
    "sr_bicubic_x4": lambda: O.make_operator("sr_bicubic", scale=4),
    "sr_bicubic_x8": lambda: O.make_operator("sr_bicubic", scale=8),
    "deblur_gauss": lambda: O.make_operator("deblur_gauss", blur_sigma=1.5),
    "deblur_uniform": lambda: O.make_operator("deblur_uniform", kernel_size=5),
    "deblur_motion": lambda: O.make_operator("deblur_motion", kernel_size=7, motion_angle=30.0),
    "colorization": lambda: O.make_operator("colorization"),
}


def _rand(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", list(OPS))
def test_adjoint_identity(name):
    """<A x, y> = <x, A^T y> to float64 precision, for random x and y."""
    op = OPS[name]()
    x = _rand(SHAPE, 1)
    y = _rand(op.measurement_shape(SHAPE), 2)
    lhs = float((op.A(x) * y).sum())
    rhs = float((x * op.At(y)).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0), (lhs, rhs)
    assert op.At(y).shape == SHAPE


def test_adjoint_identity_float32_on_odd_sizes():
    op = O.make_operator("deblur_motion", kernel_size=9, motion_angle=-60.0)
    x = _rand((1, 3, 17, 23), 3).float()
    y = _rand((1, 3, 17, 23), 4).float()
    lhs, rhs = (op.A(x) * y).sum(), (x * op.At(y)).sum()
    assert abs(float(lhs - rhs)) <= 2e-5 * float(lhs.abs())


@pytest.mark.parametrize("name", [n for n in OPS if OPS[n]().closed_form])
def test_closed_form_matches_cg_and_is_optimal(name):
    op = OPS[name]()
    x_hat = _rand(SHAPE, 6)
    y = op.A(_rand(SHAPE, 7))
    mu = 0.05
    closed = O.prox(op, y, x_hat, mu, solver="auto")
    cg = O.prox(op, y, x_hat, mu, solver="cg", iters=500, tol=1e-14)
    assert float((closed - cg).abs().max()) < 1e-9
    # first-order optimality: A^T (A x - y) + mu (x - x_hat) = 0
    grad = op.At(op.A(closed) - y) + mu * (closed - x_hat)
    assert float(grad.abs().max()) < 1e-10


def test_cg_solves_motion_deblurring():
    op = OPS["deblur_motion"]()
    x_hat, y, mu = _rand(SHAPE, 8), op.A(_rand(SHAPE, 9)), 0.05
    x = O.prox(op, y, x_hat, mu, iters=400, tol=1e-13)
    grad = op.At(op.A(x) - y) + mu * (x - x_hat)
    assert float(grad.abs().max()) < 1e-8
    assert not op.closed_form


def test_inpainting_closed_form_is_pixel_replacement():
    """Spec §2.3: x_y = M (y + mu x_hat) / (1 + mu) + (1 - M) x_hat for a binary mask."""
    keep = _keep()
    op = O.Inpainting(keep)
    x_hat, y, mu = _rand(SHAPE, 10), op.A(_rand(SHAPE, 11)), 1e-4
    expected = keep * (y + mu * x_hat) / (1 + mu) + (1 - keep) * x_hat
    assert torch.allclose(O.prox(op, y, x_hat, mu), expected, atol=1e-14)


@pytest.mark.parametrize("name", ["inpainting", "sr_bicubic_x4", "deblur_gauss", "colorization", "deblur_motion"])
@pytest.mark.parametrize("solver", ["auto", "cg"])
def test_discrepancy_fits_down_to_the_noise_level(name, solver):
    """With sigma_y the data are fit to RMS residual sigma_y exactly, not below (noise not amplified);
    sigma_y = 0 fits below it."""
    op = OPS[name]()
    x_true, x_hat = _rand(SHAPE, 12), _rand(SHAPE, 13)
    sigma_y = 0.05
    y = O.degrade(x_true, op, sigma_y, torch.Generator().manual_seed(14))
    fit = O.prox(op, y, x_hat, 1e-4, sigma_y=sigma_y, solver=solver, iters=300)
    tight = O.prox(op, y, x_hat, 1e-4, sigma_y=0.0, solver=solver, iters=300)
    res_fit, res_tight = O.residual_norm(op, y, fit), O.residual_norm(op, y, tight)
    assert torch.allclose(res_fit, torch.full_like(res_fit, sigma_y), rtol=1e-6), res_fit
    assert (res_tight < 0.85 * sigma_y).all(), res_tight


def test_discrepancy_keeps_estimate_already_within_noise():
    op = OPS["sr_bicubic_x2"]()
    x = _rand(SHAPE, 15)
    y = O.degrade(x, op, 0.1, torch.Generator().manual_seed(16))
    out = O.prox(op, y, x, 1e-4, sigma_y=0.2)          # x already fits y to 0.1 < 0.2
    assert torch.allclose(out, x, atol=1e-3)


def test_degrade_noise_and_determinism():
    op = O.make_operator("sr_avgpool", scale=2)
    x = _rand((1, 3, 64, 64), 17)
    y1 = O.degrade(x, op, 0.05, torch.Generator().manual_seed(3))
    y2 = O.degrade(x, op, 0.05, torch.Generator().manual_seed(3))
    y3 = O.degrade(x, op, 0.05, torch.Generator().manual_seed(4))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    noise = y1 - op.A(x)
    assert abs(float(noise.std()) - 0.05) < 0.005 and abs(float(noise.mean())) < 0.005
    assert torch.equal(O.degrade(x, op, 0.0), op.A(x))


def test_degrade_inpainting_zeroes_the_hole():
    keep = _keep()
    op = O.Inpainting(keep)
    y = O.degrade(_rand(SHAPE, 18), op, 0.05, torch.Generator().manual_seed(0))
    assert float(y[(keep == 0).expand(SHAPE)].abs().max()) == 0.0
    assert torch.equal(op.num_measurements(y), torch.full((2,), float(keep.sum() * 3), dtype=torch.float64))


def test_downsampling_kernels_preserve_constants():
    c = torch.full((1, 3, 32, 32), 0.3, dtype=torch.float64)
    for s in O.SR_SCALES:
        for name in ("sr_avgpool", "sr_bicubic"):
            y = O.make_operator(name, scale=s).A(c)
            assert y.shape == (1, 3, 32 // s, 32 // s)
            assert torch.allclose(y, torch.full_like(y, 0.3), atol=1e-12)
    for op in (OPS["deblur_gauss"](), OPS["deblur_uniform"](), OPS["deblur_motion"]()):
        assert torch.allclose(op.A(c), c, atol=1e-12)


def test_bicubic_matches_area_on_smooth_ramp_and_avgpool_is_block_mean():
    ramp = torch.linspace(-1, 1, 64, dtype=torch.float64).reshape(1, 1, 1, 64).expand(1, 3, 64, 64)
    bic = O.make_operator("sr_bicubic", scale=4).A(ramp)
    avg = O.make_operator("sr_avgpool", scale=4).A(ramp)
    # interior columns: both give the mean of the 4-pixel block for a linear ramp
    assert torch.allclose(bic[..., 2:-2], avg[..., 2:-2], atol=1e-12)
    x = _rand((1, 3, 8, 8), 19)
    assert torch.allclose(O.make_operator("sr_avgpool", scale=2).A(x), torch.nn.functional.avg_pool2d(x, 2))


def test_motion_kernel_is_normalized_line():
    k = O.motion_kernel(9, 0.0)
    assert k.shape == (9, 9) and abs(float(k.sum()) - 1) < 1e-12
    assert float(k[4].sum()) > 0.99                      # horizontal: all mass on the middle row
    k45 = O.motion_kernel(9, 45.0)
    assert torch.allclose(k45, k45.flip(0).flip(1), atol=1e-12)   # symmetric about the center


def test_colorization_measurement_is_gray():
    x = _rand((1, 3, 4, 4), 20)
    op = O.make_operator("colorization")
    assert torch.allclose(op.A(x), x.mean(1, keepdim=True))
    assert op.initial_image(op.A(x)).shape == (1, 3, 4, 4)


def test_one_factory_for_both_hosts():
    """make_operator is the factory of the nodes (Dream Degrade / Data Consistency) and of the diffusers
    adapter: inpainting from the missing pixels (mask, 1 = missing) is the operator of keep = 1 - mask,
    checked against the image size; the widget checks are the nodes' validation messages
    (operator_errors); fit_measurement makes a colorization measurement gray and checks the fit."""
    mask = (_rand((1, 1, 8, 8), 21) > 0).float()
    a, b = O.make_operator("inpainting", mask=mask, image_hw=(8, 8)), O.make_operator("inpainting", keep=1 - mask)
    x = _rand((1, 3, 8, 8), 22)
    assert torch.equal(a.A(x), b.A(x))
    with pytest.raises(O.OperatorError, match="the mask is 8x8 pixels but the image is 16x8"):
        O.make_operator("inpainting", mask=mask, image_hw=(8, 16))
    for name, scale, kernel in (("sr_bicubic", 3, 0), ("deblur_uniform", 4, 4)):
        (msg,) = [e for e in O.operator_errors(name, scale, kernel) if e]
        with pytest.raises(O.OperatorError, match=re.escape(msg)):
            O.make_operator(name, scale=scale, kernel_size=kernel)
    assert not any(O.operator_errors("sr_bicubic", None, None))        # unconverted widgets are not judged
    op = O.make_operator("colorization")
    y, shape = O.fit_measurement(op, x)
    assert torch.equal(y, x.mean(1, keepdim=True)) and shape == (1, 3, 8, 8)
    with pytest.raises(O.OperatorError, match="NaN or infinite"):
        O.fit_measurement(O.make_operator("sr_avgpool", scale=2), x / 0.0)


def test_operator_errors_are_clear():
    with pytest.raises(O.OperatorError, match="multiples of 4"):
        O.make_operator("sr_bicubic", scale=4).measurement_shape((1, 3, 30, 32))
    with pytest.raises(O.OperatorError, match="scale must be one of"):
        O.make_operator("sr_avgpool", scale=3)
    with pytest.raises(O.OperatorError, match="needs a mask"):
        O.make_operator("inpainting")
    with pytest.raises(O.OperatorError, match="unknown operator"):
        O.make_operator("denoise")
    with pytest.raises(O.OperatorError, match="odd"):
        O.make_operator("deblur_uniform", kernel_size=4)
    op = O.Inpainting(torch.ones(1, 1, 8, 8))
    with pytest.raises(O.OperatorError, match="mask is 8x8 pixels but the image is 16x8"):
        op.measurement_shape((1, 3, 8, 16))
    sr = O.make_operator("sr_avgpool", scale=2)
    with pytest.raises(O.OperatorError, match="does not fit"):
        sr.check(torch.zeros(1, 3, 8, 8), (1, 3, 8, 8))        # full-size y for an x2 SR operator
    bad = torch.zeros(1, 3, 4, 4)
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(O.OperatorError, match="NaN"):
        sr.check(bad, (1, 3, 8, 8))
    with pytest.raises(O.OperatorError, match="too large"):
        O.make_operator("deblur_gauss", blur_sigma=20.0, kernel_size=0).A(torch.zeros(1, 3, 16, 16))


def test_operator_tensors_made_in_inference_mode_support_autograd_later():
    """ComfyUI builds everything under inference_mode; the opt-in DPS step differentiates through
    A outside it, which must not hit 'inference tensors cannot be saved for backward'."""
    with torch.inference_mode():
        ops = [O.Inpainting(torch.ones(1, 1, 8, 8)), O.make_operator("sr_bicubic", scale=2),
               O.make_operator("deblur_motion", kernel_size=3), O.make_operator("colorization")]
        for op in ops:
            op.A(torch.zeros(1, 3, 8, 8))                      # fills the caches inside inference mode
    for op in ops:
        x = torch.randn(1, 3, 8, 8, requires_grad=True)
        (g,) = torch.autograd.grad(op.A(x).square().sum(), x)
        assert torch.allclose(g, 2 * op.At(op.A(x.detach())), atol=1e-5)


# --- The guard of the data-consistency CG (issue 18): each batch item keeps its last iterate that is
# finite and does not raise the objective J = ||y - A x||^2 + mu ||x - x_hat||^2 (which exact CG
# lowers monotonically), so the solve never hands the next step NaN or a worse estimate than x_hat.
# (from test_cg_guard.py)
MU = 1e-4


def _randn(shape, g):
    return torch.randn(shape, generator=g, dtype=torch.float64)


def objective(op, y, x, x_hat):
    return ((y - op.A(x)) ** 2).flatten(1).sum(1) + MU * ((x - x_hat) ** 2).flatten(1).sum(1)


class BrokenAdjoint(O.LinearOperator):
    """A = I with an At that is not its adjoint (a non-symmetric 'normal matrix'): CG's premise fails."""

    def __init__(self, M):
        self.M = M

    def A(self, x):
        return x

    def At(self, y):
        return y @ self.M.T

    def measurement_shape(self, image_shape):
        return tuple(image_shape)

    def project(self, y):
        return y


class NaNAfter(O.LinearOperator):
    """Motion blur whose A returns NaN for batch item 1 from its ``after``-th call on (an overflow)."""

    def __init__(self, after):
        self.inner = O.make_operator("deblur_motion", kernel_size=7, motion_angle=30.0)
        self.after, self.calls = after, 0

    def A(self, x):
        self.calls += 1
        out = self.inner.A(x)
        if self.calls >= self.after:
            out = out.clone()
            out[1] = float("nan")
        return out

    def At(self, y):
        return self.inner.At(y)

    def measurement_shape(self, image_shape):
        return self.inner.measurement_shape(image_shape)

    def project(self, y):
        return self.inner.project(y)


def test_cg_with_a_broken_adjoint_keeps_the_objective_from_rising(monkeypatch):
    g = torch.Generator().manual_seed(6)
    M = torch.eye(16, dtype=torch.float64) + 3.0 * _randn((16, 16), g)
    op = BrokenAdjoint(M)
    x_hat, y = _randn((2, 16), g), _randn((2, 16), g)
    start = objective(op, y, x_hat, x_hat)
    guarded = O.prox_cg(op, y, x_hat, MU, iters=10)
    assert torch.isfinite(guarded).all()
    assert (objective(op, y, guarded, x_hat) <= start).all()
    # without the rise check (only NaN stops an item) the same solve runs away
    monkeypatch.setattr(O, "_CG_SLACK", float("inf"))
    runaway = O.prox_cg(op, y, x_hat, MU, iters=10)
    assert (objective(op, y, runaway, x_hat) > 1e6 * start).all()


def test_cg_discards_a_non_finite_iterate_per_batch_item():
    g = torch.Generator().manual_seed(7)
    shape = (2, 3, 12, 16)
    x_hat = _randn(shape, g)
    clean = O.make_operator("deblur_motion", kernel_size=7, motion_angle=30.0)
    y = clean.A(_randn(shape, g))
    op = NaNAfter(after=4)                            # the 1st and 2nd CG iterates are finite
    out = O.prox_cg(op, y, x_hat, MU, iters=10, tol=1e-12)
    assert torch.isfinite(out).all()
    reference = O.prox_cg(clean, y, x_hat, MU, iters=10, tol=1e-12)
    assert torch.allclose(out[0], reference[0], rtol=0, atol=1e-12)        # item 0: the full solve
    j = objective(clean, y, out, x_hat)
    assert j[1] < objective(clean, y, x_hat, x_hat)[1]                      # item 1: its last finite iterate
    assert j[1] > objective(clean, y, reference, x_hat)[1]
