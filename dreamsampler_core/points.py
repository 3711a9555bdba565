"""Drag points: parsing the node's points strings (the pack's in-canvas editor, KJNodes' point editor,
a DragBench prompt.json-like object), formatting them back, and pixel -> latent cells (spec csd §3.3).

Coordinates: pixel points are (x = column, y = row) in the image; latent points are
floor(pixel / f) with f the VAE's downscale factor (8 for SD).
"""
from __future__ import annotations

import json
import math
import numbers
import reprlib
from typing import Sequence

Point = tuple  # (x, y)

#: most source/target pairs of one drag (DragBench items have 1-10; each pair is a copy-paste per sub-drag)
MAX_POINT_PAIRS = 100
#: longest points text parsed (100 pairs in the editor's format take about 3 kB)
MAX_POINTS_TEXT = 64 * 1024
#: deepest JSON nesting accepted ({"source": [[x, y]]} is 3 deep)
MAX_JSON_DEPTH = 16

_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlist = 3, 40, 40, 4


class PointsError(ValueError):
    """A points string or a point set the drag cannot use; the message says how to fix it."""


def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise PointsError(f"{where} must be a finite number, got {_short.repr(v)}")
    return float(v)


def _point(item, where: str) -> Point:
    if isinstance(item, dict):
        if "x" not in item or "y" not in item:
            raise PointsError(f"{where} must have keys \"x\" and \"y\", got {_short.repr(item)}")
        return (_number(item["x"], f"{where}.x"), _number(item["y"], f"{where}.y"))
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return (_number(item[0], f"{where}[0]"), _number(item[1], f"{where}[1]"))
    raise PointsError(f"{where} must be {{\"x\": .., \"y\": ..}} or [x, y], got {_short.repr(item)}")


def json_depth(text: str, limit: int) -> int:
    """Bracket nesting depth of JSON text (strings skipped), counted up to ``limit + 1``."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif ch in "]}":
            depth -= 1
    return deepest


def load_json(text: str, name: str, example: str = ""):
    """json.loads with a size-independent depth cap: PointsError naming ``name`` instead of a
    RecursionError; ``example`` is appended to syntax errors."""
    if json_depth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise PointsError(f"{name} is nested more than {MAX_JSON_DEPTH} levels deep; points are a flat list "
                          "like [{\"x\": 120, \"y\": 200}, ...] or {\"source\": [[x, y]], \"target\": [[x, y]]}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PointsError(f"{name} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}){example}") from None
    except RecursionError:
        raise PointsError(f"{name} is nested too deeply to be a list of points") from None


def _check_points_text(text: str, name: str):
    if len(text) > MAX_POINTS_TEXT:
        raise PointsError(f"{name} is {len(text)} characters long, at most {MAX_POINTS_TEXT} are read (room for "
                          f"{MAX_POINT_PAIRS} point pairs, the most one drag takes); give fewer points")


def parse_point_list(text: str, name: str = "points") -> list:
    """A JSON list of {"x", "y"} (KJNodes' point editor format) or of [x, y] -> [(x, y), ...]."""
    if not isinstance(text, str):
        raise PointsError(f"{name} must be a string")
    if not text.strip():
        return []
    _check_points_text(text, name)
    data = load_json(text, name, "; expected e.g. [{\"x\": 120, \"y\": 200}, {\"x\": 160, \"y\": 200}]")
    if not isinstance(data, list):
        raise PointsError(f"{name} must be a JSON list of {{\"x\", \"y\"}} points, got a {type(data).__name__}")
    return [_point(p, f"{name}[{i}]") for i, p in enumerate(data)]


def parse_drag_points(points: str, target_points: str = "") -> tuple[list, list]:
    """(sources, targets) in pixels from the node's strings.

    * ``target_points`` empty: ``points`` holds pairs, interleaved source, target, source, ...
      (what the pack's in-canvas editor writes), or a DragBench prompt.json-like object
      {"source": [[x, y], ...], "target": [[x, y], ...]}.
    * ``target_points`` given: ``points`` are the sources and ``target_points`` the targets
      (e.g. two KJNodes point editors).
    """
    stripped = points.strip() if isinstance(points, str) else ""
    if stripped.startswith("{"):
        _check_points_text(stripped, "points")
        obj = load_json(stripped, "points")
        if not isinstance(obj, dict) or "source" not in obj or "target" not in obj:
            raise PointsError("a points object must have \"source\" and \"target\" lists")
        if not isinstance(obj["source"], list) or not isinstance(obj["target"], list):
            raise PointsError("\"source\" and \"target\" must be lists of [x, y] points")
        src = [_point(p, f"points.source[{i}]") for i, p in enumerate(obj["source"])]
        tgt = [_point(p, f"points.target[{i}]") for i, p in enumerate(obj["target"])]
    elif isinstance(target_points, str) and target_points.strip():
        src = parse_point_list(points, "points")
        tgt = parse_point_list(target_points, "target_points")
    else:
        flat = parse_point_list(points, "points")
        if len(flat) % 2:
            raise PointsError(f"points has {len(flat)} entries; it needs pairs (source, target, source, target, "
                              "...): the last source has no target")
        src, tgt = flat[0::2], flat[1::2]
    if len(src) != len(tgt):
        raise PointsError(f"{len(src)} source points but {len(tgt)} target points; they must pair up")
    check_pair_count(len(src), "points")
    if not src:
        raise PointsError("no drag points: click a source then a target on the image (or type "
                          "[{\"x\": 100, \"y\": 120}, {\"x\": 140, \"y\": 120}])")
    return src, tgt


def check_pair_count(pairs: int, name: str):
    if pairs > MAX_POINT_PAIRS:
        raise PointsError(f"{name} has {pairs} pairs (source, target); at most {MAX_POINT_PAIRS} pairs are "
                          "supported in one drag; split the drag or give fewer points")


def format_points(sources: Sequence[Point], targets: Sequence[Point]) -> str:
    """The interleaved KJNodes-style string (the inverse of ``parse_drag_points``)."""
    flat = []
    for s, t in zip(sources, targets):
        flat += [s, t]
    return json.dumps([{"x": _int_if_whole(p[0]), "y": _int_if_whole(p[1])} for p in flat])


def _int_if_whole(v):
    return int(v) if float(v).is_integer() else float(v)


def check_points_inside(points: Sequence[Point], width: int, height: int, name: str = "point"):
    for i, (x, y) in enumerate(points):
        if not (0 <= x < width and 0 <= y < height):
            raise PointsError(f"{name} {i} (x={x:g}, y={y:g}) is outside the {width}x{height} image; pixel "
                              f"coordinates must satisfy 0 <= x < {width} and 0 <= y < {height}")


def to_latent_points(points: Sequence[Point], factor_x: float, factor_y: float) -> list:
    """Pixel -> latent cell: floor(p / f)."""
    return [(int(math.floor(x / factor_x)), int(math.floor(y / factor_y))) for x, y in points]
