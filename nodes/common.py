"""Shared node-side pieces: the regularizer list type and input checks with actionable messages."""
from __future__ import annotations

import contextlib
import functools
import inspect
import math
from dataclasses import dataclass, field, is_dataclass
from dataclasses import fields as dataclass_fields

import torch
from comfy_api.latest import io

from ..dreamsampler_core.cycle import mask_to_latent
from ..dreamsampler_core.masks import MaskError, as_mask4d, check_mask_values
from ..dreamsampler_core.regularizers import Regularizer
from .host.model import (DEFAULT_SCHEDULER, MAX_SCHEDULE, SCHEDULER_NAMES, fix_empty_latent_channels, latent_spec,
                         parameterization, schedule_length)

CATEGORY = "DreamSampler"

#: most steps / iterations a node accepts
MAX_STEPS = 10000

#: a tuple of RegularizerSpec; builder nodes append to it (never mutate an input)
Regularizers = io.Custom("DREAM_REGULARIZERS")


@dataclass(frozen=True)
class RegularizerSpec:
    """A core regularizer plus the conditionings its predictions need (by unbound name)."""
    core: Regularizer
    conds: dict = field(default_factory=dict)
    label: str = ""


#: most regularizers one sampler takes (a chain of Dream CFG Edit / Mask Inpaint / Data Consistency
#: nodes).  Each distinct prompt among them is one more row in every model batch; prompts they share
#: are evaluated once (DreamGuider.set_regularizers), so the pack adds a few kB per regularizer beyond
#: the rows of its distinct prompts (measured in tests/e2e/test_graph_costs.py).
MAX_REGULARIZERS = 128


def extend(regularizers, spec: RegularizerSpec) -> tuple:
    """The incoming regularizers plus ``spec`` (a new tuple: an input is never mutated); refused past
    MAX_REGULARIZERS."""
    before = tuple(regularizers or ())
    if len(before) >= MAX_REGULARIZERS:
        raise InputError(f"regularizers: this chain already holds {len(before)} regularizers, the most one sampler "
                         f"takes is {MAX_REGULARIZERS}; every distinct prompt in a chain is one more image per model "
                         "call. Merge edits of the same prompt into one node (raise its strength) or split the "
                         "work over several samplers.")
    return before + (spec,)


class InputError(ValueError):
    """Raised from execute() for bad tensor inputs; the message says what to change."""


@contextlib.contextmanager
def user_errors(*kinds):
    """Inside: an exception of ``kinds`` (default ValueError: the core's input checks) becomes an
    InputError with the same message (no traceback from deep inside the core)."""
    try:
        yield
    except InputError:
        raise
    except kinds or (ValueError,) as e:
        raise InputError(str(e)) from None


def mask_input(mask, name: str) -> torch.Tensor:
    """A MASK input ([H, W] / [B, H, W] / [B, 1, H, W]) as [B, 1, H, W] float in [0, 1], or an
    InputError naming the input."""
    try:
        return as_mask4d(mask)
    except MaskError as e:
        raise InputError(f"'{name}': {e}") from None


def scheduler_input():
    return io.Combo.Input("scheduler", options=SCHEDULER_NAMES, default=DEFAULT_SCHEDULER,
                          tooltip="Noise schedule. 'ddim_uniform' is the DDIM grid of the papers "
                                  "(at 200 steps: t = 996, 991, ..., 1). Use the same one for inversion and sampling.")


#: largest seed ComfyUI's seed widgets take (64-bit unsigned)
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def seed_input(tooltip: str, default: int = 0):
    """The seed widget of a pack node (0..2^64-1, randomized / incremented after each run as
    KSampler's): one declaration, each node's own tooltip."""
    return io.Int.Input("seed", default=default, min=0, max=MAX_SEED, control_after_generate=True, tooltip=tooltip)


