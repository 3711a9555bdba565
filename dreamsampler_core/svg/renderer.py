"""Differentiable rasteriser for filled and stroked cubic-Bézier paths, in pure PyTorch.

Recipe of spec/svg_rendering.md §3.3 (diffvg's prefiltered mode, reimplemented from the equations):

1. flatten every cubic segment into K line pieces with a constant Bernstein matrix (differentiable);
2. per path, evaluate only the pixels of its bounding box (detached, padded by the AA band and the
   stroke half width);
3. per pixel: nearest edge by brute force under ``no_grad``, then the distance to that one edge is
   recomputed with autograd (O(N) saved tensors instead of O(N·E), same gradient);
4. winding number by a scanline ray cast (no gradient); non-zero or even-odd inside test;
5. coverage from the signed distance sd (+ inside): fill ``clamp(0.5 + sd/s, 0, 1)``, stroke
   ``F(w - d) - F(-w - d)`` with ``F(x) = clamp(0.5 + x/s, 0, 1)`` and w the half width — the exact
   1-px box-filter coverage of a straight edge / band when s = 1 px;
6. layers (fill then stroke of each path, paths in list order) composited "over" the background by a
   sparse custom autograd function that only touches each layer's crop.

Geometry gradients come from the ~1 px anti-aliasing band (and the stroke band), colour and opacity
gradients from everywhere a layer is visible, stroke widths from the stroke band edges.

Conventions (pixel units, x to the right, y down, pixel (i, j) has its centre at (j + 0.5, i + 0.5));
the scene model's (``SVGPath.points``, colours, stroke widths) are listed in :mod:`.scene`:

* output images are ComfyUI ``IMAGE`` tensors ``[B, H, W, 3]`` in 0..1 (``layout="BCHW"`` gives
  ``[B, 3, H, W]``); a batch is a sequence of scenes of one canvas size.

Known approximations (as in diffvg's prefiltered mode): strokes always have round joins and caps
(the writer says so explicitly); shapes that share an edge each get ~0.5 coverage there
(conflation); slivers thinner than a pixel are over-covered; a pixel centre lying exactly on an edge
gets no geometry gradient from that pixel (measure zero). Parity with resvg/cairo: 37–47 dB.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .scene import SVGPath, SVGScene

LAYOUTS = ("BHWC", "BCHW")
BACKENDS = ("torch", "pydiffvg")

# Elements of the [pixels, edges] work arrays processed at once by the nearest-edge search.
_WORK_BUDGET = 1 << 21

#: canvas limits shared by the SVG parser and the nodes: area (a 4096 x 4096 canvas) and side
MAX_CANVAS_PIXELS = 4096 * 4096
MAX_CANVAS_SIDE = 8192
#: most path-box pixels rasterised by one render (the sum of every layer's clipped bounding box)
MAX_RENDER_WORK = 1 << 30
#: default memory budget of one render call (callers may pass less, e.g. a share of free RAM)
MAX_RENDER_BYTES = 4 << 30
# Memory model of render() (bytes, measured on CPU float32 and rounded up): per canvas pixel of
# each scene kept in the output batch (the image, its stack and a clamped copy), per canvas pixel
# of the scene being drawn (background + canvas), per box pixel of the largest path (its
# transient distance / winding / coverage arrays), and per layer box pixel kept for backward.
_BYTES_PER_OUTPUT_PX = 36
_BYTES_PER_CANVAS_PX = 24
_BYTES_PER_PATH_PX = 64
_BYTES_PER_LAYER_PX_GRAD = 48


class RenderLimitError(ValueError):
    """A render refused before it starts; the message says how big it is and what the limit is."""


def canvas_error(width: int, height: int, what: str = "canvas") -> str | None:
    """Why a ``width`` x ``height`` canvas is refused (None when it is within the limits)."""
    w, h = int(width), int(height)
    if w < 1 or h < 1:
        return f"{what} {w}x{h} px is empty; width and height must be at least 1"
    if w > MAX_CANVAS_SIDE or h > MAX_CANVAS_SIDE or w * h > MAX_CANVAS_PIXELS:
        return (f"{what} {w}x{h} px ({w * h / 1e6:.1f} Mpx) is over the limit of {MAX_CANVAS_PIXELS / 1e6:.1f} Mpx "
                f"(4096x4096) and {MAX_CANVAS_SIDE} px per side")
    return None
_SQRT_EPS = {torch.float64: 1e-60, torch.float32: 1e-24}


# ----------------------------------------------------------------------------------------------
# Flattening
# ----------------------------------------------------------------------------------------------
_BASIS_CACHE: dict = {}


def bernstein_matrix(k: int, dtype=torch.float32, device=None) -> Tensor:
    """[k, 4] cubic Bernstein basis at t = 0, 1/k, ..., (k-1)/k (cached, do not modify)."""
    # tensors made under torch.inference_mode (ComfyUI runs nodes in it) cannot be saved for backward
    key = (k, dtype, str(device), torch.is_inference_mode_enabled())
    basis = _BASIS_CACHE.get(key)
    if basis is None:
        t = torch.arange(k, dtype=torch.float64) / k
        s = 1 - t
        basis = torch.stack([s ** 3, 3 * t * s ** 2, 3 * t ** 2 * s, t ** 3], dim=-1).to(device, dtype)
        _BASIS_CACHE[key] = basis
    return basis


def samples_for_tolerance(ctrl: Tensor, tolerance: float, max_samples: int = 64) -> int:
    """Line pieces per segment so that the flattening error is <= tolerance pixels.

    ctrl: [S, 4, 2] control points. Uses the bound |B(t) - polyline| <= max|B''| / (8 n²) with
    max|B''| <= 6·max(|P0 - 2P1 + P2|, |P1 - 2P2 + P3|).
    """
    with torch.no_grad():
        c = ctrl.detach()
        dd = torch.cat([c[:, 0] - 2 * c[:, 1] + c[:, 2], c[:, 1] - 2 * c[:, 2] + c[:, 3]])
        m = float(dd.norm(dim=-1).max()) if dd.numel() else 0.0
    n = math.ceil(math.sqrt(0.75 * m / max(tolerance, 1e-6))) if m > 0 else 1
    return max(1, min(max_samples, n))


_TOPOLOGY_CACHE: dict = {}


def _topology(layout: tuple[tuple[int, int, bool], ...], k: int, device):
    """Index tensors describing a path's flattened polyline.

    Returns ctrl_idx [S, 4] (point indices of each segment), end_idx [n_open] (point index of the
    end of each open subpath, appended as extra vertices), edge_a/edge_b [E] (vertex indices),
    stroke_edge [E] bool (False for the implicit closing edge of an open subpath), any_open.
    """
    key = (layout, k, str(device), torch.is_inference_mode_enabled())   # see bernstein_matrix
    hit = _TOPOLOGY_CACHE.get(key)
    if hit is not None:
        return hit
    ctrl, ends, ea, eb, se = [], [], [], [], []
    seg0 = 0
    n_vert_curves = sum(s for _, s, _ in layout) * k
    for start, s, closed in layout:
        n_pts = 3 * s
        for j in range(s):
            idx = [start + 3 * j + m for m in range(4)]
            if closed:
                idx[3] = start + (3 * j + 3) % n_pts
            ctrl.append(idx)
        verts = list(range(seg0 * k, (seg0 + s) * k))
        if not closed:
            verts.append(n_vert_curves + len(ends))
            ends.append(start + n_pts)
        n_edges = len(verts) if closed else len(verts) - 1
        ea += verts[:n_edges]
        eb += (verts[1:] + verts[:1])[:n_edges]
        se += [True] * n_edges
        if not closed:  # implicit closing edge: bounds the fill, is not stroked
            ea.append(verts[-1])
            eb.append(verts[0])
            se.append(False)
        seg0 += s
    as_long = lambda v: torch.tensor(v, dtype=torch.long, device=device)
    out = (as_long(ctrl).view(-1, 4), as_long(ends), as_long(ea), as_long(eb),
           torch.tensor(se, dtype=torch.bool, device=device), not all(c for _, _, c in layout))
    if len(_TOPOLOGY_CACHE) > 4096:
        _TOPOLOGY_CACHE.clear()
    _TOPOLOGY_CACHE[key] = out
    return out


def flatten_path(path: SVGPath, samples_per_segment: int | None = None, tolerance: float = 0.1):
    """Polyline of a path: (vertices [V, 2], edge_a [E], edge_b [E], stroke_edge [E] bool, any_open).

    Differentiable w.r.t. ``path.points`` (vertices = Bernstein matrix @ control points).
    """
    pts = path.points
    layout = tuple(path.subpaths())
    k0 = samples_per_segment
    ctrl = pts[_topology(layout, 1, pts.device)[0]]                 # [S, 4, 2]
    k = k0 if k0 is not None else samples_for_tolerance(ctrl, tolerance)
    ctrl_idx, end_idx, ea, eb, stroke_edge, any_open = _topology(layout, k, pts.device)
    basis = bernstein_matrix(k, pts.dtype, pts.device)              # [K, 4]
    verts = torch.einsum("kj,sjd->skd", basis, ctrl).reshape(-1, 2)
    if end_idx.numel():
        verts = torch.cat([verts, pts[end_idx]], dim=0)
    return verts, ea, eb, stroke_edge, any_open


# ----------------------------------------------------------------------------------------------
# Per-pixel geometry
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def _nearest_edge(px: Tensor, py: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Index of the nearest edge for every pixel centre. px, py: [N]; a, b: [E, 2] -> [N] long."""
    ax, ay = a[:, 0], a[:, 1]
    abx, aby = b[:, 0] - ax, b[:, 1] - ay
    inv_len2 = 1.0 / (abx * abx + aby * aby).clamp_min(1e-12)
    n, e = px.shape[0], a.shape[0]
    step = max(1, _WORK_BUDGET // max(e, 1))
    out = torch.empty(n, dtype=torch.long, device=px.device)
    for i in range(0, n, step):
        apx = px[i:i + step, None] - ax
        apy = py[i:i + step, None] - ay
        t = (apx * abx).add_(apy * aby).mul_(inv_len2).clamp_(0.0, 1.0)
        apx.sub_(t * abx)
        apy.sub_(t.mul_(aby))
        out[i:i + step] = apx.mul_(apx).add_(apy.mul_(apy)).argmin(dim=1)
    return out


@torch.no_grad()
def _winding(x0: int, w: int, py_rows: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Winding number of every pixel centre of a crop by casting rays towards +x.

    x0, w: crop column offset and width; py_rows: [h] row centres; a, b: [E, 2] edges.
    An edge counts for row y when exactly one end has ordinate <= y (half-open test, so shared
    vertices are counted once); it adds ±1 to all pixels left of its crossing abscissa.
    Returns [h, w] int32. O(h·E + h·w) instead of O(h·w·E).
    """
    ay, by = a[:, 1], b[:, 1]
    y = py_rows[:, None]
    crosses = (ay <= y) != (by <= y)                                 # [h, E]
    direction = torch.where(by > ay, 1, -1).to(torch.int32)          # [E]
    dy = torch.where(by == ay, torch.ones_like(by), by - ay)
    xi = a[:, 0] + (y - ay) * ((b[:, 0] - a[:, 0]) / dy)             # [h, E]
    # pixel j (centre x0 + j + 0.5) is left of the crossing iff j < xi - x0 - 0.5
    k = torch.ceil(xi - (x0 + 0.5)).clamp_(0, w).to(torch.long)
    hist = torch.zeros(py_rows.shape[0], w + 1, dtype=torch.int32, device=a.device)
    hist.scatter_add_(1, k, torch.where(crosses, direction, 0).to(torch.int32))
    suffix = hist.flip(1).cumsum(1, dtype=torch.int32).flip(1)
    return suffix[:, 1:]


def _distance_to_edges(px: Tensor, py: Tensor, a: Tensor, b: Tensor, idx: Tensor) -> Tensor:
    """Distance from each pixel centre to its own edge (a[idx], b[idx]), differentiable. -> [N]."""
    a, b = a[idx], b[idx]
    ab = b - a
    ap = torch.stack([px, py], dim=-1) - a
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    diff = ap - t[:, None] * ab
    # keeps sqrt differentiable at d = 0 without adding a visible floor to d (a floor of sqrt(eps)
    # would make the signed distance jump by 2·sqrt(eps) across an edge)
    eps = _SQRT_EPS.get(px.dtype, torch.finfo(px.dtype).tiny)
    return ((diff * diff).sum(-1) + eps).sqrt()


def _ramp(x: Tensor, softness: float) -> Tensor:
    """Box-filtered step: area of [-0.5, 0.5]·softness left of x."""
    return (0.5 + x / softness).clamp(0.0, 1.0)


def _as_tensor(v, like: Tensor) -> Tensor:
    return v if isinstance(v, Tensor) else torch.tensor(float(v), dtype=like.dtype, device=like.device)


def path_layers(path: SVGPath, width: int, height: int, samples_per_segment: int | None = None,
                tolerance: float = 0.1, softness: float = 1.0):
    """Alpha layers of one path over its bounding-box crop.

    Returns ``(box, layers)`` with box = (y0, y1, x0, x1) and layers = [(alpha [h, w], rgba [4]), ...]
    (fill first, then stroke); alpha already includes the colour's opacity. None if nothing is visible.
    """
    has_fill = path.fill is not None
    has_stroke = path.stroke is not None and not (
        not isinstance(path.stroke_width, Tensor) and float(path.stroke_width) <= 0)
    if not (has_fill or has_stroke):
        return None
    verts, ea, eb, stroke_edge, any_open = flatten_path(path, samples_per_segment, tolerance)
    half_w = _as_tensor(path.stroke_width, verts) * 0.5 if has_stroke else None
    with torch.no_grad():
        v = verts.detach()
        pad = 0.5 * softness + 1.0
        if has_stroke:
            pad += max(float(half_w.detach()), 0.0)
        if has_stroke and not math.isfinite(pad):
            raise ValueError(f"SVGPath stroke width must be finite, got {float(half_w.detach()) * 2:g}")
        lo = torch.floor(v.min(0).values - pad)
        hi = torch.ceil(v.max(0).values + pad)
        if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):
            raise ValueError("SVGPath points must be finite (got NaN or inf; check the learning rate)")
        x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
        x1, y1 = min(int(hi[0]), width), min(int(hi[1]), height)
    if x1 <= x0 or y1 <= y0:
        return None
    w, h = x1 - x0, y1 - y0
    dtype, device = verts.dtype, verts.device
    xs = torch.arange(x0, x1, dtype=dtype, device=device) + 0.5
    ys = torch.arange(y0, y1, dtype=dtype, device=device) + 0.5
    a, b = verts[ea], verts[eb]
    a_d, b_d = a.detach(), b.detach()
    # Only pixels closer than `band` to the outline have a coverage strictly between its extremes
    # (and a geometry gradient); the rest are fully inside (fill 1) or outside (0).
    band = 0.5 * softness + (max(float(half_w.detach()), 0.0) if has_stroke else 0.0)
    active = _band_pixels(x0, y0, w, h, a_d, b_d, band)              # [M] flat indices or None
    if active is None:
        px, py = xs.repeat(h), ys.repeat_interleave(w)
    else:
        px, py = xs[active % w], ys[active // w]

    def scatter(base: Tensor, values: Tensor) -> Tensor:
        if active is None:
            return values.view(h, w)
        return base.reshape(-1).index_put((active,), values).view(h, w)

    layers = []
    d_all = _distance_to_edges(px, py, a, b, _nearest_edge(px, py, a_d, b_d))
    if has_fill:
        inside_grid = _winding(x0, w, ys, a_d, b_d)
        inside_grid = (inside_grid != 0) if path.fill_rule == "nonzero" else (inside_grid % 2 != 0)
        inside = inside_grid.reshape(-1) if active is None else inside_grid.reshape(-1)[active]
        cov = _ramp(torch.where(inside, d_all, -d_all), softness)
        layers.append((scatter(inside_grid.to(dtype), cov) * path.fill[3], path.fill))
    if has_stroke:
        if any_open:
            sel = stroke_edge.nonzero().squeeze(1)
            d = _distance_to_edges(px, py, a[sel], b[sel], _nearest_edge(px, py, a_d[sel], b_d[sel]))
        else:
            d = d_all
        cov = _ramp(half_w - d, softness) - _ramp(-half_w - d, softness)
        layers.append((scatter(torch.zeros(h, w, dtype=dtype, device=device), cov) * path.stroke[3],
                       path.stroke))
    return (y0, y1, x0, x1), layers


_TILE = 4


@torch.no_grad()
def _band_pixels(x0: int, y0: int, w: int, h: int, a: Tensor, b: Tensor, band: float) -> Tensor | None:
    """Flat indices of the crop pixels that may lie within ``band`` px of an edge (None = all).

    Coarse pass on 4×4 tiles: a pixel centre is at most (T-1)/√2 from its tile centre, so a tile
    whose centre is farther than band + (T-1)/√2 from every edge holds no band pixel.
    """
    if w * h < 16 * _TILE * _TILE:
        return None
    tw, th = -(-w // _TILE), -(-h // _TILE)
    cx = x0 + (torch.arange(tw, dtype=a.dtype, device=a.device) + 0.5) * _TILE
    cy = y0 + (torch.arange(th, dtype=a.dtype, device=a.device) + 0.5) * _TILE
    tx, ty = cx.repeat(th), cy.repeat_interleave(tw)
    d = _distance_to_edges(tx, ty, a, b, _nearest_edge(tx, ty, a, b))
    keep = (d < band + (_TILE - 1) / math.sqrt(2) + 1e-3).view(th, tw)
    if bool(keep.all()):
        return None
    mask = keep.repeat_interleave(_TILE, 0).repeat_interleave(_TILE, 1)[:h, :w]
    return mask.reshape(-1).nonzero().squeeze(1)


# ----------------------------------------------------------------------------------------------
# Sparse "over" compositing
# ----------------------------------------------------------------------------------------------
class _SparseOver(torch.autograd.Function):
    """C <- C·(1 - α_i) + c_i·α_i for layers i in order, each on its crop (spec §3.3 step 7).

    Inputs: background [H, W, C], boxes [(y0, y1, x0, x1)], then alpha_i [h_i, w_i], color_i [C] pairs.
    Backward walks the layers top-down with the transmittance T of everything above:
    dI/dα_i = (c_i - S_below,i)·T, dI/dc_i = α_i·T, d(bg) = T after the last (bottom) layer.
    """

    @staticmethod
    def forward(ctx, background, boxes, *tensors):
        canvas = background.detach().clone().contiguous()
        below = []
        for i, (y0, y1, x0, x1) in enumerate(boxes):
            alpha, color = tensors[2 * i].unsqueeze(-1), tensors[2 * i + 1]
            crop = canvas[y0:y1, x0:x1]
            below.append(crop.clone())
            crop.mul_(1.0 - alpha).add_(alpha * color)
        ctx.boxes = boxes
        ctx.below = below
        ctx.bg_shape = background.shape
        ctx.save_for_backward(*tensors)
        return canvas

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        tensors = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grads: list = [None] * len(tensors)
        trans = torch.ones(grad.shape[0], grad.shape[1], 1, dtype=grad.dtype, device=grad.device)
        for i in range(len(ctx.boxes) - 1, -1, -1):
            y0, y1, x0, x1 = ctx.boxes[i]
            alpha, color = tensors[2 * i].unsqueeze(-1), tensors[2 * i + 1]
            t = trans[y0:y1, x0:x1]
            g = grad[y0:y1, x0:x1] * t
            if needs[2 + 2 * i]:
                grads[2 * i] = (g * (color - ctx.below[i])).sum(-1)
            if needs[3 + 2 * i]:
                grads[2 * i + 1] = (g * alpha).sum((0, 1))
            t.mul_(1.0 - alpha)
        d_bg = grad * trans if needs[0] else None
        ctx.below = None
        return (d_bg, None, *grads)


def composite_over(background: Tensor, boxes: Sequence[tuple[int, int, int, int]],
                   layers: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
    """Sparse differentiable "over": background [H, W, C], layers [(alpha [h, w], color [C])]."""
    flat: list[Tensor] = []
    for alpha, color in layers:
        flat += [alpha, color]
    return _SparseOver.apply(background, list(boxes), *flat)


def composite_over_dense(background: Tensor, boxes, layers) -> Tensor:
    """Reference O(L·H·W) compositing with plain autograd (for tests)."""
    out = background
    for (y0, y1, x0, x1), (alpha, color) in zip(boxes, layers):
        full = torch.zeros(out.shape[:2], dtype=out.dtype, device=out.device)
        full = torch.nn.functional.pad(alpha, (x0, out.shape[1] - x1, y0, out.shape[0] - y1)) + full
        full = full.unsqueeze(-1)
        out = out * (1 - full) + color * full
    return out


# ----------------------------------------------------------------------------------------------
# Public rendering API
# ----------------------------------------------------------------------------------------------
def _background_image(scene: SVGScene, channels: int, dtype, device) -> Tensor:
    h, w = scene.height, scene.width
    if channels == 4:
        return torch.zeros(h, w, 4, dtype=dtype, device=device)
    bg = scene.background
    if bg is None:
        return torch.ones(h, w, 3, dtype=dtype, device=device)
    bg = bg.to(dtype=dtype, device=device)
    if bg.dim() == 1:
        return bg[:3].expand(h, w, 3)
    if bg.shape != (h, w, 3):
        raise ValueError(f"background image must be [{h}, {w}, 3], got {tuple(bg.shape)}")
    return bg


def _needs_grad(scene: SVGScene) -> bool:
    return torch.is_grad_enabled() and any(
        t.requires_grad for t in scene.parameters(points=True, colors=True, widths=True, background=True))


def _path_box_pixels(path: SVGPath, width: int, height: int, softness: float = 1.0) -> tuple[int, int]:
    """(box pixels, layers) a path rasterises: its padded bounding box clipped to the canvas, and
    1 per fill plus 1 per stroke (what path_layers computes on)."""
    has_stroke = path.stroke is not None and not (
        not isinstance(path.stroke_width, Tensor) and float(path.stroke_width) <= 0)
    layers = int(path.fill is not None) + int(has_stroke)
    if not layers or path.points.numel() == 0:
        return 0, 0
    # numpy on the CPU copy: per-path torch reductions cost milliseconds each on a busy machine
    v = path.points.detach().to("cpu", torch.float64).numpy()
    sw = float(path.stroke_width.detach()) if isinstance(path.stroke_width, Tensor) else float(path.stroke_width)
    pad = 0.5 * softness + 1.0 + (max(sw, 0.0) * 0.5 if has_stroke else 0.0)
    lo, hi = v.min(0), v.max(0)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and math.isfinite(pad)):
        return width * height, layers                # refused by path_layers; count it as the whole canvas
    x0, y0 = max(math.floor(lo[0] - pad), 0), max(math.floor(lo[1] - pad), 0)
    x1, y1 = min(math.ceil(hi[0] + pad), width), min(math.ceil(hi[1] + pad), height)
    return max(x1 - x0, 0) * max(y1 - y0, 0), layers


def render_cost(scenes: SVGScene | Sequence[SVGScene], grad: bool | None = None,
                softness: float = 1.0) -> tuple[int, int]:
    """(work, bytes) of ``render(scenes)`` before it runs: work = path-box pixels rasterised (the sum
    over layers of their clipped bounding boxes), bytes = estimated peak memory (see the memory model
    above).  ``grad``: whether the render keeps tensors for backward (default: any scene needs it)."""
    scenes = [scenes] if isinstance(scenes, SVGScene) else list(scenes)
    if grad is None:
        grad = any(_needs_grad(s) for s in scenes)
    work = layer_px = largest = 0
    for s in scenes:
        for p in s.paths:
            px, n = _path_box_pixels(p, s.width, s.height, softness)
            work += px * n
            layer_px += px * n
            largest = max(largest, px)
    canvas = max((s.width * s.height for s in scenes), default=0)
    nbytes = (len(scenes) * canvas * _BYTES_PER_OUTPUT_PX + canvas * _BYTES_PER_CANVAS_PX
              + largest * _BYTES_PER_PATH_PX + (layer_px * _BYTES_PER_LAYER_PX_GRAD if grad else 0))
    return work, nbytes


def check_render(scenes: SVGScene | Sequence[SVGScene], max_bytes: int = MAX_RENDER_BYTES,
                 max_work: int = MAX_RENDER_WORK, grad: bool | None = None) -> tuple[int, int]:
    """Refuse (RenderLimitError) a render over the canvas, work or memory limits; returns render_cost."""
    scenes = [scenes] if isinstance(scenes, SVGScene) else list(scenes)
    for s in scenes:
        err = canvas_error(s.width, s.height)
        if err:
            raise RenderLimitError(err)
    work, nbytes = render_cost(scenes, grad)
    if not scenes:
        return work, nbytes
    w, h = scenes[0].width, scenes[0].height
    if work > max_work:
        raise RenderLimitError(f"the paths cover {work / 1e6:.0f} Mpx in total (the sum of their bounding boxes on "
                               f"the {w}x{h} canvas), over the limit of {max_work / 1e6:.0f} Mpx per render; "
                               "simplify the drawing (fewer or smaller paths) or use a smaller canvas")
    if nbytes > max_bytes:
        raise RenderLimitError(f"rendering {len(scenes)} scene(s) of {w}x{h} px needs about "
                               f"{nbytes / 2 ** 30:.1f} GiB, over the limit of {max_bytes / 2 ** 30:.1f} GiB")
    return work, nbytes


def _colored_layers(scene: SVGScene, channels: int, samples_per_segment, tolerance, softness, dtype, interrupt):
    """(box, alpha [h, w], color [channels]) for every fill / stroke layer, paths in paint order;
    ``interrupt()`` before each path."""
    for path in scene.paths:
        if interrupt is not None:
            interrupt()
        res = path_layers(path, scene.width, scene.height, samples_per_segment, tolerance, softness)
        if res is None:
            continue
        box, path_layer_list = res
        for alpha, rgba in path_layer_list:
            color = rgba[:3].to(dtype)
            if channels == 4:
                color = torch.cat([color, torch.ones(1, dtype=dtype, device=color.device)])
            yield box, alpha.to(dtype), color


def _render_scene_torch(scene: SVGScene, channels: int, samples_per_segment, tolerance, softness,
                        dtype=None, interrupt=None) -> Tensor:
    dtype = dtype or scene.dtype
    device = scene.device
    if not _needs_grad(scene):
        # no backward: composite each path as soon as it is rasterised (memory O(canvas), not O(layers));
        # the same arithmetic as _SparseOver.forward
        with torch.no_grad():
            canvas = _background_image(scene, channels, dtype, device).detach().clone().contiguous()
            for (y0, y1, x0, x1), alpha, color in _colored_layers(scene, channels, samples_per_segment, tolerance,
                                                                  softness, dtype, interrupt):
                a = alpha.unsqueeze(-1)
                canvas[y0:y1, x0:x1].mul_(1.0 - a).add_(a * color)
            return canvas
    boxes, layers = [], []
    for box, alpha, color in _colored_layers(scene, channels, samples_per_segment, tolerance, softness, dtype,
                                             interrupt):
        boxes.append(box)
        layers.append((alpha, color))
    bg = _background_image(scene, channels, dtype, device)
    if not layers:
        return bg.clone() if not bg.requires_grad else bg * 1
    return composite_over(bg, boxes, layers)


def scale_scene(scene: SVGScene, factor: float) -> SVGScene:
    """The scene drawn on a canvas ``factor`` times larger (points and stroke widths scaled, a raster
    background resized bilinearly)."""
    if factor == 1.0:
        return scene
    paths = [replace(p, points=p.points * factor, stroke_width=p.stroke_width * factor) for p in scene.paths]
    bg = scene.background
    w, h = max(1, round(scene.width * factor)), max(1, round(scene.height * factor))
    if bg is not None and bg.dim() == 3:
        bg = torch.nn.functional.interpolate(bg.permute(2, 0, 1)[None], size=(h, w), mode="bilinear",
                                             align_corners=False)[0].permute(1, 2, 0)
    return SVGScene(w, h, paths, bg)


def render(scene: SVGScene | Sequence[SVGScene], *, layout: str = "BHWC",
           samples_per_segment: int | None = None, tolerance: float = 0.1, softness: float = 1.0,
           backend: str = "torch", interrupt=None) -> Tensor:
    """Render one scene or a batch of scenes over their backgrounds.

    scene:               an :class:`SVGScene` or a sequence of them (same canvas size).
    layout:              "BHWC" -> [B, H, W, 3] (ComfyUI IMAGE), "BCHW" -> [B, 3, H, W] (torch/VAE).
    samples_per_segment: line pieces per cubic; None picks per path so the flattening error is
                         <= ``tolerance`` pixels.
    softness:            width of the anti-aliasing ramp in pixels (1 = box filter; >1 blurs edges
                         but widens the band that carries geometry gradients).
    backend:             "torch" (this module) or "pydiffvg" (needs a compiled diffvg; 2×2 MSAA; see
                         :mod:`.pydiffvg_bridge`).
    interrupt:           optional callable run before each path (raises to stop a long render).
    Returns RGB in 0..1, differentiable w.r.t. every tensor in the scene(s).  Untrusted scenes:
    call :func:`check_render` first (canvas, work and memory limits).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    scenes = [scene] if isinstance(scene, SVGScene) else list(scene)
    if not scenes:
        raise ValueError("render() needs at least one scene")
    sizes = {(s.height, s.width) for s in scenes}
    if len(sizes) != 1:
        raise ValueError(f"all scenes of a batch must share one canvas size, got {sorted(sizes)}")
    if backend == "pydiffvg":
        from .pydiffvg_bridge import render_pydiffvg  # noqa: PLC0415 - the bridge builds on this module
    images = []
    for s in scenes:
        if backend == "pydiffvg":
            images.append(render_pydiffvg(s))
        else:
            images.append(_render_scene_torch(s, 3, samples_per_segment, tolerance, softness, interrupt=interrupt))
    out = torch.stack(images)
    return out.permute(0, 3, 1, 2) if layout == "BCHW" else out


def render_rgba(scene: SVGScene | Sequence[SVGScene], *, samples_per_segment: int | None = None,
                tolerance: float = 0.1, softness: float = 1.0, eps: float = 1e-8) -> Tensor:
    """Unpremultiplied RGBA without background, like pydiffvg's render: [B, H, W, 4] in 0..1."""
    scenes = [scene] if isinstance(scene, SVGScene) else list(scene)
    outs = []
    for s in scenes:
        pre = _render_scene_torch(s, 4, samples_per_segment, tolerance, softness)
        alpha = pre[..., 3:]
        outs.append(torch.cat([pre[..., :3] / alpha.clamp_min(eps), alpha], dim=-1))
    return torch.stack(outs)
