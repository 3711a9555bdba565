"""Inverse-problem regularizers on the exact Gaussian-mixture oracle (float64, identity codec: the
"latent" is the image, so pixel-space operators act on the oracle's data)."""
import pytest
import torch

from dreamsampler_core import masks as M
from dreamsampler_core import operators as O
from dreamsampler_core.analytic import GaussianMixture
from dreamsampler_core.denoiser import Host
from dreamsampler_core.regularizers import StepContext
from dreamsampler_core.restoration import PRESETS, DataConsistency, IdentityCodec, InverseSchedule, MaskInpaint, preset
from dreamsampler_core.sampler import dream_sample
from dreamsampler_core.schedule import Parameterization, ddim_uniform, scaled_linear_sigmas

SHAPE = (1, 3, 8, 8)
GM = GaussianMixture.two_class(3 * 8 * 8, sep=3.0, std=0.5)
HOLE = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
HOLE[..., :4] = 1.0                                   # left half repainted (ComfyUI: 1 = repaint)


def _setup(kind, n=30):
    param = Parameterization(kind)
    sigmas = ddim_uniform(scaled_linear_sigmas(), n) if kind == "ve" else torch.linspace(1, 0, n + 1, dtype=torch.float64)

    def model(x, sigma):
        return GM.denoise(x, sigma, param, GM.weights)

    extras = {"target": lambda x, sigma: GM.denoise(x, sigma, param, GM.class_weights(1)),
              "target_b": lambda x, sigma: GM.denoise(x, sigma, param, GM.class_weights(0))}

    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_T = param.compose(torch.zeros(SHAPE, dtype=torch.float64), noise, sigmas[0])
    host = Host(grad_model=lambda x, s: GM.denoise(x, s, param, GM.weights))
    return param, sigmas, model, extras, x_T, host


def _source():
    return GM.sample(1, torch.Generator().manual_seed(0), 0).reshape(SHAPE)


def _run(kind, regs, n=30, eta=0.0, seed=3):
    param, sigmas, model, extras, x_T, host = _setup(kind, n)
    return dream_sample(model, x_T.clone(), sigmas, param, extras=extras, regularizers=regs, eta=eta,
                        generator=torch.Generator().manual_seed(seed), host=host)


@pytest.mark.parametrize("kind,opname", [("ve", "sr_bicubic"), ("ve", "deblur_gauss"), ("ve", "inpainting"),
                                         ("ve", "colorization"), ("ve", "deblur_motion"), ("flow", "sr_avgpool"),
                                         ("flow", "deblur_uniform")])
def test_data_consistency_drives_residual_to_noise_level(kind, opname):
    op = O.make_operator(opname, scale=2, blur_sigma=1.0, kernel_size=3, keep=1 - HOLE)
    sigma_y = 0.05
    y = O.degrade(_source(), op, sigma_y, torch.Generator().manual_seed(2))
    dc = DataConsistency(op=op, y=y, codec=IdentityCodec(), sigma_y=sigma_y, schedule=preset("restore"), cg_iters=30)
    free = float(O.residual_norm(op, y, _run(kind, (), n=20)))
    fit = float(O.residual_norm(op, y, _run(kind, (dc,), n=20)))
    assert free > 5 * sigma_y                                 # unconstrained samples ignore y
    assert abs(fit - sigma_y) < 0.1 * sigma_y, (fit, free)    # residual falls to the noise level


@pytest.mark.parametrize("kind", ["ve", "flow"])
def test_known_region_of_inpainting_matches_source(kind):
    """Data consistency (inpainting operator) + text in the hole: the known half equals the source
    up to the measurement noise, the hole goes to the target class."""
    src = _source()
    op = O.Inpainting(1 - HOLE)
    sigma_y = 0.01
    y = O.degrade(src, op, sigma_y, torch.Generator().manual_seed(2))
    regs = (DataConsistency(op=op, y=y, sigma_y=sigma_y, schedule=preset("restore")),
            MaskInpaint(masks=(HOLE,), targets=("target",), schedule=preset("restore")))
    out = _run(kind, regs)
    known = (1 - HOLE).bool().expand(SHAPE)
    assert float((out - src)[known].abs().max()) < 4 * sigma_y
    free = _run(kind, ())
    assert float((free - src)[known].abs().max()) > 0.5
    # the hole moves toward the target class (class 1) along the class axis
    axis = (GM.means[1] - GM.means[0]).reshape(SHAPE)
    mid = (GM.means[1] + GM.means[0]).reshape(SHAPE) / 2
    hole = ~known

    def side(x):
        return float(((x - mid)[hole] * axis[hole]).sum())

    no_text = _run(kind, regs[:1])
    assert side(out) > side(no_text) + 1.0 and side(out) > 0, (side(out), side(no_text))


