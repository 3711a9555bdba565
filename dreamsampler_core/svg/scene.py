"""The SVG scene model: :class:`SVGPath` (one painted path of cubic-Bézier subpaths) and
:class:`SVGScene` (a canvas, its paths in paint order and a background), drawn by :mod:`.renderer`.

Conventions (pixel units, x to the right, y down, pixel (i, j) has its centre at (j + 0.5, i + 0.5)):

* ``SVGPath.points``: control points ``[N, 2]`` of one or more subpaths made of cubic segments. A closed
  subpath of S segments stores 3·S points (the end of the last segment is its first point, as in
  pydiffvg); an open subpath stores 3·S + 1 points.
* colours are straight (non-premultiplied) RGBA in 0..1.
* ``stroke_width`` is the full SVG width; pydiffvg's ``Path.stroke_width`` is the *half* width and the
  adapter (:func:`.pydiffvg_bridge.to_pydiffvg` / :func:`.pydiffvg_bridge.from_pydiffvg`) converts.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

FILL_RULES = ("nonzero", "evenodd")


@dataclass
class SVGPath:
    """One painted SVG path (a pydiffvg ``ShapeGroup`` whose shapes are its subpaths).

    points:       [N, 2] control points in pixels; N = Σ_k 3·S_k (+1 for each open subpath).
    fill:         [4] RGBA in 0..1, or None for ``fill="none"``.
    stroke:       [4] RGBA in 0..1, or None for ``stroke="none"``.
    stroke_width: full stroke width in pixels (float or 0-dim tensor, may require grad).
    fill_rule:    "nonzero" (SVG default) or "evenodd"; applies across all subpaths.
    segments:     cubic segments per subpath; None means one subpath holding all points.
    closed:       one flag for all subpaths or one per subpath. Open subpaths are stroked without
                  the closing edge (round caps) but filled as if closed, as SVG does.
    """

    points: Tensor
    fill: Tensor | None = None
    stroke: Tensor | None = None
    stroke_width: Tensor | float = 1.0
    fill_rule: str = "nonzero"
    segments: tuple[int, ...] | None = None
    closed: bool | tuple[bool, ...] = True

    def __post_init__(self):
        if self.fill_rule not in FILL_RULES:
            raise ValueError(f"fill_rule must be one of {FILL_RULES}, got {self.fill_rule!r}")
        if self.points.dim() != 2 or self.points.shape[-1] != 2:
            raise ValueError(f"points must be [N, 2], got {tuple(self.points.shape)}")
        layout = self.subpaths()
        expected = sum(3 * s + (0 if c else 1) for _, s, c in layout)
        if expected != self.points.shape[0]:
            raise ValueError(
                f"points has {self.points.shape[0]} rows but segments={self.segments} "
                f"closed={self.closed} needs {expected} (3 per segment, +1 per open subpath)")

    def subpaths(self) -> list[tuple[int, int, bool]]:
        """[(first point index, number of segments, closed)] for each subpath."""
        n = self.points.shape[0]
        if self.segments is None:
            closed = self.closed if isinstance(self.closed, bool) else bool(self.closed[0])
            segs = (n // 3 if closed else (n - 1) // 3,)
        else:
            segs = tuple(int(s) for s in self.segments)
        flags = (self.closed,) * len(segs) if isinstance(self.closed, bool) else tuple(self.closed)
        if len(flags) != len(segs):
            raise ValueError(f"closed has {len(flags)} flags for {len(segs)} subpaths")
        out, start = [], 0
        for s, c in zip(segs, flags):
            if s < 1:
                raise ValueError("every subpath needs at least one segment")
            out.append((start, s, bool(c)))
            start += 3 * s + (0 if c else 1)
        return out

    @property
    def num_segments(self) -> int:
        return sum(s for _, s, _ in self.subpaths())


@dataclass
class SVGScene:
    """A canvas and its paths in paint order (first path at the bottom).

    width, height: canvas size in pixels.
    paths:         list of :class:`SVGPath`.
    background:    [3] RGB colour or [H, W, 3] image in 0..1; None means white. May require grad.
    """

    width: int
    height: int
    paths: list[SVGPath] = field(default_factory=list)
    background: Tensor | None = None

    @property
    def device(self) -> torch.device:
        for p in self.paths:
            return p.points.device
        return self.background.device if self.background is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for p in self.paths:
            return p.points.dtype
        return self.background.dtype if self.background is not None else torch.float32

    def parameters(self, points: bool = True, colors: bool = True, widths: bool = False,
                   background: bool = False) -> list[Tensor]:
        """Tensors of the chosen kinds (only those that are tensors), e.g. for an optimiser."""
        out: list[Tensor] = []
        for p in self.paths:
            if points:
                out.append(p.points)
            if colors:
                out += [c for c in (p.fill, p.stroke) if c is not None]
            if widths and isinstance(p.stroke_width, Tensor):
                out.append(p.stroke_width)
        if background and self.background is not None:
            out.append(self.background)
        return out

    def requires_grad_(self, points: bool = True, colors: bool = True, widths: bool = False,
                       background: bool = False) -> "SVGScene":
        """Make the chosen parameters leaf tensors that require grad (stroke widths become tensors)."""
        for p in self.paths:
            if widths and not isinstance(p.stroke_width, Tensor):
                p.stroke_width = torch.tensor(float(p.stroke_width), dtype=p.points.dtype,
                                              device=p.points.device)
        for t in self.parameters(points, colors, widths, background):
            t.requires_grad_(True)
        return self

    @torch.no_grad()
    def clamp_(self, min_width: float = 0.0) -> "SVGScene":
        """Projection after an optimiser step: colours to [0, 1], stroke widths >= min_width."""
        for p in self.paths:
            for c in (p.fill, p.stroke):
                if c is not None:
                    c.clamp_(0.0, 1.0)
            if isinstance(p.stroke_width, Tensor):
                p.stroke_width.clamp_(min=min_width)
        if self.background is not None:
            self.background.clamp_(0.0, 1.0)
        return self

    def map_tensors(self, fn) -> "SVGScene":
        """A new scene with ``fn`` applied to every tensor (detach, clone, to, ...)."""
        def f(t):
            return fn(t) if isinstance(t, Tensor) else t
        paths = [replace(p, points=f(p.points), fill=f(p.fill), stroke=f(p.stroke),
                         stroke_width=f(p.stroke_width)) for p in self.paths]
        return SVGScene(self.width, self.height, paths, f(self.background))

    def detach(self) -> "SVGScene":
        return self.map_tensors(lambda t: t.detach())

    def clone(self) -> "SVGScene":
        return self.map_tensors(lambda t: t.detach().clone())

    def to(self, device=None, dtype=None) -> "SVGScene":
        return self.map_tensors(lambda t: t.to(device=device, dtype=dtype if t.is_floating_point() else None))
