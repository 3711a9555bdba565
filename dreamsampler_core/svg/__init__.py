"""Differentiable SVG: a pure-PyTorch rasteriser, SVG I/O and path initialisation.

``scene``: the scene model, :class:`SVGPath` / :class:`SVGScene`. ``renderer``: the rasteriser,
:func:`render` ([B, H, W, 3] in 0..1), and its canvas / work / memory budgets. ``pydiffvg_bridge``:
the optional pydiffvg backend's adapter. ``io``: safe SVG parsing and writing. ``init``:
VectorFusion-style random paths and image-based initialisation. See spec/svg_rendering.md.
"""
from .scene import SVGPath, SVGScene
from .renderer import composite_over, flatten_path, render, render_rgba, scale_scene
from .pydiffvg_bridge import from_pydiffvg, to_pydiffvg
from .io import (SVGError, check_svg_bytes, from_comfy_svg_data, load_svg, parse_svg, save_svg,
                 scene_to_svg, to_comfy_svg_data)
from .init import paths_from_image, random_paths, random_scenes, traced_scenes

__all__ = ["SVGPath", "SVGScene", "render", "render_rgba", "composite_over", "flatten_path",
           "to_pydiffvg", "from_pydiffvg", "SVGError", "check_svg_bytes", "parse_svg", "load_svg",
           "scene_to_svg", "save_svg", "to_comfy_svg_data", "from_comfy_svg_data", "random_paths",
           "paths_from_image", "random_scenes", "traced_scenes", "scale_scene"]
