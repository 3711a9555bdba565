"""SVG text <-> :class:`SVGScene`, with a safety gate in front of the XML parser.

Reading uses svgelements (pure Python; resolves group transforms, viewBox scaling, CSS styles,
inheritance and named colours) and normalises every shape to cubic segments: lines and quadratics
are elevated exactly, arcs approximated by cubics, each ``<path>``'s subpaths kept in one
:class:`SVGPath` so the fill rule applies across them. Writing emits one ``<path>`` per
:class:`SVGPath` with absolute ``M … C … Z``, explicit ``fill-rule``, colours, opacities, full stroke
width and round joins/caps (what the renderer draws), so the text reproduces the render.

Untrusted input is checked before any XML parser sees it (:func:`check_svg_bytes`): size limit,
UTF-8 (or UTF-16 with BOM) text only, no gzip, no ``<!DOCTYPE``/``<!ENTITY`` (external entities,
billion laughs); then, on the element tree and before svgelements interprets anything, bounded
element count, nesting depth and path-segment count *after* expanding ``<use>`` references
(use-bombs, cycles, deep groups, megabyte path strings), finite opacities and stroke widths, a
canvas within the renderer's area limit; then bounded path and segment counts while converting.
Every rejection is an :class:`SVGError` (a ``ValueError``) whose message says what to change.
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

from .renderer import MAX_CANVAS_SIDE, canvas_error
from .scene import SVGPath, SVGScene

MAX_SVG_BYTES = 8 * 1024 * 1024
MAX_ELEMENTS = 50_000
MAX_PATHS = 10_000
MAX_SEGMENTS = 200_000
MAX_CANVAS = MAX_CANVAS_SIDE          # per side; the area is capped at MAX_CANVAS_PIXELS
MAX_COORDINATE = 1e6
#: deepest element nesting, <use> references included (svgelements recurses per level)
MAX_DEPTH = 200

_SVG_NS = "{http://www.w3.org/2000/svg}"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_FORBIDDEN = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_DROPPED_TAGS = {"text", "image", "foreignObject", "filter", "mask", "clipPath", "pattern", "marker"}
#: numeric presentation values checked before svgelements converts them (it fails on inf)
_NUMERIC_PROPS = ("opacity", "fill-opacity", "stroke-opacity", "stop-opacity", "stroke-width")
_CSS_PROP = re.compile(r"(?<![\w-])(" + "|".join(_NUMERIC_PROPS) + r")\s*:\s*([^;}\s]+)")


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
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SVGError(f"SVG text contains a lone UTF-16 surrogate (U+{ord(data[exc.start]):04X} at character "
                           f"{exc.start}), which is not a character; remove it or re-save the file as UTF-8") from None
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


_ARITY = {"m": 2, "l": 2, "t": 2, "h": 1, "v": 1, "c": 6, "s": 4, "q": 4, "a": 7, "z": 0}
_NUMBER_CHARS = str.maketrans({c: ("d" if c in "0123456789.eE+-" else " ") for c in map(chr, range(128))})


def _count_numbers(text: str) -> int:
    """Runs of number characters (a lower bound of the numbers: '1-2' counts once), at C speed."""
    t = (" " + text).translate(_NUMBER_CHARS)
    return t.count(" d")


def _path_segments_lower_bound(elem: ET.Element) -> int:
    """Fewest segments an element's own path data can produce, counted on the raw text (C-speed
    str.count, no parsing): every explicit drawing command makes one, and the numbers left after
    each command's first set are repetitions that make one per at most ``max arity`` numbers.
    A polyline / polygon of n points has at least n - 1."""
    tag = _local(elem.tag)
    if tag in ("polyline", "polygon"):
        return max(0, _count_numbers(elem.get("points") or "") // 2 - 1)
    if tag != "path":
        return 0
    d = elem.get("d") or ""
    counts = {c: d.count(c) + d.count(c.upper()) for c in _ARITY}
    present = [c for c, n in counts.items() if n]
    if not present:
        return 0
    numbers = _count_numbers(d)
    repeated = max(0, numbers - sum(_ARITY[c] * n for c, n in counts.items()))
    widest = max(_ARITY[c] for c in present)
    drawn = sum(n for c, n in counts.items() if c not in "mz")
    return drawn + (repeated // widest if widest else 0)


def _check_structure(root: ET.Element, max_elements: int, max_segments: int = MAX_SEGMENTS
                     ) -> dict[str, ET.Element]:
    """Count elements, nesting depth and path segments with ``<use>`` references expanded, without
    recursion; refuse cycles, expansion bombs, deep nesting and oversized path data before any
    path is parsed."""
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

    def deps(e):
        out = list(e)
        if _local(e.tag) == "use":
            ref = _href(e)
            if ref and ref.startswith("#") and ref[1:] in ids:
                out.append(ids[ref[1:]])
        return out

    memo: dict[int, tuple[int, int, int]] = {}       # id(element) -> (elements, depth, segments) expanded
    active: set[int] = set()                          # elements on the current path of the walk
    stack = [(root, False)]
    while stack:
        e, done = stack.pop()
        key = id(e)
        if not done:
            if key in memo:
                continue
            active.add(key)
            stack.append((e, True))
            for c in deps(e):
                if id(c) in active:
                    raise SVGError(f"<use> references form a cycle through id={c.get('id') or e.get('id')!r}; "
                                   "break the cycle")
                if id(c) not in memo:
                    stack.append((c, False))
            continue
        parts = [memo[id(c)] for c in deps(e)]
        n = 1 + sum(p[0] for p in parts)
        depth = 1 + max((p[1] for p in parts), default=0)
        segs = _path_segments_lower_bound(e) + sum(p[2] for p in parts)
        active.discard(key)
        if n > max_elements:
            raise SVGError(f"SVG expands to more than {max_elements} elements through nested <use> "
                           "references; flatten the <use> copies or pass a larger max_elements")
        if depth > MAX_DEPTH:
            raise SVGError(f"SVG elements are nested more than {MAX_DEPTH} levels deep (<g> inside <g>, or chains of "
                           "<use> references); flatten the groups in an editor")
        if segs > max_segments:
            raise SVGError(f"SVG path data holds at least {segs} segments (counted before parsing, <use> copies "
                           f"included), over the limit of {max_segments}; simplify the paths or pass a larger "
                           "max_segments")
        memo[key] = (n, depth, segs)
    return ids


def _check_numeric_props(root: ET.Element):
    """Opacities and stroke widths (attributes, style attributes, <style> sheets) must be finite;
    a stroke width also at most MAX_COORDINATE.  Non-numbers are left to svgelements (ignored)."""
    for e in root.iter():
        found = [(k, e.get(k)) for k in _NUMERIC_PROPS if e.get(k) is not None]
        for text in (e.get("style") or "", (e.text or "") if _local(e.tag) == "style" else ""):
            found += _CSS_PROP.findall(text)
        for name, raw in found:
            value = str(raw).strip().lower().rstrip("%").removesuffix("px").strip()
            try:
                v = float(value)
            except ValueError:
                continue
            if not math.isfinite(v):
                raise SVGError(f"SVG {name}=\"{raw}\" on <{_local(e.tag)}> is not a finite number; "
                               + ("give a width in px" if name == "stroke-width" else "give an opacity from 0 to 1"))
            if name == "stroke-width" and abs(v) > MAX_COORDINATE:
                raise SVGError(f"SVG stroke-width=\"{raw}\" on <{_local(e.tag)}> is beyond ±{MAX_COORDINATE:g} px; "
                               "give a width in px")


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
            op = _unit(_style_value(s, "stop-opacity"), "stop-opacity")
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


def _unit(v, name: str, default: float = 1.0) -> float:
    """An opacity in 0..1 (numbers or percentages; unparsable -> default, as browsers ignore it);
    SVGError for NaN / infinity, which must never reach a colour or be written back."""
    text = str(v).strip() if v is not None else ""
    try:
        x = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return default
    if not math.isfinite(x):
        raise SVGError(f"SVG {name}=\"{text}\" is not a finite number; give an opacity from 0 to 1")
    return min(max(x, 0.0), 1.0)


def _paint(elem, attr: str, gradients: dict, opacity: float):
    """RGBA tuple of an element's fill or stroke (None for none)."""
    raw = elem.values.get(attr)
    if isinstance(raw, str) and raw.strip().startswith("url("):
        gid = raw.strip()[4:].split(")")[0].strip().strip("'\"").lstrip("#")
        rgba = gradients.get(gid)
        if rgba is None:
            warnings.warn(f"SVG paint {raw!r} not found or unsupported; painted black", stacklevel=3)
            rgba = (0.0, 0.0, 0.0, 1.0)
        own = _unit(elem.values.get(f"{attr}-opacity"), f"{attr}-opacity")
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
    ids = _check_structure(root, max_elements, max_segments)
    _check_numeric_props(root)
    _check_canvas_attrs(root)
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
    except RecursionError:
        raise SVGError("SVG is nested too deeply to interpret; flatten the groups in an editor") from None
    except Exception as exc:  # svgelements raises assorted errors on malformed attributes
        raise SVGError(f"SVG could not be interpreted: an attribute value is malformed or out of range "
                       f"({type(exc).__name__}); check the numbers, transforms and styles in the file") from None

    width, height = _canvas_size(doc)
    paths: list[SVGPath] = []
    seg_total = 0
    for elem in doc.elements():
        if not isinstance(elem, se.Shape) or isinstance(elem, se.Text):
            continue
        if str(elem.values.get("visibility", "visible")).strip() in ("hidden", "collapse"):
            continue
        opacity = _unit(elem.values.get("opacity"), "opacity")
        fill = None if isinstance(elem, se.SimpleLine) else _paint(elem, "fill", gradients, opacity)
        stroke = _paint(elem, "stroke", gradients, opacity)
        stroke_width = float(elem.stroke_width or 0.0) if stroke is not None else 0.0
        if not (math.isfinite(stroke_width) and stroke_width <= MAX_COORDINATE):
            raise SVGError(f"SVG has a stroke-width of {stroke_width:g} px after transforms, not finite or beyond "
                           f"{MAX_COORDINATE:g} px; check the stroke-width and transform values")
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
    err = canvas_error(w, h, "SVG canvas")
    if err:
        raise SVGError(f"{err}; set a smaller width/height (in px) on the <svg> element")
    return w, h


def _check_canvas_attrs(root: ET.Element):
    """The canvas limit on the root's plain width/height (px or unitless) before anything else is
    parsed; other units are checked after svgelements converts them (:func:`_canvas_size`)."""
    size = []
    for k in ("width", "height"):
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(px)?\s*", root.get(k) or "")
        try:
            size.append(float(m.group(1)) if m else None)
        except ValueError:
            size.append(None)
    if None not in size and all(math.isfinite(v) for v in size):
        err = canvas_error(round(size[0]), round(size[1]), "SVG canvas")
        if err:
            raise SVGError(f"{err}; set a smaller width/height (in px) on the <svg> element")


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
    for t in scene.parameters(points=True, colors=True, widths=True, background=True):
        if not bool(torch.isfinite(t.detach()).all()):
            raise ValueError("the scene has NaN or infinite points, colours, opacities or widths; it cannot be "
                             "written as SVG (re-run the node that made it)")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{int(w)}" height="{int(h)}" '
           f'viewBox="0 0 {int(w)} {int(h)}">']
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
