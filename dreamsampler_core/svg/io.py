"""SVG text <-> :class:`SVGScene`, with a safety gate in front of the XML parser.

Reading uses svgelements (pure Python; resolves group transforms, viewBox scaling, CSS styles,
inheritance and named colours) and normalises every shape to cubic segments: lines and quadratics
are elevated exactly, arcs approximated by cubics, each ``<path>``'s subpaths kept in one
:class:`SVGPath` so the fill rule applies across them. Writing emits one ``<path>`` per
:class:`SVGPath` with absolute ``M … C … Z``, explicit ``fill-rule``, colours, opacities, full stroke
width and round joins/caps (what the renderer draws), so the text reproduces the render.

Untrusted input is checked before any XML parser sees it (:func:`check_svg_bytes`): size limit,
UTF-8 (or UTF-16 with BOM) text only, no gzip, no ``<!DOCTYPE``/``<!ENTITY`` (external entities,
billion laughs), bounded element count *after* expanding ``<use>`` references (use-bombs, cycles),
then bounded path and segment counts while converting. Every rejection is an :class:`SVGError`
(a ``ValueError``) whose message says what to change.
"""
from __future__ import annotations

import base64
import io
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from typing import Sequence

import torch
from torch import Tensor

from .renderer import SVGPath, SVGScene

MAX_SVG_BYTES = 8 * 1024 * 1024
MAX_ELEMENTS = 50_000
MAX_PATHS = 10_000
MAX_SEGMENTS = 200_000
MAX_CANVAS = 8192
MAX_COORDINATE = 1e6

_SVG_NS = "{http://www.w3.org/2000/svg}"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_FORBIDDEN = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_DROPPED_TAGS = {"text", "image", "foreignObject", "filter", "mask", "clipPath", "pattern", "marker"}


class SVGError(ValueError):
    """An SVG that cannot or may not be read; the message says what to change."""


# ----------------------------------------------------------------------------------------------
# Safety gate
# ----------------------------------------------------------------------------------------------
def check_svg_bytes(data: bytes | str, max_bytes: int = MAX_SVG_BYTES) -> bytes:
    """Validate untrusted SVG input and return clean UTF-8 bytes without an XML declaration.

    Raises :class:`SVGError` for oversized, compressed, non-text or DTD-carrying input.
    """
    if isinstance(data, str):
        raw = data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    else:
        raise SVGError(f"SVG input must be str or bytes, got {type(data).__name__}")
    if len(raw) > max_bytes:
        raise SVGError(f"SVG is {len(raw)} bytes, over the limit of {max_bytes} bytes; simplify the "
                       "file (fewer/shorter paths) or pass a larger max_bytes")
    if raw[:2] == b"\x1f\x8b":
        raise SVGError("gzip-compressed SVG (.svgz) is not accepted; decompress it to a plain .svg first")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise SVGError(f"SVG is not valid UTF-16 text: {exc}") from None
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SVGError(f"SVG must be UTF-8 text; re-save it as UTF-8 ({exc})") from None
    clean = _XML_DECL.sub("", text, count=1).encode("utf-8")
    if _FORBIDDEN.search(clean):
        raise SVGError("SVG contains a <!DOCTYPE>/<!ENTITY> declaration, which is refused because it "
                       "enables external-entity and entity-expansion (billion laughs) attacks; delete "
                       "the <!DOCTYPE ...> block (plain SVG does not need it)")
    return clean


def _local(tag) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _href(elem) -> str | None:
    return elem.get("href") or elem.get(_XLINK_HREF)