@pytest.mark.parametrize("kind", ["ve", "flow"])
def test_mask_with_source_latent_pastes_known_region(kind):
    src = _source()
    out = _run(kind, (MaskInpaint(masks=(HOLE,), targets=("target",), source=src, schedule=preset("restore")),))
    known = (1 - HOLE).bool().expand(SHAPE)
    assert float((out - src)[known].abs().max()) < 1e-2


@pytest.mark.parametrize("kind", ["ve", "flow"])
def test_zero_strength_reduces_exactly_to_unregularized_sampler(kind):
    op = O.make_operator("sr_bicubic", scale=2)
    y = O.degrade(_source(), op, 0.01, torch.Generator().manual_seed(2))
    base = _run(kind, (), eta=0.3)
    for sched in ("paper", "restore"):
        regs = (DataConsistency(op=op, y=y, strength=0.0, schedule=preset(sched), dps=1.0),
                MaskInpaint(masks=(HOLE,), targets=("target",), strength=0.0, schedule=preset(sched)))
        assert torch.equal(_run(kind, regs, eta=0.3), base)
    # and continuously: a vanishing strength through the full solve path
    tiny = (DataConsistency(op=op, y=y, strength=1e-12, schedule=preset("restore")),)
    assert float((_run(kind, tiny, eta=0.3) - base).abs().max()) < 1e-9


def test_paper_schedule_is_the_official_dream_inpaint():
    """Data consistency: 57 of 200 steps, t = 996 ... 156 on the SD table, gamma = eta = alpha_bar_t
    there.  Mask inpainting draws the same fresh noise as a rate: over every 3 steps of the 200-step
    grid it keeps sqrt(1 - alpha_bar_t) of the base noise, as one official step, until t = 156."""
    table = scaled_linear_sigmas()
    sigmas = ddim_uniform(table, 200)
    sched = preset("paper")
    param = Parameterization("ve")
    active, noisy = [], []
    reg = MaskInpaint(masks=(HOLE,), targets=(None,), schedule=sched)
    for i in range(200):
        u = (996 - 5 * i) / 999
        ctx = StepContext(i=i, n=200, sigma=sigmas[i], sigma_next=sigmas[i + 1], x=None, base=None, eps=None,
                          preds={}, param=param, span=5 / 999, u=u)
        abar = float(1 / (1 + sigmas[i] ** 2))
        if sched.active(ctx):
            active.append(i)
            assert sched.gamma(ctx) == pytest.approx(abar)
            assert DataConsistency(op=O.Inpainting(1 - HOLE), y=torch.zeros(SHAPE), schedule=sched).renoise_eta(
                ctx) == pytest.approx(abar)
        eta = reg.renoise_eta(ctx)
        if eta is not None:
            noisy.append(i)
            assert (1 - eta) ** 3 == pytest.approx(1 - abar, rel=2e-3)
    assert len(active) == 57 and active == list(range(0, 170, 3))
    assert noisy == list(range(170))
    t = [int((table - sigmas[i]).abs().argmin()) for i in (active[0], active[-1])]
    assert t == [996, 156]


def test_paper_preset_renoises_with_fresh_noise_only_where_active():
    op = O.make_operator("sr_avgpool", scale=2)
    y = O.degrade(_source(), op, 0.0)
    paper = (DataConsistency(op=op, y=y, schedule=preset("paper")),)
    restore = (DataConsistency(op=op, y=y, schedule=preset("restore")),)
    assert not torch.equal(_run("ve", paper, seed=1), _run("ve", paper, seed=2))     # eta_t = alpha_bar_t
    assert torch.equal(_run("ve", restore, seed=1), _run("ve", restore, seed=2))     # deterministic


def test_dps_step_reduces_residual_on_inactive_steps():
    src = _source()
    op = O.Inpainting(1 - HOLE)
    y = O.degrade(src, op, 0.0)
    without = _run("ve", (DataConsistency(op=op, y=y, schedule=preset("paper")),), n=40)
    with_dps = _run("ve", (DataConsistency(op=op, y=y, schedule=preset("paper"), dps=1.0),), n=40)
    r0, r1 = float(O.residual_norm(op, y, without)), float(O.residual_norm(op, y, with_dps))
    assert r1 < 0.5 * r0, (r0, r1)