def latent_mask(mask, samples: torch.Tensor, name: str = "mask"):
    """A MASK input (white = editable) on the latent grid of ``samples`` (binary, bicubic resize as the
    official code), or None when not connected; InputError when it cannot be used.  On a video latent
    [B, C, T, h, w] the MASK batch is the video's frames (one mask for all, or a sequence resized
    along time to T, as ComfyUI's video noise masks): [1, 1, T or 1, h, w]."""
    if mask is None:
        return None
    try:
        m = mask_to_latent(mask, samples.shape[2:])
    except ValueError as e:
        raise InputError(f"{name}: {e}") from None
    if m.shape[0] not in (1, samples.shape[0]):
        raise InputError(f"{name} batch ({m.shape[0]}) must be 1 or the latent batch ({samples.shape[0]}).")
    if float(m.sum()) == 0.0:
        raise InputError(f"the {name} has no white (editable) pixels, so nothing would change; white = edit.")
    return m


def check_model(model):
    """The MODEL's latent convention (``Parameterization``), or an InputError that says why not."""
    with user_errors():
        return parameterization(model)


def packed_latent_error(samples, name: str, model_name: str | None = None) -> InputError | None:
    """The refusal of a packed multi-stream LATENT (ComfyUI's NestedTensor: LTX-2's audio-video
    latents, video and audio in one sample), or None for a plain tensor.  The pack's math is the
    video stream's; the audio stream runs on its own schedule scale (``ModelSamplingAV``)."""
    if torch.is_tensor(samples) or not getattr(samples, "is_nested", False):
        return None
    parts = getattr(samples, "tensors", ())
    shapes = ", ".join(str(tuple(getattr(t, "shape", ()))) for t in parts)
    model = f"this model ({model_name}) makes " if model_name else ""
    return InputError(f"'{name}' is a packed audio-video latent ({len(parts)} streams: {shapes}) as {model}"
                      "LTX-2 audio-video models make; DreamSampler works on one latent stream. Separate the video "
                      "latent from the audio latent and connect the video latent.")


def check_latent(latent, name: str = "latent_image") -> torch.Tensor:
    if not isinstance(latent, dict) or "samples" not in latent:
        raise InputError(f"'{name}' is not a LATENT (a dict with 'samples'); connect a VAE Encode or Empty Latent node.")
    s = latent["samples"]
    packed = packed_latent_error(s, name)
    if packed is not None:
        raise packed
    if not torch.is_tensor(s) or s.ndim not in (4, 5) or s.numel() == 0:
        raise InputError(f"'{name}' must hold a non-empty [batch, channels, height, width] latent, got shape "
                         f"{tuple(getattr(s, 'shape', ()))}.")
    if not torch.isfinite(s).all():
        raise InputError(f"'{name}' contains NaN or infinite values; re-encode the image or check the upstream node.")
    noise_mask = latent.get("noise_mask")
    if noise_mask is not None:
        try:
            if not torch.is_tensor(noise_mask) or noise_mask.numel() == 0:
                raise MaskError("it is not a non-empty mask tensor")
            check_mask_values(noise_mask)
        except MaskError as e:
            raise InputError(f"'{name}' carries a noise_mask (from Set Latent Noise Mask or an inpainting node) that "
                             f"cannot be used: {e}. Check the node that made the mask.") from None
    return s


#: a latent's layout by the model's spatial dimensions (latent_format.latent_dimensions)
LATENT_LAYOUTS = {1: "[batch, {c}, length]", 2: "[batch, {c}, height, width]", 3: "[batch, {c}, frames, height, width]"}

#: what a latent of this many channels is usually for (to say which model it belongs to)
LATENT_FAMILIES = {4: "SD1.x / SD2.x / SDXL models", 16: "SD3, Flux and other 16-channel models (or a video model)",
                   64: "Qwen-Image 2.1", 128: "LTX-Video"}


