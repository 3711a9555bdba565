"""DragBench item loaders (spec csd §3.5): the SDE-Drag format (origin_image.png, mask.png, prompt.json)
and the DragDiffusion format (original_image.png, meta_data.pkl), the latter read by a restricted
unpickler that builds only numbers, containers and numeric numpy arrays.
"""
from __future__ import annotations

import io
import math
import numbers
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..points import MAX_POINT_PAIRS, PointsError, _point, _short, check_pair_count, load_json

#: file size limits of a DragBench item (a prompt.json is a few hundred bytes, a meta_data.pkl
#: holds one mask: 0.3 MB at 512 x 512 in uint8)
MAX_PROMPT_JSON_BYTES = 1 << 20
MAX_META_PKL_BYTES = 16 << 20
#: most elements of one numpy array in a meta_data.pkl (a 4096 x 4096 mask)
MAX_ARRAY_ELEMENTS = 4096 * 4096


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
