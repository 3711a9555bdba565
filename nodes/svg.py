"""SVG nodes: initialise, load (safely), render and export vector scenes for score distillation
(spec svg_rendering.md; the math is in dreamsampler_core.svg)."""
from __future__ import annotations

import hashlib

import torch
from comfy_api.latest import io

from .host.files import core_svg, input_file_path, input_svg_files
from .host.model import free_ram_bytes, throw_if_interrupted
from .common import CATEGORY, InputError, check_cdata_end, check_image, check_text
from .common import DreamNode, schema, seed_input
from ..dreamsampler_core.svg import (SVGError, SVGScene, parse_svg, random_scenes, render, scale_scene, traced_scenes,
                                     scene_to_svg)
from ..dreamsampler_core.svg.io import MAX_SVG_BYTES
from ..dreamsampler_core.svg.renderer import MAX_RENDER_BYTES, RenderLimitError, canvas_error, check_render

SUBCATEGORY = f"{CATEGORY}/svg"
#: a batch of vector scenes (a tuple of dreamsampler_core.svg.SVGScene on the CPU, one canvas size)
SVGParams = io.Custom("DREAM_SVG")

NO_FILE = "(none: use svg_text)"
INIT_MODES = ("random", "image")
TRACE_METHODS = ("kmeans", "vtracer")
MAX_CANVAS = 4096
MAX_BATCH = 16


# ----------------------------------------------------------------------------- helpers
def check_svg(svg, name: str = "svg") -> tuple[SVGScene, ...]:
    """The scenes of a DREAM_SVG input, or a clear InputError."""
    scenes = tuple(svg) if isinstance(svg, (list, tuple)) else (svg,)
    if not scenes or not all(isinstance(s, SVGScene) for s in scenes):
        raise InputError(f"'{name}' is not a Dream SVG; connect a Dream SVG Init or Dream Load SVG node, or the 'svg' "
                         "output of a distillation node.")
    if len({(s.width, s.height) for s in scenes}) != 1:
        raise InputError(f"'{name}' mixes canvas sizes; the scenes of a batch must share one size.")
    for s in scenes:
        for t in s.parameters(points=True, colors=True, widths=True, background=True):
            if not torch.isfinite(t).all():
                raise InputError(f"'{name}' has NaN or infinite parameters; re-run the node that made it.")
    return scenes


def svg_output(scenes) -> tuple[SVGScene, ...]:
    """Detached CPU copies (node outputs are cached and shared: never hand out live tensors)."""
    return tuple(s.detach().to(device="cpu") for s in scenes)


