"""SDE-Drag (spec csd §3.3): drag points of a real image by latent copy-paste at t0 followed by
Cycle-SDE, with no UNet gradients; plus point parsing and DragBench item loaders (§3.5).

Coordinates: pixel points are (x = column, y = row) in the image; latent points are
floor(pixel / f) with f the VAE's downscale factor (8 for SD).  Latents are [B, C, H, W].
"""
from __future__ import annotations

import io
import json
import math
import numbers
import pickle
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from . import cycle
from .denoiser import randn_like
from .schedule import Parameterization

Point = tuple  # (x, y)

#: most source/target pairs of one drag (DragBench items have 1-10; each pair is a copy-paste per sub-drag)
MAX_POINT_PAIRS = 100
#: longest points text parsed (100 pairs in the editor's format take about 3 kB)
MAX_POINTS_TEXT = 64 * 1024
#: deepest JSON nesting accepted ({"source": [[x, y]]} is 3 deep)
MAX_JSON_DEPTH = 16
#: file size limits of a DragBench item (a prompt.json is a few hundred bytes, a meta_data.pkl
#: holds one mask: 0.3 MB at 512 x 512 in uint8)
MAX_PROMPT_JSON_BYTES = 1 << 20
MAX_META_PKL_BYTES = 16 << 20
#: most elements of one numpy array in a meta_data.pkl (a 4096 x 4096 mask)
MAX_ARRAY_ELEMENTS = 4096 * 4096

_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlist = 3, 40, 40, 4


class PointsError(ValueError):
    """A points string or a point set the drag cannot use; the message says how to fix it."""


# ----------------------------------------------------------------------------- points
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


# ----------------------------------------------------------------------------- geometry
def substep_count(sources: Sequence[Point], targets: Sequence[Point], step_size: float) -> int:
    """Number of sub-drags m: the longest drag L split into pieces close to ``step_size`` latent px."""
    L = max(math.dist(s, t) for s, t in zip(sources, targets))
    if L <= step_size:
        return 1
    m = int(math.floor(L / step_size))
    return m + 1 if abs(L / (m + 1) - step_size) < abs(L / m - step_size) else m


def substep_points(sources, targets, m: int, k: int) -> tuple[list, list]:
    """Sub-drag k of m: P + trunc(k/m d) -> P + trunc((k+1)/m d), d = Q - P (latent cells)."""
    srcs, tgts = [], []
    for (px, py), (qx, qy) in zip(sources, targets):
        dx, dy = qx - px, qy - py
        srcs.append((px + int(k / m * dx), py + int(k / m * dy)))
        tgts.append((px + int((k + 1) / m * dx), py + int((k + 1) / m * dy)))
    return srcs, tgts


