"""The guard of the data-consistency CG (issue 18): each batch item keeps its last iterate that is
finite and does not raise the objective J = ||y - A x||^2 + mu ||x - x_hat||^2 (which exact CG
lowers monotonically), so the solve never hands the next step NaN or a worse estimate than x_hat."""
import torch

from dreamsampler_core import operators as O

MU = 1e-4


def _rand(shape, g):
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
    M = torch.eye(16, dtype=torch.float64) + 3.0 * _rand((16, 16), g)
    op = BrokenAdjoint(M)
    x_hat, y = _rand((2, 16), g), _rand((2, 16), g)
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
    x_hat = _rand(shape, g)
    clean = O.make_operator("deblur_motion", kernel_size=7, motion_angle=30.0)
    y = clean.A(_rand(shape, g))
    op = NaNAfter(after=4)                            # the 1st and 2nd CG iterates are finite
    out = O.prox_cg(op, y, x_hat, MU, iters=10, tol=1e-12)
    assert torch.isfinite(out).all()
    reference = O.prox_cg(clean, y, x_hat, MU, iters=10, tol=1e-12)
    assert torch.allclose(out[0], reference[0], rtol=0, atol=1e-12)        # item 0: the full solve
    j = objective(clean, y, out, x_hat)
    assert j[1] < objective(clean, y, x_hat, x_hat)[1]                      # item 1: its last finite iterate
    assert j[1] > objective(clean, y, reference, x_hat)[1]
