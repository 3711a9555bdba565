"""SDE-Drag (spec csd §3.3): drag points of a real image by latent copy-paste at t0 followed by
Cycle-SDE, with no UNet gradients; plus point parsing and DragBench item loaders (§3.5).

Coordinates: pixel points are (x = column, y = row) in the image; latent points are
floor(pixel / f) with f the VAE's downscale factor (8 for SD).  Latents are [B, C, H, W].
"""
from __future__ import annotations

import json
import math
import numbers
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from . import cycle
from .schedule import Parameterization

Point = tuple  # (x, y)


class PointsError(ValueError):
    """A points string or a point set the drag cannot use; the message says how to fix it."""


# ----------------------------------------------------------------------------- points
def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise PointsError(f"{where} must be a finite number, got {v!r}")
    return float(v)


def _point(item, where: str) -> Point:
    if isinstance(item, dict):
        if "x" not in item or "y" not in item:
            raise PointsError(f"{where} must have keys \"x\" and \"y\", got {item!r}")
        return (_number(item["x"], f"{where}.x"), _number(item["y"], f"{where}.y"))
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return (_number(item[0], f"{where}[0]"), _number(item[1], f"{where}[1]"))
    raise PointsError(f"{where} must be {{\"x\": .., \"y\": ..}} or [x, y], got {item!r}")


def parse_point_list(text: str, name: str = "points") -> list:
    """A JSON list of {"x", "y"} (KJNodes' point editor format) or of [x, y] -> [(x, y), ...]."""
    if not isinstance(text, str):
        raise PointsError(f"{name} must be a string")
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PointsError(f"{name} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); expected "
                          "e.g. [{\"x\": 120, \"y\": 200}, {\"x\": 160, \"y\": 200}]") from None
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
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise PointsError(f"points is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
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
    if not src:
        raise PointsError("no drag points: click a source then a target on the image (or type "
                          "[{\"x\": 100, \"y\": 120}, {\"x\": 140, \"y\": 120}])")
    return src, tgt


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
        dev = generator.device if generator is not None else z.device
        n = torch.randn(feat.shape, generator=generator, device=dev, dtype=torch.float32).to(feat)
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


_SAFE_GLOBALS = {
    ("builtins", n) for n in ("list", "dict", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int",
                              "float", "complex", "bool", "slice")
} | {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),        # numpy's protocol-2 byte payloads
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only builtin containers and numpy arrays; anything else is refused."""

    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_meta_pkl(path) -> dict:
    """DragDiffusion's DragBench meta_data.pkl, parsed without executing arbitrary objects."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = _RestrictedUnpickler(fh).load()
    except pickle.UnpicklingError as e:
        raise PointsError(f"{path} holds objects other than lists, dicts, numbers and numpy arrays ({e}); "
                          "it is not loaded because unpickling could run arbitrary code. Convert it to "
                          "prompt.json ({\"prompt\", \"source\", \"target\"}) instead.") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, ImportError) as e:
        raise PointsError(f"{path} is not a readable DragBench meta_data.pkl: {e}") from None
    if not isinstance(data, dict) or "points" not in data:
        raise PointsError(f"{path} must hold a dict with 'prompt', 'points' and 'mask'")
    pts = [_point(_as_list(p), f"points[{i}]") for i, p in enumerate(_as_list(data["points"]))]
    if len(pts) % 2:
        raise PointsError(f"{path}: 'points' has an odd count ({len(pts)}); it interleaves handle, target")
    return {"prompt": str(data.get("prompt", "")), "sources": pts[0::2], "targets": pts[1::2],
            "mask": data.get("mask")}


def _as_list(v):
    return v.tolist() if hasattr(v, "tolist") else v


def read_prompt_json(path) -> dict:
    """SDE-Drag's DragBench prompt.json: {"source": [[x, y], ...], "target": [...], "prompt": str}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PointsError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or "source" not in data or "target" not in data:
        raise PointsError(f"{path} must be an object with 'source', 'target' and 'prompt'")
    src = [_point(p, f"source[{i}]") for i, p in enumerate(data["source"])]
    tgt = [_point(p, f"target[{i}]") for i, p in enumerate(data["target"])]
    if len(src) != len(tgt):
        raise PointsError(f"{path}: {len(src)} source points but {len(tgt)} target points")
    return {"prompt": str(data.get("prompt", "")), "sources": src, "targets": tgt}


IMAGE_NAMES = ("origin_image.png", "original_image.png")


def load_dragbench_item(folder) -> DragItem:
    """A DragBench item folder in either published format (spec csd §3.5).

    SDE-Drag ("DragBench-S"): origin_image.png, mask.png, prompt.json.
    DragDiffusion ("DragBench-D"): original_image.png, meta_data.pkl.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PointsError(f"{folder} is not a folder; give the path of one DragBench item")
    image = next((folder / n for n in IMAGE_NAMES if (folder / n).is_file()), None)
    if image is None:
        raise PointsError(f"{folder} has no {' or '.join(IMAGE_NAMES)}")
    if (folder / "prompt.json").is_file():
        meta = read_prompt_json(folder / "prompt.json")
        mask_path = folder / "mask.png" if (folder / "mask.png").is_file() else None
        return DragItem(meta["prompt"], meta["sources"], meta["targets"], image, mask_path=mask_path)
    if (folder / "meta_data.pkl").is_file():
        meta = read_meta_pkl(folder / "meta_data.pkl")
        return DragItem(meta["prompt"], meta["sources"], meta["targets"], image, mask=meta["mask"])
    raise PointsError(f"{folder} has neither prompt.json (SDE-Drag DragBench) nor meta_data.pkl "
                      "(DragDiffusion DragBench)")
