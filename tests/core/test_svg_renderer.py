"""Tests of dreamsampler_core.svg.renderer (+ .scene, .pydiffvg_bridge) and .init: parity with reference
rasterisers, exact fill rules, finite-difference gradients, sparse vs dense compositing, batching, the
pydiffvg adapter, a fit-by-Adam test, and the initialisers."""
from __future__ import annotations

import io
import math
import os
import sys
import time
import types

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from dreamsampler_core.svg import SVGPath, SVGScene, render, render_rgba, scene_to_svg  # noqa: E402
from dreamsampler_core.svg import renderer as R  # noqa: E402
from dreamsampler_core.svg import pydiffvg_bridge  # noqa: E402
from dreamsampler_core.svg import init as I  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")





# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _png_over_white(png: bytes) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(np.float64) / 255
    return a[..., :3] * a[..., 3:] + (1 - a[..., 3:])


def _resvg(text, w, h):
    import resvg_py

    return _png_over_white(bytes(resvg_py.svg_to_bytes(svg_string=text, width=w, height=h)))


def _cairo(text, w, h):
    import cairosvg

    return _png_over_white(cairosvg.svg2png(bytestring=text.encode(), output_width=w, output_height=h))


def _available_references():
    refs = []
    for name, mod, fn in (("resvg", "resvg_py", _resvg), ("cairo", "cairosvg", _cairo)):
        try:
            __import__(mod)
            refs.append(pytest.param(fn, id=name))
        except Exception:  # ImportError, or OSError when libcairo is missing
            refs.append(pytest.param(fn, id=name, marks=pytest.mark.skip(reason=f"{mod} not installed")))
    return refs


REFERENCES = _available_references()


def psnr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return 10 * math.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-20))


def circle(cx, cy, r, n=4, reverse=False, dtype=torch.float32) -> torch.Tensor:
    """Closed cubic approximation of a circle, [3n, 2]."""
    k = 4 / 3 * math.tan(math.pi / (2 * n))
    pts = []
    for i in range(n):
        a0, a1 = 2 * math.pi * i / n, 2 * math.pi * (i + 1) / n
        p0 = (cx + r * math.cos(a0), cy + r * math.sin(a0))
        p1 = (cx + r * math.cos(a1), cy + r * math.sin(a1))
        pts += [p0, (p0[0] - k * r * math.sin(a0), p0[1] + k * r * math.cos(a0)),
                (p1[0] + k * r * math.sin(a1), p1[1] - k * r * math.cos(a1))]
    t = torch.tensor(pts, dtype=dtype)
    if reverse:  # same curve, opposite direction: reverse the closed control sequence
        t = torch.cat([t[:1], t[1:].flip(0)])
    return t


def polygon(vertices, dtype=torch.float32) -> torch.Tensor:
    """Closed polygon as cubics (lines elevated exactly), [3n, 2]."""
    v = torch.tensor(vertices, dtype=dtype)
    nxt = v.roll(-1, 0)
    return torch.stack([v, v + (nxt - v) / 3, v + 2 * (nxt - v) / 3], 1).reshape(-1, 2)


def rgba(*c, dtype=torch.float32):
    return torch.tensor(c, dtype=dtype)