def test_dps_gradient_matches_finite_differences():
    param, sigmas, _, _, _, host = _setup("ve")
    op = O.make_operator("sr_avgpool", scale=2)
    y = O.degrade(_source(), op, 0.0)
    dc = DataConsistency(op=op, y=y, dps=1.0)
    sigma = sigmas[10]
    x = _source() + sigma * torch.randn(SHAPE, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ctx = StepContext(i=1, n=30, sigma=sigma, sigma_next=sigmas[11], x=x, base=None, eps=None, preds={},
                      param=param, span=1 / 30, host=host)
    step = dc.dps_step(ctx) / float(param.vp_scale(sigma))

    def loss(xx):
        return float(torch.linalg.vector_norm(y - op.A(GM.denoise(xx, sigma, param, GM.weights))))

    d = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    h = 1e-6
    fd = (loss(x + h * d) - loss(x - h * d)) / (2 * h)
    assert float((step * d).sum()) == pytest.approx(fd, rel=1e-5)


def test_multi_mask_regions_use_their_own_prompts_in_the_official_blend():
    """Disjoint binary masks: the official blend's form
    z <- P z + (1 - P)(1 - k) z + sum_i (1 - M_i) k z^{c_i}  (M_i = 1 - mask_i, P = prod M_i),
    with the step weight k = 1 - sigma_next / sigma in place of the official alpha_bar_t."""
    param = Parameterization("ve")
    m1 = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    m2 = torch.zeros_like(m1)
    m1[..., :3, :] = 1
    m2[..., 5:, :] = 1
    g = torch.Generator().manual_seed(6)
    z, c1, c2 = (torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in range(3))
    sigma = torch.tensor(0.8, dtype=torch.float64)
    ctx = StepContext(i=0, n=10, sigma=sigma, sigma_next=torch.tensor(0.5), x=z, base=z, eps=z,
                      preds={"a": c1, "b": c2}, param=param, span=0.1)
    k = 1 - 0.5 / 0.8
    out = MaskInpaint(masks=(m1, m2), targets=("a", "b"), schedule=preset("restore"))(z, ctx)
    P = (1 - m1) * (1 - m2)
    blend = P * z + (1 - P) * (1 - k) * z + m1 * k * c1 + m2 * k * c2
    assert torch.allclose(out, blend, atol=1e-14)


@pytest.mark.parametrize("kind,eta", [("ve", 0.0), ("ve", 0.4), ("flow", 0.0), ("flow", 0.7)])
def test_mask_step_is_the_sampler_step_of_the_guided_prediction(kind, eta):
    """Inside the hole, z + w k (z^c - z) renoised with the base noise (and eta fresh noise) lands
    exactly where the same step with the guided prediction z + w (z^c - z) and its own noise lands;
    outside it (keep = 1) where the source's own step lands; at any eta, w, parameterization."""
    param = Parameterization(kind)
    g = torch.Generator().manual_seed(8)
    x, base, tgt, src, xi = (torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in range(5))
    sigma, sigma_next = (torch.tensor(3.0), torch.tensor(1.2)) if kind == "ve" else (torch.tensor(0.8),
                                                                                     torch.tensor(0.55))
    for w in (1.0, 2.5):
        ctx = StepContext(i=3, n=10, sigma=sigma, sigma_next=sigma_next, x=x, base=base,
                          eps=param.eps(x, base, sigma), preds={"t": tgt}, param=param, span=0.1, eta=eta)
        reg = MaskInpaint(masks=(HOLE,), targets=("t",), strength=w, source=src, keep=1.0, schedule=preset("restore"))
        z = reg(base, ctx)

        def step(pred):
            return param.compose(pred, (1 - eta) ** 0.5 * param.eps(x, pred, sigma) + eta ** 0.5 * xi, sigma_next)

        ours = param.compose(z, (1 - eta) ** 0.5 * ctx.eps + eta ** 0.5 * xi, sigma_next)
        guided = base + w * (tgt - base)
        hole = HOLE.bool().expand(SHAPE)
        assert torch.allclose(ours[hole], step(guided)[hole], atol=1e-12)
        assert torch.allclose(ours[~hole], step(src)[~hole], atol=1e-12)


def test_overlapping_masks_are_blended_not_summed():
    m = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    hole, shares = M.region_shares([m, m], "average")
    assert torch.allclose(sum(shares), hole) and torch.allclose(shares[0], torch.full_like(m, 0.5))
    hole, shares = M.region_shares([m, m], "last_on_top")
    assert torch.equal(shares[0], torch.zeros_like(m)) and torch.equal(shares[1], m)
    # soft, partly overlapping masks: shares always add up to the union, never above 1
    g = torch.Generator().manual_seed(7)
    ms = [torch.rand(1, 1, 6, 6, generator=g, dtype=torch.float64) for _ in range(3)]
    for rule in M.OVERLAP_RULES:
        hole, shares = M.region_shares(ms, rule)
        assert torch.allclose(sum(shares), hole) and float(hole.max()) <= 1.0
        assert all(float(s.min()) >= 0 for s in shares)
    # on the sampler: two identical masks with one prompt each give that prompt's pull once
    sigma = torch.tensor(0.8, dtype=torch.float64)
    z, c = torch.zeros(SHAPE, dtype=torch.float64), torch.ones(SHAPE, dtype=torch.float64)
    ctx = StepContext(i=0, n=10, sigma=sigma, sigma_next=sigma / 2, x=z, base=z, eps=z, preds={"a": c, "b": c},
                      param=Parameterization("ve"), span=0.1)
    one = MaskInpaint(masks=(HOLE,), targets=("a",), schedule=preset("restore"))(z, ctx)
    two = MaskInpaint(masks=(HOLE, HOLE), targets=("a", "b"), schedule=preset("restore"))(z, ctx)
    assert torch.allclose(one, two)


def test_mask_area_pooling_feather_and_size_errors():
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :20] = 1                                     # 20 px of 64: cell 2 of 8 is half covered
    grid = M.to_latent_grid(mask, (8, 8))
    assert grid.shape == (1, 1, 8, 8)
    assert torch.allclose(grid[0, 0, 0], torch.tensor([1, 1, 0.5, 0, 0, 0, 0, 0.]))
    # ComfyUI crops a 68 px image to 64 centered before encoding: the mask follows
    big = torch.nn.functional.pad(mask, (2, 2, 2, 2))
    assert torch.allclose(M.to_latent_grid(big, (8, 8)), grid)
    with pytest.raises(M.MaskError, match="the mask is 48x64 pixels but the latent is 8x8"):
        M.to_latent_grid(torch.ones(1, 64, 48), (8, 8))
    soft = M.feather(M.as_mask4d(mask), 4)
    assert float(soft.min()) >= 0 and float(soft.max()) <= 1
    assert 0.3 < float(soft[0, 0, 0, 20]) < 0.7 and float(soft[0, 0, 0, 0]) == pytest.approx(1.0)
    with pytest.raises(M.MaskError):
        M.as_mask4d(torch.ones(2, 2, 3, 3))
    with pytest.raises(M.MaskError, match="NaN"):
        M.as_mask4d(torch.full((1, 4, 4), float("nan")))


