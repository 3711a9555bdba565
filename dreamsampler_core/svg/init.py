"""Initial SVG scenes: VectorFusion-style random circles, LIVE-style sparse positions, image blobs.

Defaults follow spec/svg_rendering.md §1.4 (PyTorch-SVGRender's VectorFusion/LIVE configs):
128 closed paths of 4 cubic segments, each started as 3·S points at equal angles on a circle of
radius 20 px on a 600-px canvas, colour = target pixel at the centre with alpha 1, or random RGBA.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from torch import Tensor

from .scene import SVGPath, SVGScene


def _as_hwc(image: Tensor) -> Tensor:
    """[H, W, C] / [1, H, W, C] (ComfyUI IMAGE) -> [H, W, 3] float."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.dim() != 3 or image.shape[-1] < 3:
        raise ValueError(f"expected an image [H, W, 3], got {tuple(image.shape)}")
    return image[..., :3].float()


def circle_points(centers: Tensor, radius: float | Tensor, num_segments: int = 4) -> Tensor:
    """[P, 3·S, 2] control points at equal angles on circles (VectorFusion's "circle" shape init)."""
    n = 3 * num_segments
    theta = torch.arange(n, dtype=centers.dtype, device=centers.device) * (2 * math.pi / n)
    unit = torch.stack([theta.cos(), theta.sin()], dim=-1)                 # [3S, 2]
    r = torch.as_tensor(radius, dtype=centers.dtype, device=centers.device).reshape(-1, 1, 1)
    return centers[:, None, :] + r * unit


def random_paths(width: int, height: int, num_paths: int = 128, num_segments: int = 4,
                 radius: float | None = None, *, generator: torch.Generator | None = None,
                 target: Tensor | None = None, centers: Tensor | None = None,
                 stroke_width: float = 0.0, background: Tensor | None = None,
                 device=None, dtype: torch.dtype = torch.float32) -> SVGScene:
    """VectorFusion/LIVE random initialisation.

    width, height: canvas in pixels.
    radius:        circle radius in px; None = 20 px scaled from VectorFusion's 600-px canvas.
    generator:     seeded torch.Generator (CPU) for reproducible centres and colours.
    target:        optional image [H, W, 3] / [1, H, W, 3] in 0..1: each path takes the colour of the
                   target pixel at its centre with alpha 1 (else random RGBA).
    centers:       optional [num_paths, 2] centres in pixels (e.g. :func:`sparse_centers`).
    stroke_width:  > 0 adds a black opaque stroke of that width to every path.
    Returns an :class:`SVGScene` of closed paths with points [3·num_segments, 2].
    """
    if radius is None:
        radius = 20.0 * max(width, height) / 600.0
    if centers is None:
        centers = torch.rand(num_paths, 2, generator=generator, dtype=torch.float64)
        centers = centers * torch.tensor([width, height], dtype=torch.float64)
    centers = centers.to(torch.float64).reshape(-1, 2)
    pts = circle_points(centers, float(radius), num_segments)
    if target is not None:
        img = _as_hwc(target).to(torch.float64)
        ix = centers[:, 0].mul(img.shape[1] / width).long().clamp(0, img.shape[1] - 1)
        iy = centers[:, 1].mul(img.shape[0] / height).long().clamp(0, img.shape[0] - 1)
        rgb = img[iy.cpu(), ix.cpu()]
        colors = torch.cat([rgb, torch.ones(len(centers), 1, dtype=torch.float64)], dim=1)
    else:
        colors = torch.rand(len(centers), 4, generator=generator, dtype=torch.float64)
    paths = []
    for p, c in zip(pts, colors):
        stroke = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype, device=device) if stroke_width > 0 else None
        paths.append(SVGPath(points=p.to(device=device, dtype=dtype), fill=c.to(device=device, dtype=dtype),
                             stroke=stroke, stroke_width=float(stroke_width)))
    return SVGScene(width, height, paths, background)