def patch_extent(p: Point, q: Point, radius: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(up, down, left, right) half-sizes shared by the patches around p and q.

    Rows y-up .. y+down-1, cols x-left .. x+right-1; each side is shrunk to fit both points
    inside the latent (so both patches have the same shape).
    """
    (px, py), (qx, qy) = p, q
    return (min(radius, py, qy), min(radius, height - py, height - qy),
            min(radius, px, qx), min(radius, width - px, width - qx))


def copy_paste(z: Tensor, sources, targets, radius: int, alpha: float, beta: float,
               generator: torch.Generator | None = None) -> Tensor:
    """SDE-Drag's latent surgery on a VP latent z [B, C, H, W] (returns a new tensor).

    For each pair in order: F = z[patch(p)]; z[patch(p)] = beta F + sqrt(1 - beta^2) n (the code's
    variance-preserving perturbation, spec csd §3.9.1); z[patch(q)] = alpha F.  The paste may
    overwrite part of the freshly perturbed source (overlap) and later pairs overwrite earlier ones.
    """
    z = z.clone()
    H, W = z.shape[-2:]
    keep, add = float(beta), math.sqrt(max(0.0, 1.0 - float(beta) ** 2))
    for p, q in zip(sources, targets):
        up, down, left, right = patch_extent(p, q, radius, H, W)
        (px, py), (qx, qy) = p, q
        src = (..., slice(py - up, py + down), slice(px - left, px + right))
        tgt = (..., slice(qy - up, qy + down), slice(qx - left, qx + right))
        feat = z[src].clone()
        n = randn_like(feat, generator)
        z[src] = keep * feat + add * n
        z[tgt] = float(alpha) * feat
    return z


def guidance_ramp(steps: int, cfg: float, kind: str = "linear") -> list:
    """Per-step CFG scale of one sub-drag, step 0 at t0: linear from ``cfg`` at t0 down to 1 at the
    clean end (spec csd §3.3), or constant."""
    if kind == "constant" or steps <= 1:
        return [float(cfg)] * steps
    if kind != "linear":
        raise ValueError(f"guidance ramp must be 'linear' or 'constant', got {kind!r}")
    return [float(cfg) - (float(cfg) - 1.0) * i / (steps - 1) for i in range(steps)]


# ----------------------------------------------------------------------------- algorithm
@torch.no_grad()
def sde_drag(denoise, x0: Tensor, sigmas: Tensor, param: Parameterization, sources, targets, *,
             mask: Tensor | None = None, alpha: float = 1.1, beta: float = 0.3, radius: int = 5,
             step_size: float = 2.0, generator: torch.Generator | None = None, callback=None) -> Tensor:
    """SDE-Drag (spec csd §3.3) from the clean latent x0 [B, C, H, W] (model space, at sigmas[-1]).

    denoise(x, sigma) -> x0 with the prompt (the host applies the guidance ramp by level).
    sigmas: descending from the t0 level to the smallest level (> 0).  sources/targets: latent
    cells (x, y).  mask [B|1, 1, H, W], 1 = editable.  Each sub-drag: Markov forward noising
    (Eq. 7) with noise recovery (Eq. 8), copy-paste at t0, Cycle-SDE back (Eq. 6, eta = 1) with
    the unedited region reset to the forward path after every step.
    ``callback(sub, m, phase, k, x0_hat, x)`` with phase "encode" | "decode".
    """
    cycle.check_end_level(sigmas)
    H, W = x0.shape[-2:]
    for i, (x, y) in enumerate([*sources, *targets]):
        if not (0 <= x < W and 0 <= y < H):
            raise PointsError(f"latent point {i} ({x}, {y}) is outside the {W}x{H} latent")
    m = substep_count(sources, targets, step_size)
    x = x0
    for sub in range(m):
        p_k, q_k = substep_points(sources, targets, m, sub)

        def enc_cb(k, x0_hat, x_t, sub=sub):
            if callback is not None:
                callback(sub, m, "encode", k, x0_hat, x_t)

        def dec_cb(k, z, x_t, sub=sub):
            if callback is not None:
                callback(sub, m, "decode", k, z, x_t)

        code = cycle.dpm_encode(denoise, x, sigmas, param, eta=1.0, coupling="markov", generator=generator,
                                callback=enc_cb)
        vp = param.vp_scale(sigmas[0])
        start = copy_paste(code.x_start / vp, p_k, q_k, radius, alpha, beta, generator) * vp
        x = cycle.cycle_decode(denoise, code, param, x_start=start, mask=mask, callback=dec_cb)
    return x


# ----------------------------------------------------------------------------- DragBench
@dataclass
class DragItem:
    """One DragBench sample: pixel points (x, y), the prompt, the image and an optional mask.

    ``mask``: a [H, W] array-like (nonzero = editable) from meta_data.pkl, or None;
    ``mask_path``: mask.png (255 = editable) for the SDE-Drag format, or None.
    """

    prompt: str
    sources: list
    targets: list
    image_path: Path
    mask_path: Path | None = None
    mask: object = None


# A DragBench meta_data.pkl holds {"prompt": str, "points": [array or [x, y], ...], "mask": array}.
# The unpickler below builds exactly that: containers and numbers from pickle opcodes, numpy
# arrays only from the values stored in the file (size checked against the shape first), and it
# refuses every callable that could allocate from a number (bytes(n), ndarray(shape)) or run code.
_NUMERIC_DTYPES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"}


class _Refused(pickle.UnpicklingError):
    pass


class _Dtype:
    """A numeric numpy dtype announced by a pickle (numpy.dtype(code, align, copy) + its state)."""

    def __init__(self, code, align=False, copy=True):
        if isinstance(code, bytes):
            code = code.decode("latin1")
        if not isinstance(code, str) or code not in _NUMERIC_DTYPES:
            raise _Refused(f"a numpy array of dtype {_short.repr(code)}; DragBench files hold numeric arrays only "
                           "(points, mask)")
        self.dtype = np.dtype(code)

    def __setstate__(self, state):
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if not (isinstance(state, tuple) and len(state) >= 5 and state[2] is None and state[3] is None
                and state[4] is None and state[1] in ("<", ">", "|", "=")):
            raise _Refused("a structured or malformed numpy dtype")
        if state[1] in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(state[1])


def _as_dtype(d) -> np.dtype:
    if isinstance(d, _Dtype):
        return d.dtype
    return _Dtype(d).dtype


def _array_from_data(data, dtype, shape, fortran=False) -> np.ndarray:
    """An array holding exactly the given bytes; its shape is checked before anything is allocated."""
    dt = _as_dtype(dtype)
    if not (isinstance(shape, tuple) and len(shape) <= 4
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape)):
        raise _Refused(f"a numpy array of shape {_short.repr(shape)}")
    count = math.prod(shape)
    if count > MAX_ARRAY_ELEMENTS:
        raise _Refused(f"a numpy array of {count} elements (at most {MAX_ARRAY_ELEMENTS})")
    if isinstance(data, pickle.PickleBuffer):
        data = data.raw()
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != count * dt.itemsize:
        raise _Refused(f"a numpy array whose data ({_short.repr(type(data).__name__)}) does not match its "
                       f"shape {shape} and dtype {dt}")
    flat = np.frombuffer(bytes(data), dtype=dt)
    return flat.reshape(shape, order="F" if fortran else "C").copy()


class _Array:
    """A numpy array announced by numpy.core.multiarray._reconstruct(ndarray, (0,), b'b'); its
    shape, dtype and data arrive with the BUILD that follows (numpy's ndarray state)."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise _Refused("a malformed numpy array")
        _, shape, dtype, fortran, data = state
        self.array = _array_from_data(data, dtype, tuple(shape) if isinstance(shape, (list, tuple)) else shape,
                                      bool(fortran))


class _NDArrayClass:
    """Stands for numpy.ndarray: only accepted as _reconstruct's first argument, never called."""

    __slots__ = ()

    def __call__(self, *args, **kw):
        raise _Refused(f"a call numpy.ndarray{_short.repr(args)}, which allocates uninitialised memory")

    def __setstate__(self, state):
        raise _Refused("a state applied to numpy.ndarray")


_NDARRAY = _NDArrayClass()


def _reconstruct(cls, shape, dtype):
    if cls is not _NDARRAY or not isinstance(shape, tuple) or shape != (0,):
        raise _Refused(f"a numpy array without data (_reconstruct with shape {_short.repr(shape)}, which returns "
                       "uninitialised memory)")
    return _Array()


def _frombuffer(buf, dtype, shape, order="C"):         # protocol 5 (in-band buffers)
    return _array_from_data(buf, dtype, tuple(shape) if isinstance(shape, (list, tuple)) else shape, order == "F")


def _scalar(dtype, data):
    arr = _array_from_data(data, dtype, (1,))
    return arr[0].item()


def _encode(text, encoding="latin1"):                   # protocol 2 stores bytes as latin-1 text
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") != "latin1":
        raise _Refused("_codecs.encode of anything but latin-1 text")
    return text.encode("latin1")


def _bytes(*args):                                      # protocol 2 writes b"" as bytes()
    if args:
        raise _Refused(f"a call builtins.bytes{_short.repr(args)} (a size to allocate: a memory bomb)")
    return b""


class _Global:
    """What find_class hands out: a callable that a pickle can call but not modify (BUILD refused)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)

    def __setstate__(self, state):
        raise _Refused("a state applied to a function")


_GLOBALS = {("numpy", "dtype"): _Global(_Dtype), ("_codecs", "encode"): _Global(_encode),
            ("builtins", "bytes"): _Global(_bytes)}
for _m in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _GLOBALS[(_m, "_reconstruct")] = _Global(_reconstruct)
    _GLOBALS[(_m, "scalar")] = _Global(_scalar)
for _m in ("numpy.core.numeric", "numpy._core.numeric"):
    _GLOBALS[(_m, "_frombuffer")] = _Global(_frombuffer)


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only what a DragBench meta_data.pkl holds; every other global is refused."""

    def find_class(self, module, name):
        module = "builtins" if module == "__builtin__" else module          # protocol 2 (fix_imports)
        if (module, name) == ("numpy", "ndarray"):
            return _NDARRAY
        found = _GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"the global {module}.{name}")
        return found


def _resolve(v):
    """An announced array's data (refused if its BUILD never came), other values unchanged."""
    if isinstance(v, _Array):
        if v.array is None:
            raise PointsError("a numpy array without data")
        return v.array
    if isinstance(v, _Dtype):
        raise PointsError("a bare numpy dtype where a value was expected")
    return v


def _read_capped(path: Path, limit: int, label: str) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise PointsError(f"{label} is {size / 2 ** 20:.1f} MB, over the {limit / 2 ** 20:.0f} MB limit for a "
                          "DragBench file; check that it is the item's own file")
    with open(path, "rb") as fh:
        return fh.read(limit + 1)[:limit]


def _points_of(raw, label: str) -> list:
    raw = _resolve(raw)
    if isinstance(raw, np.ndarray):
        if raw.ndim != 2 or raw.shape[1] != 2:
            raise PointsError(f"{label}: 'points' must be an N x 2 array of [x, y], got shape {raw.shape}")
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)):
        raise PointsError(f"{label}: 'points' must be a list of [x, y] points, got {type(raw).__name__}")
    if len(raw) > 2 * MAX_POINT_PAIRS:
        raise PointsError(f"{label}: 'points' has {len(raw)} entries ({len(raw) // 2} handle/target pairs); at most "
                          f"{MAX_POINT_PAIRS} pairs are supported")
    out = []
    for i, p in enumerate(raw):
        p = _resolve(p)
        if isinstance(p, np.ndarray):
            p = p.reshape(-1).tolist() if p.size == 2 else p.tolist()
        out.append(_point(p, f"{label}: points[{i}]"))
    return out