def _check_structure(root: ET.Element, max_elements: int) -> dict[str, ET.Element]:
    """Count elements with ``<use>`` references expanded; refuse cycles and expansion bombs."""
    if _local(root.tag) != "svg":
        raise SVGError(f"root element is <{_local(root.tag)}>, not <svg>; this is not an SVG document")
    ids = {}
    total = 0
    for e in root.iter():
        total += 1
        i = e.get("id")
        if i is not None:
            ids[i] = e
    if total > max_elements:
        raise SVGError(f"SVG has {total} elements, over the limit of {max_elements}; simplify it or "
                       "pass a larger max_elements")
    memo: dict[int, int] = {}
    active: set[int] = set()

    def expanded(e: ET.Element) -> int:
        key = id(e)
        if key in memo:
            return memo[key]
        if key in active:
            raise SVGError(f"<use> references form a cycle through id={e.get('id')!r}; break the cycle")
        active.add(key)
        n = 1
        for child in e:
            n += expanded(child)
            if n > max_elements:
                break
        if _local(e.tag) == "use":
            ref = _href(e)
            if ref and ref.startswith("#") and ref[1:] in ids:
                n += expanded(ids[ref[1:]])
        active.discard(key)
        if n > max_elements:
            raise SVGError(f"SVG expands to more than {max_elements} elements through nested <use> "
                           "references; flatten the <use> copies or pass a larger max_elements")
        memo[key] = n
        return n

    expanded(root)
    return ids


def _style_value(elem: ET.Element, name: str) -> str | None:
    style = elem.get("style") or ""
    for decl in style.split(";"):
        if ":" in decl:
            k, v = decl.split(":", 1)
            if k.strip() == name:
                return v.strip()
    return elem.get(name)


def _gradient_colors(root: ET.Element, ids: dict[str, ET.Element]) -> dict[str, tuple[float, ...]]:
    """Mean RGBA of each linear/radial gradient's stops (gradients are approximated by flat colours)."""
    from svgelements import Color

    out = {}
    for gid, g in ids.items():
        if _local(g.tag) not in ("linearGradient", "radialGradient"):
            continue
        src, hops = g, 0
        while not [s for s in src if _local(s.tag) == "stop"] and _href(src) and hops < 8:
            src = ids.get(_href(src)[1:], src)
            hops += 1
        cols = []
        for s in src:
            if _local(s.tag) != "stop":
                continue
            c = Color(_style_value(s, "stop-color") or "black")
            if c.value is None:
                continue
            try:
                op = float(_style_value(s, "stop-opacity") or 1.0)
            except ValueError:
                op = 1.0
            cols.append((c.red / 255, c.green / 255, c.blue / 255, c.alpha / 255 * op))
        if cols:
            out[gid] = tuple(sum(c[i] for c in cols) / len(cols) for i in range(4))
    return out


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------
def _float(v, default: float) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _paint(elem, attr: str, gradients: dict, opacity: float):
    """RGBA tuple of an element's fill or stroke (None for none)."""
    raw = elem.values.get(attr)
    if isinstance(raw, str) and raw.strip().startswith("url("):
        gid = raw.strip()[4:].split(")")[0].strip().strip("'\"").lstrip("#")
        rgba = gradients.get(gid)
        if rgba is None:
            warnings.warn(f"SVG paint {raw!r} not found or unsupported; painted black", stacklevel=3)
            rgba = (0.0, 0.0, 0.0, 1.0)
        own = _float(elem.values.get(f"{attr}-opacity"), 1.0)
        return (rgba[0], rgba[1], rgba[2], rgba[3] * own * opacity)
    color = getattr(elem, attr)
    if color is None or color.value is None:
        return None
    return (color.red / 255, color.green / 255, color.blue / 255, color.alpha / 255 * opacity)


