"""Differentiable SVG: a pure-PyTorch rasteriser, SVG I/O and path initialisation.

``renderer``: :class:`SVGPath` / :class:`SVGScene` and :func:`render` ([B, H, W, 3] in 0..1), with an
optional pydiffvg backend behind an adapter. ``io``: safe SVG parsing and writing. ``init``:
VectorFusion-style random paths and image-based initialisation. See spec/svg_rendering.md.
"""
from .renderer import (SVGPath, SVGScene, composite_over, flatten_path, from_pydiffvg, render,
                       render_rgba, scale_scene, to_pydiffvg)
from .io import (SVGError, check_svg_bytes, from_comfy_svg_data, load_svg, parse_svg, save_svg,
                 scene_to_svg, to_comfy_svg_data)
from .init import paths_from_image, random_paths, random_scenes, traced_scenes

__all__ = ["SVGPath", "SVGScene", "render", "render_rgba", "composite_over", "flatten_path",
           "to_pydiffvg", "from_pydiffvg", "SVGError", "check_svg_bytes", "parse_svg", "load_svg",
           "scene_to_svg", "save_svg", "to_comfy_svg_data", "from_comfy_svg_data", "random_paths",
           "paths_from_image", "random_scenes", "traced_scenes", "scale_scene"]