def test_measurement_mismatch_is_reported_when_sampling():
    op = O.make_operator("sr_bicubic", scale=4)
    y = torch.zeros(1, 3, 4, 4, dtype=torch.float64)        # a 16x16 image's measurement; latent is 8x8
    dc = DataConsistency(op=op, y=y, schedule=preset("restore"))
    with pytest.raises(O.OperatorError, match="does not fit"):
        _run("ve", (dc,), n=3)
    with pytest.raises(O.OperatorError, match="NaN"):
        DataConsistency(op=op, y=torch.full((1, 3, 2, 2), float("nan")))


def test_schedule_validation():
    with pytest.raises(ValueError):
        InverseSchedule(every=0)
    with pytest.raises(ValueError):
        preset("nope")
    assert set(PRESETS) == {"paper", "restore", "project"}


def test_motion_blur_data_consistency_solves_the_proximal_step():
    """Data consistency's CG (defaults) on a 15 px motion blur at the official mu = 1e-4, sigma_y = 0:
    the result is within 1 % (of the correction x* - x_hat) of the exact proximal solution x*, solved
    densely (0.27 %); the official fixed 10 iterations are 66 % off."""
    H = W = 32
    op = O.make_operator("deblur_motion", kernel_size=15, motion_angle=30.0)
    g = torch.Generator().manual_seed(11)
    x_true = torch.rand(1, 3, H, W, generator=g, dtype=torch.float64) * 2 - 1
    x_hat = x_true + 0.3 * torch.randn(x_true.shape, generator=g, dtype=torch.float64)
    y = O.degrade(x_true, op, 0.0)
    mu = 1e-4
    n = H * W
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, H, W)
    A = op.A(basis).reshape(n, -1).T                                  # one channel's operator, dense
    normal = A.T @ A + mu * torch.eye(n, dtype=torch.float64)
    rhs = (A.T @ y[0].reshape(3, -1).T + mu * x_hat[0].reshape(3, -1).T)
    exact = torch.linalg.solve(normal, rhs).T.reshape(1, 3, H, W)

    def rel_err(x):
        return float((x - exact).norm() / (exact - x_hat).norm())

    dc = DataConsistency(op=op, y=y, codec=IdentityCodec(), mu=mu)
    assert not op.closed_form and dc.sigma_y == 0.0
    assert rel_err(dc.solve(x_hat)) < 1e-2, rel_err(dc.solve(x_hat))
    assert rel_err(O.prox_cg(op, y, x_hat, mu, iters=10, tol=1e-4)) > 0.5        # the official solver