def _cubic_subpaths(shape, max_segments_left: int):
    """[(points [[x, y], ...], closed)] of a svgelements shape, all segments cubic."""
    from svgelements import Arc, Close, CubicBezier, Line, Move, Path, QuadraticBezier

    path = shape if isinstance(shape, Path) else Path(shape)
    path.approximate_arcs_with_cubics()
    subpaths, pts, start, closed, count = [], None, None, False, 0

    def flush():
        if pts is not None and len(pts) >= 4:
            if not closed and math.dist(pts[0], pts[-1]) < 1e-9:
                subpaths.append((pts[:-1], True))
            else:
                subpaths.append((pts[:-1], True) if closed else (pts, False))

    def add(c1, c2, end):
        nonlocal count
        count += 1
        if count > max_segments_left:
            raise SVGError(f"SVG has more than the allowed number of path segments ({max_segments_left} "
                           "left); simplify the paths or pass a larger max_segments")
        pts.extend([c1, c2, end])

    for seg in path.segments():
        if isinstance(seg, Move):
            flush()
            p = (float(seg.end.x), float(seg.end.y))
            pts, start, closed = [p], p, False
            continue
        if pts is None or closed:  # drawing after Z continues from the subpath start
            flush()
            pts, closed = [start if start is not None else (float(seg.start.x), float(seg.start.y))], False
            start = pts[0]
        p0 = pts[-1]
        if isinstance(seg, Close):
            if math.dist(p0, start) > 1e-9:
                add(_lerp(p0, start, 1 / 3), _lerp(p0, start, 2 / 3), start)
            closed = True
            continue
        end = (float(seg.end.x), float(seg.end.y))
        if isinstance(seg, Line):
            add(_lerp(p0, end, 1 / 3), _lerp(p0, end, 2 / 3), end)
        elif isinstance(seg, QuadraticBezier):
            c = (float(seg.control.x), float(seg.control.y))
            add(_lerp(p0, c, 2 / 3), _lerp(end, c, 2 / 3), end)
        elif isinstance(seg, CubicBezier):
            add((float(seg.control1.x), float(seg.control1.y)),
                (float(seg.control2.x), float(seg.control2.y)), end)
        elif isinstance(seg, Arc):
            for cub in seg.as_cubic_curves():
                add((float(cub.control1.x), float(cub.control1.y)),
                    (float(cub.control2.x), float(cub.control2.y)), (float(cub.end.x), float(cub.end.y)))
    flush()
    return subpaths, count