def model_latent(model, latent, name: str = "latent_image") -> torch.Tensor:
    """The samples of a LATENT checked against the MODEL's latent format: an empty latent of another
    family is resized as core samplers do; a filled one of the wrong shape is refused with a message
    that says which kind of model it belongs to."""
    channels, dims, model_name = latent_spec(model)
    packed = packed_latent_error(latent.get("samples") if isinstance(latent, dict) else None, name, model_name)
    if packed is not None:
        raise packed
    s = fix_empty_latent_channels(model, check_latent(latent, name), latent)
    if s.ndim != dims + 2:
        kind = "video " if s.ndim == 5 else ""
        layout = LATENT_LAYOUTS.get(dims, "").format(c=channels)
        fix = ("encode the image, or a video's frames (an IMAGE batch), with this model's VAE (VAE Encode) or use an "
               "empty latent node made for this model" if dims == 3 else
               "encode an image with this model's VAE (VAE Encode) or use an Empty Latent Image")
        raise InputError(f"'{name}' is a {s.ndim}-D {kind}latent {tuple(s.shape)}, but this model ({model_name}) takes "
                         f"{dims + 2}-D latents {layout}; {fix}.")
    if s.shape[1] != channels:
        family = LATENT_FAMILIES.get(int(s.shape[1]), f"models with {s.shape[1]}-channel latents")
        raise InputError(f"'{name}' has {s.shape[1]} channels but this model ({model_name}) uses {channels}-channel "
                         f"latents: a {s.shape[1]}-channel latent belongs to {family}. Encode the image with this "
                         "model's VAE, or use the model the latent was made for.")
    return s


def check_schedule(steps, fraction, steps_name: str = "steps", name: str = "denoise"):
    """Error string (for validate_inputs) when ComfyUI would build a schedule longer than
    MAX_SCHEDULE for ``steps`` at this denoise-like ``fraction`` (it builds steps / fraction
    levels and keeps the last ``steps``); None otherwise or when a value is missing / invalid."""
    if check_number(steps, steps_name, integer=True) or check_number(fraction, name) or steps is None \
            or fraction is None or not 0 < fraction < 1 or steps < 1:
        return None
    total = schedule_length(int(steps), float(fraction))
    if total <= MAX_SCHEDULE:
        return None
    return (f"{steps_name}={int(steps)} at {name}={fraction:g} makes ComfyUI build a {total}-level noise schedule "
            f"({steps_name} / {name}) and keep its last {int(steps)} steps; the limit is {MAX_SCHEDULE}. "
            f"Raise {name} to at least {int(steps) / MAX_SCHEDULE:.3g} or lower {steps_name}.")


def level_span(sigma_at, t_min: float, t_max: float) -> torch.Tensor:
    """The [high, low] grid a run at random noise levels in [t_min, t_max] (SDS, DDS, CSD) hands ComfyUI:
    the models load for that range, and a patch reading the run's sigmas sees it."""
    return torch.tensor([float(sigma_at(t_max)), float(sigma_at(t_min))], dtype=torch.float32)


def require_schedule(steps, fraction, steps_name: str = "steps", name: str = "denoise"):
    """check_schedule in execute() (linked values never reach validate_inputs)."""
    err = check_schedule(steps, fraction, steps_name, name)
    if err:
        raise InputError(err)