def random_blobs(n, size, seed, strokes=False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    paths = []
    for i in range(n):
        c = torch.rand(2, generator=g, dtype=torch.float64) * size
        r = size * (0.04 + 0.12 * float(torch.rand(1, generator=g)))
        pts = circle(float(c[0]), float(c[1]), r, dtype=torch.float64)
        pts = pts + torch.randn(12, 2, generator=g, dtype=torch.float64) * r * 0.3
        fill = torch.rand(4, generator=g, dtype=torch.float64)
        fill[3] = 0.3 + 0.7 * fill[3]
        stroke = torch.rand(4, generator=g, dtype=torch.float64) if strokes and i % 2 else None
        width = 1.0 + 4.0 * float(torch.rand(1, generator=g))
        paths.append(SVGPath(pts.to(dtype), fill.to(dtype), None if stroke is None else stroke.to(dtype),
                             width, "evenodd" if i % 3 == 0 else "nonzero"))
    return paths


def scene_overlapping_fills():
    return SVGScene(128, 128, random_blobs(24, 128, seed=1))


def scene_strokes():
    paths = random_blobs(10, 128, seed=2, strokes=True)
    # stroke-only closed path, thick and thin
    paths.append(SVGPath(circle(64, 64, 40), None, rgba(0.1, 0.2, 0.9, 1.0), 6.0))
    paths.append(SVGPath(circle(30, 90, 15), None, rgba(0.9, 0.1, 0.1, 1.0), 0.7))
    # open stroked zig-zag (round caps), filled as if closed
    pts = torch.tensor([[10, 10], [30, 0], [40, 40], [60, 20], [80, 0], [90, 50], [118, 30]],
                       dtype=torch.float32)
    paths.append(SVGPath(pts, None, rgba(0, 0, 0, 1), 3.0, closed=False))
    paths.append(SVGPath(pts + torch.tensor([0.0, 70.0]), rgba(1, 0.8, 0, 0.8), rgba(0, 0.5, 0, 1), 2.0,
                         closed=False))
    return SVGScene(128, 128, paths, rgba(0.95, 0.95, 0.85))


def scene_opacity():
    paths = []
    for i, a in enumerate((0.15, 0.35, 0.6, 0.9)):
        paths.append(SVGPath(circle(35 + 20 * i, 60 + (i % 2) * 15, 30), rgba(i / 4, 0.3, 1 - i / 4, a),
                             rgba(0.2, 0.9 - i / 5, 0.1, 1 - a), 4.0))
    return SVGScene(128, 128, paths)


def scene_evenodd_holes():
    ring = torch.cat([circle(40, 40, 30), circle(40, 40, 14)])           # same direction
    ring_rev = torch.cat([circle(88, 40, 30), circle(88, 40, 14, reverse=True)])
    star = [(64 + 40 * math.cos(-math.pi / 2 + k * 4 * math.pi / 5),
             95 + 30 * math.sin(-math.pi / 2 + k * 4 * math.pi / 5)) for k in range(5)]
    return SVGScene(128, 128, [
        SVGPath(ring, rgba(0.8, 0.1, 0.1, 1), fill_rule="evenodd", segments=(4, 4)),
        SVGPath(ring_rev, rgba(0.1, 0.1, 0.8, 0.9), rgba(0, 0, 0, 1), 1.5, "nonzero", segments=(4, 4)),
        SVGPath(polygon(star), rgba(0.1, 0.6, 0.2, 0.85), fill_rule="evenodd"),
        SVGPath(polygon(star) + torch.tensor([0.0, -60.0]), rgba(0.5, 0.5, 0.1, 0.5), fill_rule="nonzero"),
    ])


SCENES = {"overlapping_fills": scene_overlapping_fills, "strokes": scene_strokes,
          "opacity": scene_opacity, "evenodd_holes": scene_evenodd_holes}


# ----------------------------------------------------------------------------------------------
# parity with reference rasterisers
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("name", list(SCENES))
def test_matches_reference_rasterizer(name, reference):
    scene = SCENES[name]()
    ours = render(scene)[0].numpy()
    ref = reference(scene_to_svg(scene), scene.width, scene.height)
    value = psnr(ours, ref)
    assert value >= 35.0, f"{name}: {value:.1f} dB"


def test_coarse_flattening_is_detectably_worse():
    """The parity test can fail: 2 line pieces per cubic must fall well below the 35 dB bar."""
    pytest.importorskip("resvg_py")
    scene = scene_overlapping_fills()
    ref = _resvg(scene_to_svg(scene), 128, 128)
    assert psnr(render(scene, samples_per_segment=2)[0].numpy(), ref) < 30.0


# ----------------------------------------------------------------------------------------------
# exact semantics
# ----------------------------------------------------------------------------------------------
def test_fill_rules_on_ring_and_star():
    scene = scene_evenodd_holes()
    img = render(scene)[0]
    white = torch.ones(3)
    assert torch.allclose(img[40, 40], white, atol=1e-6)                  # even-odd hole
    assert torch.allclose(img[40, 88], white, atol=1e-6)                  # non-zero, reversed inner
    assert torch.allclose(img[40, 16], torch.tensor([0.8, 0.1, 0.1]), atol=1e-6)   # ring body
    # star centre: winding 2 -> empty for even-odd, filled for non-zero
    assert torch.allclose(img[97, 64], white, atol=1e-6)
    assert not torch.allclose(img[37, 64], white, atol=0.1)
    # same-direction ring with non-zero has no hole
    filled = SVGScene(128, 128, [SVGPath(scene.paths[0].points, rgba(0, 0, 0, 1), segments=(4, 4))])
    assert torch.allclose(render(filled)[0, 40, 40], torch.zeros(3), atol=1e-6)


def test_axis_aligned_edge_coverage_is_exact_area():
    """A square with edges at x = 10.25 and x = 20.75 covers 0.75 of the boundary pixels' area."""
    sq = SVGScene(32, 32, [SVGPath(polygon([(10.25, 8), (20.75, 8), (20.75, 24), (10.25, 24)]),
                                   rgba(0, 0, 0, 1))], rgba(1, 1, 1))
    img = render(sq)[0, 16, :, 0]
    assert abs(float(img[10]) - 0.25) < 1e-6 and abs(float(img[20]) - 0.25) < 1e-6
    assert float(img[15]) == 0.0 and float(img[5]) == 1.0


def test_stroke_coverage_and_half_width_convention():
    """A vertical stroke of width 4 centred at x = 16 covers pixels 14..17 fully, nothing at 12/19."""
    line = SVGPath(torch.tensor([[16.0, 2], [16, 12], [16, 20], [16, 30]]), None, rgba(0, 0, 0, 1), 4.0,
                   closed=False)
    img = render(SVGScene(32, 32, [line]))[0, 16, :, 0]
    assert torch.allclose(img[14:18], torch.zeros(4), atol=1e-6)
    assert float(img[12]) == 1.0 and float(img[19]) == 1.0


def test_render_rgba_is_unpremultiplied_and_transparent_outside():
    scene = SVGScene(32, 32, [SVGPath(polygon([(4, 4), (20, 4), (20, 20), (4, 20)]), rgba(1, 0, 0, 0.5))])
    out = render_rgba(scene)[0]
    assert out.shape == (32, 32, 4)
    assert torch.allclose(out[10, 10], torch.tensor([1.0, 0, 0, 0.5]), atol=1e-6)
    assert float(out[28, 28, 3]) == 0.0


def test_batch_and_layouts():
    a, b = scene_opacity(), scene_evenodd_holes()
    batch = render([a, b])
    assert batch.shape == (2, 128, 128, 3)
    assert torch.equal(batch[0], render(a)[0]) and torch.equal(batch[1], render(b)[0])
    assert torch.equal(render([a, b], layout="BCHW"), batch.permute(0, 3, 1, 2))
    assert 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
    with pytest.raises(ValueError):
        render([a, SVGScene(64, 64, [])])


def test_background_image_and_offcanvas_paths():
    bg = torch.rand(16, 24, 3)
    far = SVGPath(circle(500, 500, 10), rgba(0, 0, 0, 1))
    partly = SVGPath(circle(-5, 8, 10), rgba(0, 0, 0, 1))
    img = render(SVGScene(24, 16, [far, partly], bg))[0]
    assert torch.equal(img[:, 12:], bg[:, 12:])
    assert float(img[8, 0].max()) == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="needs 12"):
        SVGPath(torch.zeros(11, 2), rgba(0, 0, 0, 1), segments=(4,))
    with pytest.raises(ValueError, match="fill_rule"):
        SVGPath(torch.zeros(12, 2), fill_rule="oddeven")
    nan = circle(10, 10, 5)
    nan[3, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        render(SVGScene(32, 32, [SVGPath(nan, rgba(0, 0, 0, 1))]))


# ----------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------
def _fd_scene():
    d = torch.float64
    p1 = circle(11.3, 12.1, 7.2, dtype=d) + torch.tensor([[0.3, -0.2]] * 12, dtype=d)
    p2 = polygon([(6.13, 17.31), (20.42, 5.17), (21.71, 19.62)], dtype=d)
    open_pts = torch.tensor([[3.2, 3.1], [9.7, 1.4], [14.2, 9.9], [22.6, 4.3]], dtype=d)
    return SVGScene(24, 24, [
        SVGPath(p1, rgba(0.9, 0.2, 0.1, 0.7, dtype=d), rgba(0.1, 0.3, 0.8, 0.9, dtype=d),
                torch.tensor(2.3, dtype=d), "nonzero"),
        SVGPath(p2, rgba(0.2, 0.7, 0.3, 0.6, dtype=d), None, 1.0, "evenodd"),
        SVGPath(open_pts, None, rgba(0.0, 0.0, 0.0, 0.8, dtype=d), torch.tensor(1.7, dtype=d), closed=False),
    ], rgba(0.3, 0.6, 0.9, dtype=d))


def test_gradients_match_finite_differences_float64():
    scene = _fd_scene().requires_grad_(points=True, colors=True, widths=True, background=True)
    params = scene.parameters(points=True, colors=True, widths=True, background=True)
    weights = torch.rand(1, 24, 24, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss():
        return (render(scene, samples_per_segment=6) * weights).sum()

    loss().backward()
    used = [p for p in params if p.grad is not None]
    assert len(used) == len(params) - 1          # only the unstroked path's width is unused
    worst = 0.0
    h = 1e-6
    with torch.no_grad():
        for p in params:
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + h
                up = float(loss())
                flat[i] = old - h
                down = float(loss())
                flat[i] = old
                fd = (up - down) / (2 * h)
                auto = float(p.grad.view(-1)[i]) if p.grad is not None else 0.0
                worst = max(worst, abs(fd - auto) / max(1.0, abs(fd)))
    assert worst < 1e-5, worst
    # every kind of parameter actually receives gradient
    for p in used:
        assert float(p.grad.abs().sum()) > 0


def test_sparse_compositing_equals_dense_float64():
    g = torch.Generator().manual_seed(3)
    d = torch.float64
    bg = torch.rand(20, 30, 3, generator=g, dtype=d).requires_grad_()
    boxes = [(0, 20, 0, 30), (3, 11, 5, 25), (8, 20, 0, 9), (5, 6, 7, 8)]
    layers = [(torch.rand(y1 - y0, x1 - x0, generator=g, dtype=d).requires_grad_(),
               torch.rand(3, generator=g, dtype=d).requires_grad_()) for y0, y1, x0, x1 in boxes]
    w = torch.rand(20, 30, 3, generator=g, dtype=d)
    leaves = [bg] + [t for layer in layers for t in layer]
    sparse = R.composite_over(bg, boxes, layers)
    gs = torch.autograd.grad((sparse * w).sum(), leaves)
    dense = R.composite_over_dense(bg, boxes, layers)
    gd = torch.autograd.grad((dense * w).sum(), leaves)
    assert torch.allclose(sparse, dense, atol=1e-13)
    for a, b in zip(gs, gd):
        assert torch.allclose(a, b, atol=1e-12)


def test_fit_scene_by_adam_reaches_30db():
    """Optimise a perturbed scene to match a target render (points, colours, widths)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    target_paths = []
    for i, (cx, cy, r) in enumerate([(20, 22, 13), (44, 20, 11), (32, 42, 15), (16, 48, 9), (50, 48, 10)]):
        pts = circle(cx, cy, r) + torch.randn(12, 2, generator=g) * 1.5
        fill = torch.cat([torch.rand(3, generator=g), torch.tensor([0.9])])
        stroke = rgba(0.1, 0.1, 0.1, 1.0) if i == 2 else None
        target_paths.append(SVGPath(pts, fill, stroke, 2.5))
    target_scene = SVGScene(64, 64, target_paths, rgba(1, 1, 1))
    target = render(target_scene)
    scene = target_scene.clone()
    for p in scene.paths:
        p.points += torch.randn(p.points.shape, generator=g) * 2.0
        p.fill[:3] = torch.rand(3, generator=g)
        p.stroke_width = torch.tensor(1.0) if p.stroke is not None else p.stroke_width
    scene.requires_grad_(widths=True)
    start = psnr(render(scene)[0].detach().numpy(), target[0].numpy())
    opt = torch.optim.Adam([{"params": scene.parameters(True, False, False), "lr": 0.2},
                            {"params": scene.parameters(False, True, True), "lr": 0.02}])
    for _ in range(150):
        opt.zero_grad()
        loss = (render(scene) - target).square().mean()
        loss.backward()
        opt.step()
        scene.clamp_()
    final = psnr(render(scene)[0].detach().numpy(), target[0].numpy())
    assert start < 22.0 and final >= 30.0, (start, final)


def test_cpu_speed_256px_64_paths():
    """Sparse path: 256² with 64 paths forward+backward well under 2 s on 2 CPU threads."""
    scene = SVGScene(256, 256, random_blobs(64, 256, seed=7, strokes=True)).requires_grad_(widths=True)
    render(scene).mean().backward()
    t0 = time.perf_counter()
    render(scene).square().mean().backward()
    assert time.perf_counter() - t0 < 2.0


# ----------------------------------------------------------------------------------------------
# pydiffvg adapter (fake module: the real one is rarely installable)
# ----------------------------------------------------------------------------------------------
def _fake_pydiffvg():
    mod = types.ModuleType("pydiffvg")

    class Path:
        def __init__(self, num_control_points, points, is_closed, stroke_width=torch.tensor(1.0), id=""):
            self.num_control_points, self.points = num_control_points, points
            self.is_closed, self.stroke_width = is_closed, stroke_width

    class ShapeGroup:
        def __init__(self, shape_ids, fill_color, use_even_odd_rule=True, stroke_color=None,
                     shape_to_canvas=torch.eye(3), id=""):
            self.shape_ids, self.fill_color, self.use_even_odd_rule = shape_ids, fill_color, use_even_odd_rule
            self.stroke_color, self.shape_to_canvas = stroke_color, shape_to_canvas

    mod.Path, mod.ShapeGroup = Path, ShapeGroup
    return mod


def test_pydiffvg_adapter_conventions_and_round_trip():
    pyd = _fake_pydiffvg()
    scene = scene_evenodd_holes()
    scene.paths[1].stroke_width = torch.tensor(3.0, requires_grad=True)
    shapes, groups = pydiffvg_bridge.to_pydiffvg(scene, pyd)
    assert len(shapes) == 2 + 2 + 1 + 1 and len(groups) == 4
    assert shapes[2].stroke_width.item() == 1.5                              # half width
    assert shapes[0].num_control_points.tolist() == [2, 2, 2, 2] and shapes[0].points.shape == (12, 2)
    assert [g.use_even_odd_rule for g in groups] == [True, False, True, False]
    assert groups[1].shape_ids.tolist() == [2, 3]
    back = pydiffvg_bridge.from_pydiffvg(128, 128, shapes, groups)
    assert torch.equal(render(back), render(scene))
    render(back).sum().backward()
    assert scene.paths[1].stroke_width.grad is not None                     # autograd link kept


def test_pydiffvg_mixed_segments_and_transform():
    pyd = _fake_pydiffvg()
    # a triangle of line / quadratic / cubic segments, shifted by shape_to_canvas
    pts = torch.tensor([[2.0, 2], [20, 2], [26, 14], [14, 24], [8, 20], [4, 12]])
    shp = pyd.Path(torch.tensor([0, 1, 2]), pts, True, torch.tensor(0.5))
    m = torch.tensor([[1.0, 0, 3], [0, 1, 2], [0, 0, 1]])
    grp = pyd.ShapeGroup(torch.tensor([0]), rgba(0, 0, 0, 1), False, None, m)
    scene = pydiffvg_bridge.from_pydiffvg(32, 32, [shp], [grp])
    p = scene.paths[0].points
    assert p.shape == (9, 2)
    assert torch.allclose(p[0], torch.tensor([5.0, 4])) and torch.allclose(p[3], torch.tensor([23.0, 4]))
    assert torch.allclose(p[4], torch.tensor([23.0, 4]) + 2 / 3 * torch.tensor([6.0, 12]))  # quad elevated
    assert scene.paths[0].stroke_width.item() == 1.0


def test_pydiffvg_backend_missing_gives_helpful_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydiffvg", None)
    with pytest.raises(ImportError, match="backend='torch'"):
        render(scene_opacity(), backend="pydiffvg")


# ----------------------------------------------------------------------------------------------
# initialisation
# ----------------------------------------------------------------------------------------------
def test_random_paths_vectorfusion_defaults_and_seeding():
    a = I.random_paths(600, 600, generator=torch.Generator().manual_seed(1))
    b = I.random_paths(600, 600, generator=torch.Generator().manual_seed(1))
    c = I.random_paths(600, 600, generator=torch.Generator().manual_seed(2))
    assert len(a.paths) == 128 and a.paths[0].points.shape == (12, 2) and a.paths[0].num_segments == 4
    assert all(torch.equal(p.points, q.points) and torch.equal(p.fill, q.fill) for p, q in zip(a.paths, b.paths))
    assert not torch.equal(a.paths[0].points, c.paths[0].points)
    pts = torch.stack([p.points for p in a.paths])
    centre = pts.mean(1, keepdim=True)
    assert torch.allclose((pts - centre).norm(dim=-1), torch.tensor(20.0), atol=1e-3)   # radius 20 @ 600 px
    assert float(centre.min()) >= 0 and float(centre[..., 0].max()) <= 600


def test_random_paths_take_target_colours():
    target = torch.zeros(1, 50, 100, 3)
    target[..., :50, 0] = 1.0          # left half red, right half blue
    target[..., 50:, 2] = 1.0
    s = I.random_paths(100, 50, 32, generator=torch.Generator().manual_seed(0), target=target)
    for p in s.paths:
        cx = float(p.points[:, 0].mean())
        expect = rgba(1, 0, 0, 1) if cx < 50 else rgba(0, 0, 1, 1)
        assert torch.equal(p.fill, expect)


def _synthetic_image():
    h, w = 96, 128
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    img = torch.ones(h, w, 3) * torch.tensor([0.9, 0.85, 0.7])
    for cx, cy, r, c in [(30, 30, 15, (1, 0, 0)), (80, 50, 25, (0, 0.5, 1)), (105, 20, 10, (0.1, 0.8, 0.1))]:
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = torch.tensor(c, dtype=torch.float32)
    return img


def test_paths_from_image_kmeans_blobs():
    img = _synthetic_image()
    scene = I.paths_from_image(img[None], num_colors=5, generator=torch.Generator().manual_seed(0))
    assert (scene.width, scene.height) == (128, 96)
    assert torch.allclose(scene.background, torch.tensor([0.9, 0.85, 0.7]), atol=1e-4)
    assert len(scene.paths) == 3
    out = render(scene)[0]
    assert psnr(out.numpy(), img.numpy()) > 25.0
    flat = render(SVGScene(128, 96, [], scene.background))[0]
    assert psnr(flat.numpy(), img.numpy()) < 15.0


def test_paths_from_image_vtracer_optional():
    pytest.importorskip("vtracer")
    scene = I.paths_from_image(_synthetic_image(), method="vtracer")
    assert len(scene.paths) >= 3
    assert psnr(render(scene)[0].numpy(), _synthetic_image().numpy()) > 22.0


def test_label_components_and_sparse_centres():
    m = np.zeros((10, 12), dtype=bool)
    m[1:4, 1:4] = True
    m[6:9, 2:10] = True
    m[5, 9] = True          # touches the second blob (4-connected)
    m[0, 11] = True
    labels, n = I.label_components(m)
    assert n == 3 and labels[5, 9] == labels[7, 5] and labels[2, 2] != labels[7, 5]
    err = torch.zeros(40, 40)
    err[5:9, 5:9] = 1.0
    err[20:35, 22:30] = 1.0
    centres = I.sparse_centers(err, 2)
    assert centres[0].tolist() == [25.5, 27.5] or (22 <= centres[0, 0] <= 30 and 20 <= centres[0, 1] <= 35)
    assert 5 <= centres[1, 0] <= 9 and 5 <= centres[1, 1] <= 9


# ----------------------------------------------------------------------------- limits (issue 16)
def test_no_grad_render_composites_as_it_goes_and_equals_the_autograd_path():
    from dreamsampler_core.svg import random_paths
    scene = random_paths(48, 40, num_paths=12, generator=torch.Generator().manual_seed(3), stroke_width=2.0)
    with torch.no_grad():
        plain = render(scene)
    traced = scene.clone().requires_grad_(points=True, colors=True)
    assert torch.equal(plain, render(traced).detach())


def test_check_render_refuses_before_drawing():
    from dreamsampler_core.svg.renderer import RenderLimitError, check_render, render_cost
    square = torch.tensor([[0.0, 0], [1024, 0], [1024, 1024], [0, 1024]])
    full = SVGPath(square.repeat_interleave(3, 0), fill=torch.tensor([1.0, 0, 0, 1]))     # a full-canvas square
    bomb = SVGScene(1024, 1024, [full] * 1100)
    with pytest.raises(RenderLimitError, match="Mpx in total"):
        check_render(bomb)
    with pytest.raises(RenderLimitError, match="8192x8192 px"):
        check_render(SVGScene(8192, 8192, []))
    with pytest.raises(RenderLimitError, match="GiB"):
        check_render([SVGScene(4096, 4096, [])] * 16)
    work, nbytes = check_render(SVGScene(1024, 1024, [full] * 4))
    assert work >= 4 * 1024 * 1024 and nbytes == render_cost(SVGScene(1024, 1024, [full] * 4))[1]

    def stop():
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        render(SVGScene(16, 16, [full]), interrupt=stop)