def _lerp(a, b, t):
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def parse_svg(data: str | bytes, *, max_bytes: int = MAX_SVG_BYTES, max_elements: int = MAX_ELEMENTS,
              max_paths: int = MAX_PATHS, max_segments: int = MAX_SEGMENTS,
              dtype: torch.dtype = torch.float32, device=None) -> SVGScene:
    """Parse SVG text into an :class:`SVGScene` (canvas = the SVG's width × height in px).

    Supported: path (all commands), rect (incl. rx/ry), circle, ellipse, line, polyline, polygon,
    groups and ``<use>`` with transforms, viewBox scaling, presentation attributes and CSS ``style``,
    named/hex/rgb colours, fill/stroke/element opacity, fill-rule, stroke-width. Gradients are
    approximated by the mean of their stops; text, images, filters, masks, clip paths, markers and
    patterns are dropped with a warning. Element ``opacity`` multiplies fill and stroke alpha (nested
    group opacities are not multiplied: the innermost one wins). The background is white.
    """
    clean = check_svg_bytes(data, max_bytes)
    try:
        root = ET.fromstring(clean)
    except ET.ParseError as exc:
        raise SVGError(f"SVG is not well-formed XML ({exc}); check that the file is complete") from None
    ids = _check_structure(root, max_elements)
    try:
        import svgelements as se
    except ImportError as exc:
        raise ImportError("reading SVG files needs the 'svgelements' package: pip install svgelements") from exc
    gradients = _gradient_colors(root, ids)
    dropped = sorted({_local(e.tag) for e in root.iter() if _local(e.tag) in _DROPPED_TAGS})
    if dropped:
        warnings.warn(f"SVG elements not representable as paths were dropped: {', '.join(dropped)}",
                      stacklevel=2)
    try:
        doc = se.SVG.parse(io.BytesIO(clean), reify=True)
    except SVGError:
        raise
    except Exception as exc:  # svgelements raises assorted errors on malformed attributes
        raise SVGError(f"SVG could not be interpreted ({type(exc).__name__}: {exc})") from None

    width, height = _canvas_size(doc)
    paths: list[SVGPath] = []
    seg_total = 0
    for elem in doc.elements():
        if not isinstance(elem, se.Shape) or isinstance(elem, se.Text):
            continue
        if str(elem.values.get("visibility", "visible")).strip() in ("hidden", "collapse"):
            continue
        opacity = min(max(_float(elem.values.get("opacity"), 1.0), 0.0), 1.0)
        fill = None if isinstance(elem, se.SimpleLine) else _paint(elem, "fill", gradients, opacity)
        stroke = _paint(elem, "stroke", gradients, opacity)
        stroke_width = float(elem.stroke_width or 0.0) if stroke is not None else 0.0
        if stroke is not None and stroke_width <= 0:
            stroke = None
        if fill is None and stroke is None:
            continue
        subpaths, n = _cubic_subpaths(elem, max_segments - seg_total)
        seg_total += n
        if fill is not None and stroke is None:  # a fill closes open subpaths with a straight line
            subpaths = [(p if c else p + [_lerp(p[-1], p[0], 1 / 3), _lerp(p[-1], p[0], 2 / 3)], True)
                        for p, c in subpaths]
        subpaths = [(p, c) for p, c in subpaths if len(p) >= 3]
        if not subpaths:
            continue
        if len(paths) >= max_paths:
            raise SVGError(f"SVG has more than {max_paths} painted paths; simplify it or pass a larger "
                           "max_paths")
        rule = str(elem.values.get("fill-rule", "nonzero")).strip().lower()
        flat = [xy for p, _ in subpaths for xy in p]
        if not all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for xy in flat for v in xy):
            raise SVGError(f"SVG has coordinates that are not finite or beyond ±{MAX_COORDINATE:g} px after "
                           "transforms; check the transform/viewBox values")
        pts = torch.tensor(flat, dtype=dtype, device=device)
        as_t = lambda c: None if c is None else torch.tensor(c, dtype=dtype, device=device).clamp(0, 1)
        paths.append(SVGPath(
            points=pts, fill=as_t(fill), stroke=as_t(stroke), stroke_width=stroke_width,
            fill_rule="evenodd" if rule == "evenodd" else "nonzero",
            segments=tuple(len(p) // 3 for p, _ in subpaths), closed=tuple(c for _, c in subpaths)))
    return SVGScene(width, height, paths, None)


def _canvas_size(doc) -> tuple[int, int]:
    w, h = doc.width, doc.height
    vb = getattr(doc, "viewbox", None)
    if (not w or not h) and vb is not None:
        w, h = vb.width, vb.height
    try:
        w, h = int(round(float(w))), int(round(float(h)))
    except (TypeError, ValueError):
        raise SVGError("SVG has no usable width/height or viewBox; add width=\"…\" height=\"…\"") from None
    if not (1 <= w <= MAX_CANVAS and 1 <= h <= MAX_CANVAS):
        raise SVGError(f"SVG canvas {w}x{h} px is outside 1..{MAX_CANVAS}; set width/height (in px) on "
                       "the <svg> element")
    return w, h


def load_svg(source: str | os.PathLike | io.IOBase, *, max_bytes: int = MAX_SVG_BYTES, **kwargs) -> SVGScene:
    """Read an SVG file (path or binary/text stream) with :func:`parse_svg`; reads at most max_bytes+1."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            data = f.read(max_bytes + 1)
    else:
        data = source.read(max_bytes + 1)
    return parse_svg(data, max_bytes=max_bytes, **kwargs)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def _num(v: float, precision: int) -> str:
    s = f"{v:.{precision}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _hex(rgb) -> str:
    r, g, b = (min(max(int(round(float(c) * 255)), 0), 255) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def path_d(path: SVGPath, precision: int = 3) -> str:
    """Absolute ``M … C … [Z]`` path data of an :class:`SVGPath`."""
    pts = path.points.detach().to("cpu", torch.float64).tolist()
    f = lambda p: f"{_num(p[0], precision)},{_num(p[1], precision)}"
    parts = []
    for start, s, closed in path.subpaths():
        n = 3 * s
        sub = pts[start:start + n + (0 if closed else 1)]
        cmd = [f"M{f(sub[0])}"]
        for j in range(s):
            end = sub[(3 * j + 3) % n] if closed else sub[3 * j + 3]
            cmd.append(f"C{f(sub[3 * j + 1])} {f(sub[3 * j + 2])} {f(end)}")
        if closed:
            cmd.append("Z")
        parts.append(" ".join(cmd))
    return " ".join(parts)


def scene_to_svg(scene: SVGScene, *, precision: int = 3, embed_background_image: bool = True) -> str:
    """SVG text that renders like :func:`render` (same canvas, paint order, colours, rules, widths).

    A colour background becomes a full-canvas ``<rect>``; an image background is embedded as a PNG
    data URI when ``embed_background_image`` (else omitted). Colours are quantised to 8 bits.
    """
    w, h = scene.width, scene.height
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">']
    bg = scene.background
    if bg is None:
        out.append(f'<rect width="{w}" height="{h}" fill="#ffffff"/>')
    elif bg.dim() == 1:
        out.append(f'<rect width="{w}" height="{h}" fill="{_hex(bg.detach()[:3].tolist())}"/>')
    elif embed_background_image:
        out.append(f'<image width="{w}" height="{h}" preserveAspectRatio="none" '
                   f'href="data:image/png;base64,{_png_base64(bg)}"/>')
    for p in scene.paths:
        attrs = [f'd="{path_d(p, precision)}"']
        if p.fill is not None:
            f = p.fill.detach().tolist()
            attrs += [f'fill="{_hex(f[:3])}"', f'fill-opacity="{_num(min(max(f[3], 0), 1), 4)}"',
                      f'fill-rule="{p.fill_rule}"']
        else:
            attrs.append('fill="none"')
        width = float(p.stroke_width.detach()) if isinstance(p.stroke_width, Tensor) else float(p.stroke_width)
        if p.stroke is not None and width > 0:
            s = p.stroke.detach().tolist()
            attrs += [f'stroke="{_hex(s[:3])}"', f'stroke-opacity="{_num(min(max(s[3], 0), 1), 4)}"',
                      f'stroke-width="{_num(width, precision)}"', 'stroke-linejoin="round"',
                      'stroke-linecap="round"']
        out.append(f"<path {' '.join(attrs)}/>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _png_base64(image: Tensor) -> str:
    import numpy as np
    from PIL import Image

    arr = (image.detach().clamp(0, 1).cpu().float().numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def save_svg(scene: SVGScene, path: str | os.PathLike, **kwargs) -> None:
    """Write :func:`scene_to_svg` to a file (UTF-8)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(scene_to_svg(scene, **kwargs))


# ----------------------------------------------------------------------------------------------
# ComfyUI's core SVG type
# ----------------------------------------------------------------------------------------------
def to_comfy_svg_data(svgs: str | SVGScene | Sequence[str | SVGScene]) -> list[io.BytesIO]:
    """Payload for ComfyUI's ``SVG`` type (``comfy_extras.nodes_images.SVG(data)``): one BytesIO of
    UTF-8 SVG bytes per image of the batch. Accepts SVG text, scenes, or a sequence of either."""
    items = [svgs] if isinstance(svgs, (str, SVGScene)) else list(svgs)
    return [io.BytesIO((scene_to_svg(s) if isinstance(s, SVGScene) else s).encode("utf-8")) for s in items]


def from_comfy_svg_data(data) -> list[str]:
    """SVG texts from a ComfyUI ``SVG`` object (anything with ``.data``) or its list of BytesIO."""
    items = getattr(data, "data", data)
    return [b.getvalue().decode("utf-8") for b in items]