def render_budget() -> int:
    """Bytes one render may use: MAX_RENDER_BYTES, or half of the RAM still free if that is less."""
    return int(min(MAX_RENDER_BYTES, free_ram_bytes() // 2))


def check_render_size(scenes, hint: str, grad: bool = False):
    """InputError (with ``hint``: what to change) when rendering ``scenes`` is over the canvas, work
    or memory limits (estimated before anything is drawn)."""
    try:
        check_render(list(scenes), max_bytes=render_budget(), grad=grad)
    except RenderLimitError as e:
        raise InputError(f"{e}; {hint}") from None


def render_image(scenes, hint: str = "use a smaller canvas or fewer scenes") -> torch.Tensor:
    """IMAGE [B, H, W, 3] in 0..1 of a batch of scenes (no gradients); size-checked first."""
    check_render_size(scenes, hint)
    with torch.no_grad():
        return render(list(scenes), interrupt=throw_if_interrupted).clamp(0.0, 1.0).float().cpu()


def svg_texts(scenes, precision: int = 3) -> list[str]:
    return [scene_to_svg(s, precision=int(precision)) for s in scenes]


# ----------------------------------------------------------------------------- SVG Init
class DreamSVGInit(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamSVGInit",
            search_aliases=["svg", "vector", "random paths"],
            display_name="Dream SVG Init",
            category=SUBCATEGORY,
            description="Initial vector scene for score distillation. 'random': VectorFusion-style closed paths "
                        "(circles of 4 cubic segments at random places, random colours or the colours of an optional "
                        "image). 'image': one closed path per colour region of the image (k-means colours + "
                        "contours, or vtracer if installed), to vectorize or restore a raster.",
            inputs=[
                io.Combo.Input("mode", options=list(INIT_MODES), default="random",
                               tooltip="'random' (text-to-SVG) or 'image' (trace the 'image' input: vectorization, "
                                       "restoration)."),
                io.Int.Input("width", default=512, min=16, max=MAX_CANVAS, step=8,
                             tooltip="Canvas width in pixels ('random' mode; 'image' mode uses the image's size). "
                                     "Keep it a multiple of the VAE factor (8) for distillation."),
                io.Int.Input("height", default=512, min=16, max=MAX_CANVAS, step=8,
                             tooltip="Canvas height in pixels ('random' mode)."),
                io.Int.Input("num_paths", default=128, min=1, max=1024,
                             tooltip="Number of paths ('random'), or the most paths to trace ('image'). "
                                     "VectorFusion uses 128 (icons) to 256."),
                io.Int.Input("num_segments", default=4, min=1, max=32,
                             tooltip="Cubic Bezier segments per closed path (more = more flexible shapes)."),
                io.Float.Input("radius", default=0.0, min=0.0, max=1024.0, step=0.5,
                               tooltip="Initial circle radius in pixels ('random'); 0 = VectorFusion's 20 px on a "
                                       "600-px canvas, scaled to this canvas."),
                io.Float.Input("stroke_width", default=0.0, min=0.0, max=64.0, step=0.5,
                               tooltip="Width of a black outline on every path ('random'); 0 = no stroke."),
                io.Int.Input("num_colors", default=8, min=1, max=64,
                             tooltip="Colours of the k-means quantisation ('image' mode)."),
                io.Combo.Input("trace", options=list(TRACE_METHODS), default="kmeans",
                               tooltip="Tracer of 'image' mode: 'kmeans' (built in) or 'vtracer' (optional package; "
                                       "pip install vtracer)."),
                seed_input("Seed of the random positions and colours."),
                io.Int.Input("batch_size", default=1, min=1, max=MAX_BATCH,
                             tooltip="Independent random scenes ('random' mode; 'image' mode makes one per image)."),
                io.Image.Input("image", optional=True,
                               tooltip="'image' mode: the raster to trace. 'random' mode: optional, each path takes "
                                       "the colour of this image (resized to the canvas) at its centre."),
            ],
            outputs=[SVGParams.Output(display_name="svg", tooltip="The vector scene(s): connect to Dream SVG "
                                                                  "Generator (distillation), Dream SVG Render or Dream "
                                                                  "SVG to SVG File."),
                     io.Image.Output(display_name="image", tooltip="The scene(s) rendered.")],
        )

    @classmethod
    def execute(cls, mode, width, height, num_paths, num_segments, radius, stroke_width, num_colors, trace, seed,
                batch_size, image=None) -> io.NodeOutput:
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        if mode == "image":
            if image is None:
                raise InputError("'image' mode traces the 'image' input: connect an IMAGE (or switch mode to 'random').")
            img = check_image(image, "image")
            if img.shape[0] > MAX_BATCH:
                raise InputError(f"at most {MAX_BATCH} images at once, got {img.shape[0]}")
            try:
                scenes = traced_scenes(img, num_colors=int(num_colors), max_paths=int(num_paths),
                                       num_segments=int(num_segments), generator=gen, method=trace)
            except (ImportError, ValueError) as e:
                raise InputError(f"could not trace the image: {e}") from None
        elif mode == "random":
            target = None if image is None else check_image(image, "image")[0]
            scenes = random_scenes(int(batch_size), int(width), int(height), num_paths=int(num_paths),
                                   num_segments=int(num_segments), radius=float(radius) or None, generator=gen,
                                   target=target, stroke_width=float(stroke_width))
        else:
            raise InputError(f"mode must be one of {INIT_MODES}, got {mode!r}")
        out = svg_output(scenes)
        return io.NodeOutput(out, render_image(out, "lower batch_size, width or height"))


# ----------------------------------------------------------------------------- SVG Render
class DreamSVGRender(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamSVGRender",
            search_aliases=["rasterize svg", "render svg", "svg to image"],
            display_name="Dream SVG Render",
            category=SUBCATEGORY,
            description="Rasterises Dream SVG scenes to an IMAGE with the pack's anti-aliased renderer (the same one "
                        "distillation optimizes through), optionally at a larger or smaller scale.",
            inputs=[
                SVGParams.Input("svg", tooltip="Vector scene(s) to draw."),
                io.Float.Input("scale", default=1.0, min=0.05, max=16.0, step=0.05,
                               tooltip="Output size relative to the canvas (vector art stays sharp at any scale)."),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="The rendered scene(s) over their background.")],
        )

    @classmethod
    def execute(cls, svg, scale) -> io.NodeOutput:
        scenes = check_svg(svg)
        w, h = max(1, round(scenes[0].width * scale)), max(1, round(scenes[0].height * scale))
        err = canvas_error(w, h, f"the {scenes[0].width}x{scenes[0].height} canvas drawn at")
        if err:
            raise InputError(f"scale {scale:g}: {err}; lower the scale")
        return io.NodeOutput(render_image([scale_scene(s, float(scale)) for s in scenes],
                                          f"lower the scale (now {scale:g})"))


# ----------------------------------------------------------------------------- Load SVG
def _read_input_file(name: str) -> bytes:
    try:
        path = input_file_path(name)
    except ValueError as e:
        raise InputError(f"svg_file: {e}") from None
    with open(path, "rb") as f:
        data = f.read(MAX_SVG_BYTES + 1)
    if len(data) > MAX_SVG_BYTES:
        raise InputError(f"svg_file {name!r} is larger than {MAX_SVG_BYTES // (1024 * 1024)} MB; simplify it.")
    return data


def _svg_text_error(svg_text) -> str | None:
    """Why svg_text cannot be taken as it is: not storable as UTF-8, or holding ']]>', which would end
    the CDATA block core Save SVG copies the prompt (and so this text) into."""
    if not isinstance(svg_text, str) or not svg_text:
        return None
    err = check_text(svg_text, "svg_text")
    if err:
        return err
    err = check_cdata_end(svg_text, "svg_text")
    if err:
        return (f"{err}: drop the <![CDATA[ ... ]]> wrapper (plain CSS works without it) or put the file in "
                "ComfyUI's input folder and pick it as svg_file.")
    return None


class DreamLoadSVG(DreamNode):
    #: svg_file: any file in the input folder (files added after the list was built are accepted; checked below)
    FREE_COMBOS = ("svg_file",)

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamLoadSVG",
            search_aliases=["load svg", "svg", "vector"],
            display_name="Dream Load SVG",
            category=SUBCATEGORY,
            description="Reads an SVG file from ComfyUI's input folder (or pasted SVG text) into a Dream SVG scene, "
                        "safely: size and element limits, no DTD / entities, no external references; shapes are "
                        "converted to cubic paths, text / images / filters are dropped.",
            inputs=[
                io.Combo.Input("svg_file", options=[NO_FILE] + input_svg_files(), default=NO_FILE,
                               tooltip="An .svg file in ComfyUI's input folder (put files there; refresh to list "
                                       "them). Ignored when svg_text is not empty."),
                io.String.Input("svg_text", default="", multiline=True,
                                tooltip="SVG markup to parse instead of a file (takes precedence when not empty)."),
            ],
            outputs=[SVGParams.Output(display_name="svg", tooltip="The parsed scene."),
                     io.Image.Output(display_name="image", tooltip="The scene rendered at its canvas size."),
                     io.SVG.Output(display_name="svg_file", tooltip="The scene re-written as a clean SVG (core SVG "
                                                                    "type: Save SVG accepts it).")],
        )

    @classmethod
    def check_inputs(cls, svg_file=None, svg_text=None):
        # a linked input is not passed (None): it is checked in execute
        if svg_text is not None and not isinstance(svg_text, str):
            return "svg_text must be text"
        err = _svg_text_error(svg_text)
        if err:
            return err
        if svg_text and len(svg_text.encode("utf-8", "replace")) > MAX_SVG_BYTES:
            return f"svg_text is larger than {MAX_SVG_BYTES // (1024 * 1024)} MB"
        if svg_text == "" and svg_file in ("", NO_FILE):
            return "give an SVG: pick an svg_file from the input folder or paste svg_text"
        if not svg_text and svg_file not in (None, "", NO_FILE):
            try:
                input_file_path(svg_file)
            except ValueError as e:
                return f"svg_file: {e}"
        return True

    @classmethod
    def fingerprint_inputs(cls, svg_file=NO_FILE, svg_text=None):
        if svg_text:
            return hashlib.sha256(svg_text.encode("utf-8", "replace")).hexdigest()
        try:
            return hashlib.sha256(_read_input_file(svg_file)).hexdigest()
        except Exception:     # noqa: BLE001 - an unreadable file is reported by execute
            return f"unreadable:{svg_file}"

    @classmethod
    def execute(cls, svg_file, svg_text) -> io.NodeOutput:
        if svg_text is not None and not isinstance(svg_text, str):
            raise InputError("svg_text must be text (SVG markup)")
        err = _svg_text_error(svg_text)
        if err:
            raise InputError(err)
        if svg_text:
            data, origin = svg_text, "svg_text"
        elif svg_file in (None, "", NO_FILE):
            raise InputError("give an SVG: pick an svg_file from the input folder or paste svg_text")
        else:
            data, origin = _read_input_file(svg_file), f"svg_file {svg_file!r}"
        try:
            scene = parse_svg(data)
            check_render(scene, max_bytes=render_budget())
        except (SVGError, RenderLimitError) as e:
            raise InputError(f"{origin}: {e}") from None
        out = svg_output([scene])
        return io.NodeOutput(out, render_image(out), core_svg(svg_texts(out)))


# ----------------------------------------------------------------------------- export
class DreamSVGToFile(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamSVGToFile",
            search_aliases=["save svg", "export svg"],
            display_name="Dream SVG to SVG File",
            category=SUBCATEGORY,
            description="Writes Dream SVG scenes as SVG documents (absolute cubic paths, explicit fill rule, colours and "
                        "opacities, so browsers draw what was optimized) in ComfyUI's core SVG type: connect to the "
                        "core Save SVG node.",
            inputs=[
                SVGParams.Input("svg", tooltip="Vector scene(s) to export."),
                io.Int.Input("precision", default=3, min=0, max=8,
                             tooltip="Decimals of the coordinates (3 is exact to a thousandth of a pixel)."),
            ],
            outputs=[io.SVG.Output(display_name="svg_file", tooltip="One SVG document per scene (core SVG type).")],
        )

    @classmethod
    def execute(cls, svg, precision) -> io.NodeOutput:
        return io.NodeOutput(core_svg(svg_texts(check_svg(svg), precision)))


NODES = [DreamSVGInit, DreamLoadSVG, DreamSVGRender, DreamSVGToFile]