def check_text(value, name: str):
    """Error string for a text input that cannot be stored as UTF-8 (lone surrogates from a JSON
    prompt's "\\udcff" escapes), or None."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return (f"{name} contains an invalid character (a lone UTF-16 surrogate U+{ord(value[e.start]):04X} at "
                f"position {e.start}) that is not text; remove it or re-save the text as UTF-8")
    return None


def check_cdata_end(value, name: str):
    """Error string when a text input holds ']]>': core Save SVG copies the whole prompt into a CDATA
    block of the saved file, where ']]>' would end the block and turn the rest into live markup."""
    if isinstance(value, str) and "]]>" in value:
        return (f"{name} contains ']]>' (the end of a CDATA section). Text typed into a node is copied into the "
                "metadata of every SVG that Save SVG writes, where ']]>' would end the metadata block and turn the "
                "rest into live markup; remove it")
    return None


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


#: the JSON value types ComfyUI's prompt format can carry, as a user reads them
_JSON_KIND = {str: "text", bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object",
              type(None): "null"}

#: literal values accepted for these input types (after ComfyUI's own conversion of INT / FLOAT / STRING / BOOLEAN)
_WIDGET_TYPES = {"INT": (int,), "FLOAT": (int, float), "STRING": (str,), "BOOLEAN": (bool,)}

#: longest option / text shown back in a message
_SHOWN = 60


def _shown(value) -> str:
    """A short, safe rendering of a user's value for a message."""
    kind = _JSON_KIND.get(type(value), type(value).__name__)
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value) if not isinstance(value, bool) else str(value).lower()
    if isinstance(value, str):
        text = value if len(value) <= _SHOWN else f"{value[:_SHOWN]}... ({len(value)} characters)"
        return repr(text)
    return kind


def declared_inputs(cls) -> dict:
    """name -> (type, options dict) of a node's declared required and optional inputs, from
    ``INPUT_TYPES()`` (the format every ComfyUI version serves); a combo's type is ``"COMBO"`` with its
    options under ``"options"``; ``options["required"]`` says whether the input is required."""
    out = {}
    types = cls.INPUT_TYPES()
    for category in ("required", "optional"):
        for name, spec in (types.get(category) or {}).items():
            kind = spec[0] if spec else None
            extra = dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(kind, (list, tuple)):
                extra["options"] = list(kind)
                kind = "COMBO"
            extra["required"] = category == "required"
            out[name] = (kind, extra)
    return out


def literal_error(name: str, kind, extra: dict, value):
    """Error string for one literal input value against its declared type, or None.  Checks only
    values of the right type further (finite, min / max, option), so no comparison can raise."""
    if kind == "COMBO":
        options = extra.get("options") or []
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value in options:
            return None
        shown = ", ".join(map(str, options[:12])) + (", ..." if len(options) > 12 else "")
        return f"{name}: expected one of {shown}; got {_shown(value)}"
    accepted = _WIDGET_TYPES.get(kind)
    if accepted is None:
        # a socket type (MODEL, LATENT, IMAGE, a pack type): only a link from a node's output can fill it
        return (f"{name}: expected a link from a {kind} output (connect a node that gives a {kind}); got the value "
                f"{_shown(value)}")
    if isinstance(value, bool) and bool not in accepted or not isinstance(value, accepted):
        expected = {"INT": "an integer", "FLOAT": "a number", "STRING": "text", "BOOLEAN": "true or false"}[kind]
        return f"{name}: expected {expected}, got {_shown(value)}"
    if kind in ("INT", "FLOAT"):
        if not math.isfinite(value):
            return f"{name} must be finite, got {value!r}"
        lo, hi = extra.get("min"), extra.get("max")
        if lo is not None and value < lo:
            return f"{name} must be at least {lo}, got {value}"
        if hi is not None and value > hi:
            return f"{name} must be at most {hi}, got {value}"
    return None


def input_errors(cls, inputs: dict):
    """The first problem with the literal input values of a prompt for node ``cls`` (type, finiteness,
    range, option, a value where only a link fits), or None.  A linked input reaches validate_inputs as
    None (ComfyUI does not evaluate links before validation) and is skipped."""
    declared = declared_inputs(cls)
    free = getattr(cls, "FREE_COMBOS", ())
    for name, value in inputs.items():
        if value is None or name not in declared:
            continue
        kind, extra = declared[name]
        if kind == "COMBO" and name in free:
            kind = "STRING"          # a file name the node checks itself (files added after the list was built)
        err = literal_error(name, kind, extra, value)
        if err:
            return err
    return None