def _mask_of(raw, label: str):
    """None or a float32 [H, W] / [H, W, C] array (nonzero = editable)."""
    raw = _resolve(raw)
    if raw is None:
        return None
    if isinstance(raw, (list, tuple)):
        rows = [_resolve(r) for r in raw]
        if not rows or not all(isinstance(r, (list, tuple)) and r and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) for v in r) for r in rows):
            raise PointsError(f"{label}: 'mask' must be an H x W array of numbers (a list of rows of numbers)")
        if len({len(r) for r in rows}) != 1:
            raise PointsError(f"{label}: 'mask' rows have different lengths ({min(map(len, rows))} to "
                              f"{max(map(len, rows))}); it must be an H x W array")
        if len(rows) * len(rows[0]) > MAX_ARRAY_ELEMENTS:
            raise PointsError(f"{label}: 'mask' has more than {MAX_ARRAY_ELEMENTS} values")
        raw = np.asarray(rows, dtype=np.float32)
    if not isinstance(raw, np.ndarray) or raw.ndim not in (2, 3) or raw.size == 0:
        raise PointsError(f"{label}: 'mask' must be an H x W array, got "
                          f"{raw.shape if isinstance(raw, np.ndarray) else type(raw).__name__}")
    mask = raw.astype(np.float32)
    if not np.isfinite(mask).all():
        raise PointsError(f"{label}: 'mask' contains NaN or infinite values")
    return mask


