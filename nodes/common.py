"""Shared node-side pieces: the regularizer list type and input checks with actionable messages."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields as dataclass_fields

import torch
from comfy_api.latest import io

from ..dreamsampler_core.regularizers import Regularizer

CATEGORY = "DreamSampler"

#: a tuple of RegularizerSpec; builder nodes append to it (never mutate an input)
Regularizers = io.Custom("DREAM_REGULARIZERS")


@dataclass(frozen=True)
class RegularizerSpec:
    """A core regularizer plus the conditionings its predictions need (by unbound name)."""
    core: Regularizer
    conds: dict = field(default_factory=dict)
    label: str = ""


def extend(regularizers, spec: RegularizerSpec) -> tuple:
    return tuple(regularizers or ()) + (spec,)


class InputError(ValueError):
    """Raised from execute() for bad tensor inputs; the message says what to change."""


def check_latent(latent, name: str = "latent_image") -> torch.Tensor:
    if not isinstance(latent, dict) or "samples" not in latent:
        raise InputError(f"'{name}' is not a LATENT (a dict with 'samples'); connect a VAE Encode or Empty Latent node.")
    s = latent["samples"]
    if not torch.is_tensor(s) or s.ndim not in (4, 5) or s.numel() == 0:
        raise InputError(f"'{name}' must hold a non-empty [batch, channels, height, width] latent, got shape "
                         f"{tuple(getattr(s, 'shape', ()))}.")
    if not torch.isfinite(s).all():
        raise InputError(f"'{name}' contains NaN or infinite values; re-encode the image or check the upstream node.")
    return s


def check_image(image, name: str = "image") -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, C] -> [B, H, W, 3] float in 0..1 (gray is expanded), with checks."""
    if not torch.is_tensor(image) or image.ndim != 4 or image.shape[0] == 0 or min(image.shape[1:3]) < 1:
        raise InputError(f"'{name}' must be an IMAGE [batch, height, width, channels], got shape "
                         f"{tuple(getattr(image, 'shape', ()))}; connect a Load Image node.")
    if image.shape[-1] not in (1, 3, 4):
        raise InputError(f"'{name}' has {image.shape[-1]} channels; give an RGB (or gray) image")
    if not torch.isfinite(image).all():
        raise InputError(f"'{name}' contains NaN or infinite values; check the node that made it")
    img = image[..., :3] if image.shape[-1] >= 3 else image.expand(*image.shape[:-1], 3)
    return img.float().clamp(0.0, 1.0)


def check_conditioning(cond, name: str):
    if not isinstance(cond, list) or len(cond) == 0:
        raise InputError(f"'{name}' is empty; connect a CLIP Text Encode (an empty prompt is fine: encode \"\").")
    for c in cond:
        if not (isinstance(c, (list, tuple)) and len(c) >= 2 and torch.is_tensor(c[0])):
            raise InputError(f"'{name}' is not a CONDITIONING; connect a CLIP Text Encode node.")
        if not torch.isfinite(c[0]).all():
            raise InputError(f"'{name}' contains NaN values; check the text encoder / upstream nodes.")


def check_number(value, name: str, lo=None, hi=None, integer=False):
    """Returns an error string or None (for validate_inputs)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        return f"{name} must be a{'n integer' if integer else ' number'}, got {value!r}"
    if not math.isfinite(float(value)):
        return f"{name} must be finite, got {value!r}"
    if lo is not None and value < lo:
        return f"{name} must be at least {lo}, got {value}"
    if hi is not None and value > hi:
        return f"{name} must be at most {hi}, got {value}"
    return None


def first_error(*errors):
    for e in errors:
        if e:
            return e
    return True


#: Schema fields newer than ComfyUI 0.3.75 (the oldest host we support): passed only where known
NEWER_SCHEMA_FIELDS = frozenset({"search_aliases"})


def supported_fields(schema_cls, fields: dict) -> dict:
    """``fields`` less the newer ones ``schema_cls`` does not declare (0.3.75's Schema has no
    ``search_aliases``; 0.38 shows them in node search)."""
    known = {f.name for f in dataclass_fields(schema_cls)}
    return {k: v for k, v in fields.items() if k in known or k not in NEWER_SCHEMA_FIELDS}


def schema(**fields) -> io.Schema:
    """``io.Schema(**fields)`` on every supported ComfyUI (see ``supported_fields``)."""
    return io.Schema(**supported_fields(io.Schema, fields))
