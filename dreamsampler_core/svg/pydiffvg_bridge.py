"""pydiffvg bridge (the optional ``backend="pydiffvg"`` of :func:`.renderer.render`): conversion
between an :class:`SVGScene` and pydiffvg's ``(shapes, shape_groups)``, and rendering with a compiled
pydiffvg.  pydiffvg itself is imported lazily (:func:`import_pydiffvg`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .renderer import _as_tensor, _background_image
from .scene import SVGPath, SVGScene


def import_pydiffvg():
    """Import a compiled pydiffvg lazily, with an error that says how to proceed."""
    try:
        import pydiffvg  # noqa: PLC0415 - optional, heavy, rarely installed
    except ImportError as exc:
        raise ImportError(
            "backend='pydiffvg' needs the diffvg Python extension (module 'pydiffvg'), which is not on "
            "PyPI and must be built from source (github.com/BachiLi/diffvg, with its git submodules, "
            "CMake and a C++/CUDA toolchain matching your torch). The default backend='torch' needs "
            "nothing extra and renders the same scenes.") from exc
    return pydiffvg


def to_pydiffvg(scene: SVGScene, pydiffvg=None):
    """Convert to pydiffvg's ``(shapes, shape_groups)``; tensors stay linked to the scene for autograd.

    One ``pydiffvg.Path`` per subpath (num_control_points = 2 for every cubic, ``stroke_width`` =
    half width), one ``ShapeGroup`` per :class:`SVGPath` with an explicit ``use_even_odd_rule``.
    """
    pydiffvg = pydiffvg or import_pydiffvg()
    shapes, groups = [], []
    for path in scene.paths:
        ids = []
        half = _as_tensor(path.stroke_width, path.points) * 0.5
        for start, s, closed in path.subpaths():
            n = 3 * s + (0 if closed else 1)
            shapes.append(pydiffvg.Path(
                num_control_points=torch.full((s,), 2, dtype=torch.int32),
                points=path.points[start:start + n], is_closed=closed, stroke_width=half))
            ids.append(len(shapes) - 1)
        groups.append(pydiffvg.ShapeGroup(
            shape_ids=torch.tensor(ids, dtype=torch.int32), fill_color=path.fill,
            use_even_odd_rule=path.fill_rule == "evenodd", stroke_color=path.stroke))
    return shapes, groups


def _cubic_from_mixed(num_control_points: Tensor, points: Tensor, closed: bool) -> Tensor:
    """Elevate a pydiffvg path (lines / quadratics / cubics) to cubic control points [3S(+1), 2]."""
    n_pts = points.shape[0]
    out, i = [], 0
    for ncp in num_control_points.tolist():
        p0 = points[i % n_pts]
        if ncp == 0:
            p1 = points[(i + 1) % n_pts]
            out += [p0, p0 + (p1 - p0) / 3, p0 + 2 * (p1 - p0) / 3]
        elif ncp == 1:
            c, p1 = points[(i + 1) % n_pts], points[(i + 2) % n_pts]
            out += [p0, p0 + 2 * (c - p0) / 3, p1 + 2 * (c - p1) / 3]
        elif ncp == 2:
            out += [p0, points[(i + 1) % n_pts], points[(i + 2) % n_pts]]
        else:
            raise ValueError(f"num_control_points must be 0, 1 or 2, got {ncp}")
        i += ncp + 1
    if not closed:
        out.append(points[i % n_pts])
    return torch.stack(out)


def from_pydiffvg(width: int, height: int, shapes, shape_groups, background: Tensor | None = None) -> SVGScene:
    """Build an :class:`SVGScene` from pydiffvg ``Path`` shapes and ``ShapeGroup``s.

    Only ``Path``-like shapes (with ``num_control_points`` and ``points``) are supported; each group's
    ``shape_to_canvas`` affine is applied to the points; half widths become full widths.
    """
    paths = []
    for g in shape_groups:
        pts, segs, flags, width_t = [], [], [], None
        for sid in g.shape_ids.tolist():
            shp = shapes[sid]
            if not hasattr(shp, "num_control_points"):
                raise ValueError(f"from_pydiffvg supports Path shapes only, got {type(shp).__name__}")
            closed = bool(shp.is_closed)
            cubic = _cubic_from_mixed(shp.num_control_points, shp.points, closed)
            pts.append(cubic)
            segs.append(int(shp.num_control_points.numel()))
            flags.append(closed)
            if width_t is None:
                width_t = _as_tensor(shp.stroke_width, shp.points).reshape(-1)[0] * 2
        points = torch.cat(pts)
        m = getattr(g, "shape_to_canvas", None)
        if m is not None and not torch.equal(m.to(points.dtype), torch.eye(3, dtype=points.dtype)):
            m = m.to(points.dtype)
            points = points @ m[:2, :2].T + m[:2, 2]
        fill = g.fill_color if isinstance(g.fill_color, Tensor) else None
        stroke = g.stroke_color if isinstance(g.stroke_color, Tensor) else None
        paths.append(SVGPath(points=points, fill=fill, stroke=stroke, stroke_width=width_t,
                             fill_rule="evenodd" if g.use_even_odd_rule else "nonzero",
                             segments=tuple(segs), closed=tuple(flags)))
    return SVGScene(width, height, paths, background)


def render_pydiffvg(scene: SVGScene, num_samples: int = 2, seed: int = 0) -> Tensor:
    """Render with a real pydiffvg (MSAA), composited over the scene background -> [H, W, 3]."""
    pydiffvg = import_pydiffvg()
    shapes, groups = to_pydiffvg(scene, pydiffvg)
    args = pydiffvg.RenderFunction.serialize_scene(scene.width, scene.height, shapes, groups)
    rgba = pydiffvg.RenderFunction.apply(scene.width, scene.height, num_samples, num_samples, seed,
                                        None, *args)
    rgba = rgba.to(device=scene.device, dtype=scene.dtype)
    bg = _background_image(scene, 3, rgba.dtype, rgba.device)
    a = rgba[..., 3:]
    return rgba[..., :3] * a + bg * (1 - a)