# ----------------------------------------------------------------------------------------------
# Connected components (4-connectivity), run-length union-find, numpy only
# ----------------------------------------------------------------------------------------------
def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label 4-connected components of a bool mask [h, w] -> (labels int32 [h, w], 0 = off; count)."""
    h, w = mask.shape
    parent: list[int] = []

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    runs_by_row = []
    prev: list[tuple[int, int, int]] = []
    for y in range(h):
        row = np.concatenate([[False], mask[y], [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(row))
        cur = []
        j = 0
        for s, e in zip(edges[0::2].tolist(), edges[1::2].tolist()):
            lab = len(parent)
            parent.append(lab)
            while j < len(prev) and prev[j][1] <= s:
                j += 1
            k = j
            while k < len(prev) and prev[k][0] < e:
                ra, rb = find(lab), find(prev[k][2])
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
                k += 1
            cur.append((s, e, lab))
        runs_by_row.append(cur)
        prev = cur
    roots: dict[int, int] = {}
    labels = np.zeros((h, w), dtype=np.int32)
    for y, runs in enumerate(runs_by_row):
        for s, e, lab in runs:
            r = find(lab)
            labels[y, s:e] = roots.setdefault(r, len(roots) + 1)
    return labels, len(roots)


def sparse_centers(error: Tensor, num: int, threshold: float = 0.1, bins: int = 200) -> Tensor:
    """LIVE's sparse coordinate init: centres of the largest high-error regions.

    error: [H, W] per-pixel error (e.g. squared RGB error between render and target).
    Values below ``threshold`` are ignored, the rest quantised into ``bins`` quantile bins; each pick
    takes the most populated bin, its largest 4-connected component and returns the component pixel
    nearest to the component centroid, then removes the component. Falls back to the pixel of
    largest error when nothing is left. Returns [num, 2] (x, y) pixel centres, float64.
    """
    err = error.detach().double().cpu().numpy().copy()
    err[err < threshold] = 0
    valid = err > 0
    quant = np.zeros(err.shape, dtype=np.int64)
    if valid.any():
        edges = np.unique(np.quantile(err[valid], np.linspace(0, 1, bins + 1)))
        quant[valid] = np.clip(np.searchsorted(edges, err[valid], side="right"), 1, None)
    out = []
    for _ in range(num):
        ids, counts = np.unique(quant[quant > 0], return_counts=True)
        if len(ids) == 0:
            y, x = np.unravel_index(int(np.argmax(np.abs(error.detach().cpu().numpy()))), err.shape)
            out.append((x + 0.5, y + 0.5))
            continue
        labels, n = label_components(quant == ids[np.argmax(counts)])
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        sizes[0] = 0
        comp = labels == int(np.argmax(sizes))
        ys, xs = np.nonzero(comp)
        cy, cx = ys.mean(), xs.mean()
        i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        out.append((xs[i] + 0.5, ys[i] + 0.5))
        quant[comp] = 0
    return torch.tensor(out, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# From an image
# ----------------------------------------------------------------------------------------------
def kmeans_colors(pixels: Tensor, k: int, iterations: int = 15,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """k-means++ then Lloyd iterations. pixels: [N, 3] -> (centres [k', 3], labels [N]); k' <= k."""
    n = pixels.shape[0]
    k = max(1, min(k, n))
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [pixels[first]]
    d2 = ((pixels - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        if float(d2.sum()) <= 0:
            break
        idx = int(torch.multinomial(d2 / d2.sum(), 1, generator=generator))
        centres.append(pixels[idx])
        d2 = torch.minimum(d2, ((pixels - pixels[idx]) ** 2).sum(1))
    c = torch.stack(centres)
    for _ in range(iterations):
        labels = torch.cdist(pixels, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, labels, pixels)
        counts = torch.bincount(labels, minlength=len(c)).to(pixels.dtype)
        keep = counts > 0
        c = torch.where(keep[:, None], sums / counts.clamp_min(1)[:, None], c)
    labels = torch.cdist(pixels, c).argmin(1)
    return c, labels


def _catmull_rom_closed(anchors: np.ndarray) -> np.ndarray:
    """Closed Catmull-Rom spline through anchors [A, 2] as cubic control points [3A, 2]."""
    prev_ = np.roll(anchors, 1, axis=0)
    next_ = np.roll(anchors, -1, axis=0)
    next2 = np.roll(anchors, -2, axis=0)
    c1 = anchors + (next_ - prev_) / 6.0
    c2 = next_ - (next2 - anchors) / 6.0
    return np.stack([anchors, c1, c2], axis=1).reshape(-1, 2)


def blob_points(ys: np.ndarray, xs: np.ndarray, num_segments: int) -> np.ndarray:
    """Star-shaped closed cubic path [3S, 2] around a pixel set (x, y integer pixel indices).

    Anchor a sits at angle 2πa/S from the centroid, at the largest pixel distance within ±π/S of
    that direction (+0.5 px for the pixel extent); the spline through the anchors is Catmull-Rom.
    """
    px, py = xs + 0.5, ys + 0.5
    cx, cy = px.mean(), py.mean()
    ang = np.arctan2(py - cy, px - cx)
    dist = np.hypot(px - cx, py - cy)
    s = num_segments
    radii = np.zeros(s)
    for a in range(s):
        theta = 2 * math.pi * a / s
        diff = np.abs((ang - theta + math.pi) % (2 * math.pi) - math.pi)
        sel = diff <= math.pi / s
        radii[a] = dist[sel].max() + 0.5 if sel.any() else 0.5
    theta = 2 * math.pi * np.arange(s) / s
    anchors = np.stack([cx + radii * np.cos(theta), cy + radii * np.sin(theta)], axis=1)
    return _catmull_rom_closed(anchors)


def paths_from_image(image: Tensor, num_colors: int = 8, max_paths: int = 64, num_segments: int = 8, *,
                     min_area: float | None = None, work_size: int = 128,
                     generator: torch.Generator | None = None, method: str = "kmeans",
                     device=None, dtype: torch.dtype = torch.float32) -> SVGScene:
    """Initial scene that roughly reproduces an image.

    image:     [H, W, 3] or [1, H, W, 3] in 0..1 (ComfyUI IMAGE). The canvas is W × H.
    method:    "kmeans": quantise colours (k-means, ``num_colors``) on a copy at most ``work_size`` px,
               one closed blob path per 4-connected colour region (largest first, at most
               ``max_paths``, regions under ``min_area`` work pixels dropped, default 0.05 % of the
               image); the largest region of the dominant colour becomes the background colour.
               "vtracer": trace with the optional ``vtracer`` package and parse its SVG.
    """
    img = _as_hwc(image)
    height, width = img.shape[:2]
    if method == "vtracer":
        return _vtracer_scene(img, max_paths, device, dtype)
    if method != "kmeans":
        raise ValueError(f"method must be 'kmeans' or 'vtracer', got {method!r}")
    scale = min(1.0, work_size / max(height, width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    small = torch.nn.functional.interpolate(img.permute(2, 0, 1)[None].cpu(), size=(h, w), mode="area")
    small = small[0].permute(1, 2, 0).contiguous()
    pixels = small.reshape(-1, 3).double()
    _, labels = kmeans_colors(pixels, num_colors, generator=generator)
    labels = labels.view(h, w).numpy()
    if min_area is None:
        min_area = max(2.0, 0.0005 * h * w)

    regions = []  # (area, ys, xs)
    for c in np.unique(labels):
        comp, n = label_components(labels == c)
        for i in range(1, n + 1):
            ys, xs = np.nonzero(comp == i)
            regions.append((len(ys), ys, xs))
    regions.sort(key=lambda r: -r[0])
    dominant = np.bincount(labels.ravel()).argmax()
    bg_region = next(r for r in regions if labels[r[1][0], r[2][0]] == dominant)
    small_np = small.double().numpy()
    background = torch.tensor(small_np[bg_region[1], bg_region[2]].mean(0), dtype=dtype, device=device)

    sx, sy = width / w, height / h
    paths = []
    for area, ys, xs in regions:
        if len(paths) >= max_paths or area < min_area:
            break
        if ys is bg_region[1]:
            continue
        pts = blob_points(ys, xs, num_segments) * np.array([sx, sy])
        rgb = small_np[ys, xs].mean(0)
        paths.append(SVGPath(points=torch.tensor(pts, dtype=dtype, device=device),
                             fill=torch.tensor([*rgb, 1.0], dtype=dtype, device=device)))
    return SVGScene(width, height, paths, background)


def _vtracer_scene(img: Tensor, max_paths: int, device, dtype) -> SVGScene:
    try:
        import vtracer
    except ImportError as exc:
        raise ImportError("method='vtracer' needs the optional 'vtracer' package: pip install vtracer; "
                          "method='kmeans' needs nothing extra") from exc
    from PIL import Image

    from .io import parse_svg

    arr = (img.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    text = vtracer.convert_raw_image_to_svg(buf.getvalue(), img_format="png", colormode="color",
                                            hierarchical="stacked", mode="spline")
    scene = parse_svg(text, dtype=dtype, device=device)
    scene.paths = scene.paths[:max_paths]  # stacked order: the first paths are the large ones
    return scene


# ----------------------------------------------------------------------------- batches (the SVG Init node)
def traced_scenes(images: Tensor, *, num_colors: int = 8, max_paths: int = 64, num_segments: int = 8,
                  generator: torch.Generator | None = None, method: str = "kmeans") -> list:
    """One ``paths_from_image`` scene per image of a batch [B, H, W, 3] (one generator, in order)."""
    return [paths_from_image(images[b], num_colors=num_colors, max_paths=max_paths, num_segments=num_segments,
                             generator=generator, method=method) for b in range(images.shape[0])]


def random_scenes(count: int, width: int, height: int, *, num_paths: int = 128, num_segments: int = 4,
                  radius: float | None = None, generator: torch.Generator | None = None,
                  target: Tensor | None = None, stroke_width: float = 0.0) -> list:
    """``count`` ``random_paths`` scenes; ``target`` (an image [H', W', 3], resized to the canvas)
    colours the paths by the pixels they cover."""
    if target is not None:
        target = torch.nn.functional.interpolate(target.movedim(-1, 0)[None], size=(int(height), int(width)),
                                                 mode="bilinear", align_corners=False)[0].movedim(0, -1)
    return [random_paths(int(width), int(height), num_paths=num_paths, num_segments=num_segments, radius=radius,
                         generator=generator, target=target, stroke_width=stroke_width) for _ in range(int(count))]