class DreamNode(io.ComfyNode):
    """A pack node.  Its ``validate_inputs`` takes every input (``**inputs``: ComfyUI then leaves all
    checks to it and attaches its message to every input, so each message starts with the input's name):
    first each literal value against the declared inputs (``input_errors``), then, only when every value
    has its declared type, the node's own cross-input checks in ``check_inputs`` (which may therefore
    compare and do arithmetic without guarding types)."""

    @classmethod
    def validate_inputs(cls, **inputs):
        err = input_errors(cls, inputs)
        if err:
            return err
        check = cls.check_inputs
        params = inspect.signature(check).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return first_error(check(**inputs))
        return first_error(check(**{k: v for k, v in inputs.items() if k in params}))

    @classmethod
    def check_inputs(cls, **inputs):
        return True

    def __init_subclass__(cls, **kwargs):
        """Each node's ``execute`` first checks the values it is given (``execute_errors``): a value
        that came through a link, or a literal null, never reached validate_inputs' type checks."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("execute")
        if isinstance(own, classmethod) and not getattr(own.__func__, "_dream_checked", False):
            body = own.__func__
            signature = inspect.signature(body)

            @functools.wraps(body)
            def execute(klass, *args, **inputs):
                given = signature.bind_partial(klass, *args, **inputs).arguments
                err = execute_errors(klass, given)
                if err:
                    raise InputError(err)
                return body(klass, *args, **inputs)

            execute._dream_checked = True
            cls.execute = classmethod(execute)


def execute_errors(cls, inputs: dict):
    """The first problem with the values ``execute`` receives, or None: a required input that is
    null (a literal null in an API prompt: validation cannot tell it from a link), and any widget value
    (given or linked from another node) of the wrong type, not finite, out of range or not an option."""
    free = getattr(cls, "FREE_COMBOS", ())
    for name, (kind, extra) in declared_inputs(cls).items():
        value = inputs.get(name)
        if value is None:
            if extra["required"]:
                what = f"a link from a {kind} output" if kind not in _WIDGET_TYPES and kind != "COMBO" else "a value"
                return f"{name}: required input is null; expected {what}"
            continue
        if kind not in _WIDGET_TYPES and kind != "COMBO":
            continue                  # a socket value: checked by the node with a message about what it holds
        err = literal_error(name, "STRING" if kind == "COMBO" and name in free else kind, extra, value)
        if err:
            return err
    return None


def first_error(*errors):
    """The first error string (None and True, another check's "valid", are skipped), or True."""
    for e in errors:
        if e and e is not True:
            return e
    return True


#: Schema fields newer than ComfyUI 0.3.75 (the oldest host we support): passed only where known
NEWER_SCHEMA_FIELDS = frozenset({"search_aliases"})


def schema_parameters(schema_cls) -> frozenset:
    """The keyword arguments ``schema_cls(...)`` takes: a dataclass's init fields (0.3.75's
    ``io.Schema``), else the constructor's named parameters (a public wrapper, as the newest
    ``io`` = ``_io_public`` may export); a constructor that takes only ``**kwargs`` counts as the
    dataclass it derives from, or as taking no newer field."""
    if is_dataclass(schema_cls):
        return frozenset(f.name for f in dataclass_fields(schema_cls) if f.init)
    try:
        params = inspect.signature(schema_cls).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    named = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    if any(p.kind == p.VAR_KEYWORD for p in params):
        bases = [c for c in getattr(schema_cls, "__mro__", ())[1:] if is_dataclass(c)]
        named |= frozenset(f.name for f in dataclass_fields(bases[0]) if f.init) if bases else frozenset()
    return named


def supported_fields(schema_cls, fields: dict) -> dict:
    """``fields`` less the newer ones ``schema_cls`` does not take (0.3.75's Schema has no
    ``search_aliases``; 0.38 shows them in node search)."""
    known = schema_parameters(schema_cls)
    return {k: v for k, v in fields.items() if k in known or k not in NEWER_SCHEMA_FIELDS}


def schema(**fields) -> io.Schema:
    """``io.Schema(**fields)`` on every supported ComfyUI (see ``supported_fields``)."""
    return io.Schema(**supported_fields(io.Schema, fields))