def read_meta_pkl(path, label: str | None = None) -> dict:
    """DragDiffusion's DragBench meta_data.pkl, parsed without executing arbitrary objects.

    Returns {"prompt": str, "sources": [(x, y)], "targets": [(x, y)], "mask": float32 array or None}.
    ``label``: how messages name the file (default: its path)."""
    path = Path(path)
    label = label or str(path)
    data = _read_capped(path, MAX_META_PKL_BYTES, label)
    try:
        loaded = _RestrictedUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise PointsError(f"refusing to load {label}: it holds {e}. A pickle can run code or allocate unbounded "
                          "memory, so only a DragBench {prompt, points, mask} file of numbers and numeric arrays is "
                          "read; convert the item to prompt.json ({\"prompt\", \"source\", \"target\"}) "
                          "otherwise.") from None
    except PointsError as e:
        raise PointsError(f"{label} holds {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, RecursionError) as e:
        raise PointsError(f"{label} is not a readable DragBench meta_data.pkl (damaged or another kind of pickle: "
                          f"{type(e).__name__}); re-download the item") from None
    if not isinstance(loaded, dict) or "points" not in loaded:
        raise PointsError(f"{label} must hold a dict with 'prompt', 'points' and 'mask'")
    try:
        prompt = _resolve(loaded.get("prompt", ""))
        if not isinstance(prompt, str):
            raise PointsError(f"{label}: 'prompt' must be text, got {type(prompt).__name__}")
        pts = _points_of(loaded["points"], label)
        mask = _mask_of(loaded.get("mask"), label)
    except PointsError as e:
        msg = str(e)
        raise PointsError(msg if msg.startswith(label) else f"{label} holds {msg}") from None
    if len(pts) % 2:
        raise PointsError(f"{label}: 'points' has an odd count ({len(pts)}); it interleaves handle, target")
    return {"prompt": prompt, "sources": pts[0::2], "targets": pts[1::2], "mask": mask}


def read_prompt_json(path, label: str | None = None) -> dict:
    """SDE-Drag's DragBench prompt.json: {"source": [[x, y], ...], "target": [...], "prompt": str}."""
    path = Path(path)
    label = label or str(path)
    raw = _read_capped(path, MAX_PROMPT_JSON_BYTES, label)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PointsError(f"{label} is not UTF-8 text; re-save it as UTF-8 JSON") from None
    data = load_json(text, label)
    if not isinstance(data, dict) or "source" not in data or "target" not in data:
        raise PointsError(f"{label} must be an object with 'source', 'target' and 'prompt'")
    for key in ("source", "target"):
        if not isinstance(data[key], list):
            raise PointsError(f"{label}: '{key}' must be a list of [x, y] points, got {type(data[key]).__name__}")
        check_pair_count(len(data[key]), f"{label}: '{key}'")
    prompt = data.get("prompt", "")
    if not isinstance(prompt, str):
        raise PointsError(f"{label}: 'prompt' must be text, got {type(prompt).__name__}")
    src = [_point(p, f"{label}: source[{i}]") for i, p in enumerate(data["source"])]
    tgt = [_point(p, f"{label}: target[{i}]") for i, p in enumerate(data["target"])]
    if len(src) != len(tgt):
        raise PointsError(f"{label}: {len(src)} source points but {len(tgt)} target points")
    return {"prompt": prompt, "sources": src, "targets": tgt}


IMAGE_NAMES = ("origin_image.png", "original_image.png")


def load_dragbench_item(folder, label: str | None = None) -> DragItem:
    """A DragBench item folder in either published format (spec csd §3.5).

    SDE-Drag ("DragBench-S"): origin_image.png, mask.png, prompt.json.
    DragDiffusion ("DragBench-D"): original_image.png, meta_data.pkl.
    ``label``: how messages name the folder (e.g. its name relative to ComfyUI's input folder).
    """
    folder = Path(folder)
    label = label or str(folder)
    if not folder.is_dir():
        raise PointsError(f"{label} is not a folder; give the path of one DragBench item")
    image = next((folder / n for n in IMAGE_NAMES if (folder / n).is_file()), None)
    if image is None:
        raise PointsError(f"{label} has no {' or '.join(IMAGE_NAMES)}")
    if (folder / "prompt.json").is_file():
        meta = read_prompt_json(folder / "prompt.json", f"{label}/prompt.json")
        mask_path = folder / "mask.png" if (folder / "mask.png").is_file() else None
        return DragItem(meta["prompt"], meta["sources"], meta["targets"], image, mask_path=mask_path)
    if (folder / "meta_data.pkl").is_file():
        meta = read_meta_pkl(folder / "meta_data.pkl", f"{label}/meta_data.pkl")
        return DragItem(meta["prompt"], meta["sources"], meta["targets"], image, mask=meta["mask"])
    raise PointsError(f"{label} has neither prompt.json (SDE-Drag DragBench) nor meta_data.pkl "
                      "(DragDiffusion DragBench)")
