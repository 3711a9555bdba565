"""Score distillation nodes: a generator (an SVG, an image or a latent), an optional data term for
restoration, and one node per method - DreamSampler distillation (Algorithm 2), SDS and DDS - each
with only the inputs it reads (spec dreamsampler §1.3, §2.4, svg_rendering §3.4; the math is in
dreamsampler_core.distill).  The generator and data-term nodes only check and carry their inputs
(``GeneratorSpec``, ``DataTermSpec``); the method node, which has the model and the VAE, materialises
them (``_materialise``, ``_fit_data_term``) and runs the one shared pipeline (``_distill``).  The old
all-in-one Dream Score Distill (nodes/distill_legacy.py) calls the same functions."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from comfy_api.latest import io

from .host.files import core_svg
from .host.model import (DEFAULT_SCHEDULER, SCHEDULER_NAMES, calculate_sigmas, intermediate_device, latent_output,
                         model_sampling, prepare_noise, progress_bar, sigma_at)
from .host.sampling import CoreSampler, new_guider, run_pipeline
from .host.vae import VAECodec, vae_decode, vae_encode
from .common import (CATEGORY, InputError, Regularizers, check_conditioning, check_latent, check_model,
                     check_schedule, first_error, level_span, mask_input, model_latent, require_schedule,
                     user_errors)
from .common import DreamNode, schema, seed_input
from .restoration import Degradation, degradation_of
from .svg import SVGParams, check_image, check_render_size, check_svg, render_image, svg_output, svg_texts
from ..dreamsampler_core.distill import (WEIGHTINGS, FitConfig, ImageGenerator, LatentGenerator, PixelDataTerm,
                                         RandomLevels, SVGGenerator)
from ..dreamsampler_core import pipelines
from ..dreamsampler_core.operators import SR_SCALES, OperatorError, fit_measurement, make_operator

SUBCATEGORY = f"{CATEGORY}/distill"
FIT_SPACES = ("auto", "latent", "pixel")
MAX_STEPS = 10000
MAX_INNER = 1000
PREVIEW_SIZE = 512

#: what a method node optimizes (a GeneratorSpec)
GeneratorType = io.Custom("DREAM_GENERATOR")
#: the restoration term of a method node (a DataTermSpec)
DataTermType = io.Custom("DREAM_DATA_TERM")

GENERATOR_NODES = "Dream SVG Generator, Dream Image Generator or Dream Latent Generator"
ZERO_SVG_LRS = "every learning rate is 0: nothing would change (raise point_lr or color_lr)"
LATENT_DATA_TERM = "restoration (measurement / mask / degradation) needs an 'svg' or 'image' generator"


# ----------------------------------------------------------------------------- the value objects
@dataclass(frozen=True, eq=False)
class GeneratorSpec:
    """What a method node optimizes, checked as far as it can be without the model and the VAE.

    kind: "svg" (value: a tuple of SVGScene), "image" (value: IMAGE [B, H, W, 3] in 0..1) or "latent"
    (value: a LATENT dict).  lr: Adam step of the SVG's colours, the image's pixel values or the
    latent's values; point_lr / width_lr: the SVG's control points and stroke widths (pixels)."""
    kind: str
    value: object
    lr: float
    point_lr: float = 0.0
    width_lr: float = 0.0


@dataclass(frozen=True, eq=False)
class DataTermSpec:
    """A restoration term as its inputs: the operator and the measurement's size rule need the
    generator's canvas and batch, known only at the method node (``_fit_data_term``)."""
    measurement: object
    mask: object = None
    degradation: object = None
    weight: float = 1.0


def _zero_lrs_error(*lrs):
    """The SVG generator's zero-learning-rate refusal, or None (in validate_inputs a linked value is None:
    not checked)."""
    known = [v for v in lrs if v is not None]
    return ZERO_SVG_LRS if len(known) == len(lrs) and max(known) <= 0 else None


def svg_generator(svg, point_lr: float, color_lr: float, width_lr: float) -> GeneratorSpec:
    """An SVG generator: the scenes checked, their render (with gradients) within the limits."""
    if _zero_lrs_error(point_lr, color_lr, width_lr):
        raise InputError(ZERO_SVG_LRS)
    scenes = check_svg(svg)
    check_render_size(scenes, "distill a smaller canvas or fewer paths", grad=True)
    return GeneratorSpec("svg", scenes, float(color_lr), float(point_lr), float(width_lr))


def _zero_lr_error(lr, lr_name: str = "lr"):
    return f"{lr_name} is 0: nothing would change (raise {lr_name})" if lr is not None and lr <= 0 else None


def raster_generator(kind: str, value, lr: float, lr_name: str = "lr") -> GeneratorSpec:
    """An image (kind "image") or latent (kind "latent") generator; ``lr_name``: the widget named in
    the zero-learning-rate message."""
    err = _zero_lr_error(lr, lr_name)
    if err:
        raise InputError(err)
    if kind == "image":
        return GeneratorSpec(kind, check_image(value, "image"), float(lr))
    check_latent(value, "latent")
    return GeneratorSpec(kind, value, float(lr))


# ----------------------------------------------------------------------------- materialising
def _mask4d(mask, hw) -> torch.Tensor:
    """ComfyUI MASK ([H, W] / [B, H, W] / [B, 1, H, W], 1 = missing) -> [B, 1, H, W] float in 0..1."""
    m = mask_input(mask, "mask")
    if tuple(m.shape[-2:]) != tuple(hw):
        raise InputError(f"the mask is {m.shape[-1]}x{m.shape[-2]} pixels but the measurement is {hw[1]}x{hw[0]}; "
                         "give a mask of the measurement's size (white = missing pixels)")
    return m


def build_data_term(measurement, mask, degradation, canvas_hw, batch: int, weight: float) -> PixelDataTerm:
    """The restoration term ||A g - y||^2 on the generator's pixels.

    With a ``degradation`` (Dream Degrade) its operator is used.  Otherwise the measurement's size
    picks the operator: the canvas size -> masked raster (``Inpainting``, the mask's white pixels are
    missing; no mask = every pixel known), the canvas divided by 2, 4 or 8 -> low-resolution raster
    (``AvgPoolSR``)."""
    if measurement is None:
        raise InputError("restoration needs the 'measurement' image (the masked or low-resolution raster)")
    y = check_image(measurement, "measurement").movedim(-1, 1) * 2.0 - 1.0          # [B, 3, h, w] in [-1, 1]
    if y.shape[0] not in (1, batch):
        raise InputError(f"the measurement has batch {y.shape[0]} but {batch} scenes are optimized; give one "
                         "measurement or one per scene")
    h, w = canvas_hw
    image_shape = (batch, 3, h, w)
    if degradation is not None:
        info = degradation_of(degradation)
        op, shape = info.op, tuple(info.image_shape)
        if tuple(shape[-2:]) != (h, w):
            raise InputError(f"the degradation was made for {shape[-1]}x{shape[-2]} images but the canvas is {w}x{h}; "
                             "initialise the SVG at the clean image's size")
        if mask is not None:
            raise InputError("give either a degradation or a mask, not both (the degradation has its own operator)")
    elif tuple(y.shape[-2:]) == (h, w):
        keep = torch.ones(1, 1, h, w) if mask is None else 1.0 - _mask4d(mask, (h, w))
        if float(keep.max()) <= 0.0:
            raise InputError("the mask hides every pixel: nothing is known to restore from")
        op = make_operator("inpainting", keep=keep)
    else:
        f = h // y.shape[-2] if y.shape[-2] else 0
        if f not in SR_SCALES or y.shape[-2] * f != h or y.shape[-1] * f != w:
            raise InputError(f"the measurement is {y.shape[-1]}x{y.shape[-2]} pixels: it must be the canvas size "
                             f"({w}x{h}, a masked raster) or the canvas divided by 2, 4 or 8 (a low-resolution "
                             "raster); resize it or connect a Dream Degrade 'degradation'")
        if mask is not None:
            raise InputError("a mask needs a measurement of the canvas size; a low-resolution measurement has no mask")
        op = make_operator("sr_avgpool", scale=f)
    with user_errors(OperatorError):
        y, _ = fit_measurement(op, y, image_shape)
        return PixelDataTerm(op, y, float(weight))


@dataclass
class _Materialised:
    """A generator made concrete for one run: its initial latent (VAE space, the sampler's input and
    DDS's source) and, for an SVG or image, its initial pixels and canvas."""
    spec: GeneratorSpec
    init_latent: torch.Tensor
    pixels: torch.Tensor | None = None        # IMAGE [B, H, W, 3] in 0..1
    canvas: tuple | None = None               # (H, W)

    @property
    def batch(self) -> int:
        return int(self.init_latent.shape[0])

    def generator(self, source_latent):
        """The core generator on ``source_latent``'s device (a latent generator starts at
        ``source_latent``, the run's model-space input)."""
        s, device = self.spec, source_latent.device
        if s.kind == "svg":
            return SVGGenerator(s.value, point_lr=s.point_lr, color_lr=s.lr, width_lr=s.width_lr, device=device)
        if s.kind == "image":
            return ImageGenerator(self.pixels.to(device).movedim(-1, 1) * 2.0 - 1.0, lr=s.lr)
        return LatentGenerator(source_latent.clone().float(), lr=s.lr)

    def outputs(self, gen, samples: torch.Tensor, vae) -> tuple:
        """(svg, image, latent, svg_file) of the optimized generator; ``samples``: E(g) (VAE space)."""
        out_latent = latent_output(self.spec.value if self.spec.kind == "latent" else None, samples,
                                   drop=("noise_mask",))
        if self.spec.kind == "svg":
            out_svg = svg_output(gen.result())
            return out_svg, render_image(out_svg), out_latent, core_svg(svg_texts(out_svg))
        if self.spec.kind == "image":
            out_image = gen.image.detach().movedim(1, -1).clamp(0.0, 1.0).float().cpu()
        else:
            out_image = vae_decode(vae, samples).float().cpu()
        return (), out_image, out_latent, core_svg([])


def _materialise(spec: GeneratorSpec, model, vae, codec) -> _Materialised:
    if spec.kind == "latent":
        return _Materialised(spec, model_latent(model, spec.value, "latent"))
    pixels = render_image(spec.value) if spec.kind == "svg" else spec.value
    canvas = tuple(pixels.shape[1:3])
    f = codec.downscale()
    if canvas[0] % f or canvas[1] % f:
        raise InputError(f"the {spec.kind} is {canvas[1]}x{canvas[0]} pixels, not a multiple of the VAE's factor {f}; "
                         f"use a canvas / image size divisible by {f}")
    return _Materialised(spec, vae_encode(vae, pixels), pixels, canvas)


def _fit_data_term(term: DataTermSpec | None, mat: _Materialised) -> PixelDataTerm | None:
    if term is None:
        return None
    if mat.spec.kind == "latent":
        raise InputError(LATENT_DATA_TERM)
    return build_data_term(term.measurement, term.mask, term.degradation, mat.canvas, mat.batch, term.weight)


def _preview(image_bhwc: torch.Tensor):
    from PIL import Image
    arr = (image_bhwc[0].detach().float().clamp(0.0, 1.0) * 255.0).round().byte().cpu().numpy()
    return ("JPEG", Image.fromarray(arr), PREVIEW_SIZE)


def _show_progress(pbar, i: int, n: int, gen) -> None:
    """The node's progress bar after iteration i of n, with the rendered generator as the preview
    where a UI is listening (an SVG or image generator)."""
    preview = None
    if gen.space == "pixel" and getattr(pbar, "hook", None) is not None:
        with torch.no_grad():
            preview = _preview((gen.render()[:1] + 1.0).movedim(1, -1) / 2.0)
    pbar.update_absolute(i + 1, n, preview)


# ----------------------------------------------------------------------------- the shared pipeline
def _distill(model, positive, negative, vae, generator, data_term, seed, iterations, inner_steps, cfg, fit_space, *,
             auto_space: str, sigmas, noise, method: str, levels=None, eta: float = 0.0, regularizers=None,
             source=None) -> tuple:
    """One distillation run (``pipelines.score_distill``): (svg, image, latent, svg_file).

    auto_space: the fit space 'auto' means; sigmas(init_latent) -> the grid handed to ComfyUI and
    noise(init_latent) -> the run's start noise; method / levels / eta: the core method and its
    settings; regularizers / source: the guider's extra prompts."""
    check_model(model)
    check_conditioning(positive, "positive")
    check_conditioning(negative, "negative")
    if not isinstance(generator, GeneratorSpec):
        raise InputError(f"'generator' is not a Dream generator; connect a {GENERATOR_NODES}")
    if data_term is not None and not isinstance(data_term, DataTermSpec):
        raise InputError("'data_term' is not a Dream data term; connect a Dream Distill Data Term")
    with user_errors():
        vae_codec = VAECodec(vae, "score distillation")
    mat = _materialise(generator, model, vae, vae_codec)
    fit = FitConfig(space=auto_space if fit_space == "auto" else fit_space, inner_steps=int(inner_steps),
                    data_term=_fit_data_term(data_term, mat))
    grid = sigmas(mat.init_latent)
    guider = new_guider(model, positive, negative, cfg, regularizers)
    if source is not None:
        guider.add_branch("source", source, cfg)
    sampler = CoreSampler(pipelines.score_distill, method=method, make_generator=mat.generator, fit=fit,
                          codec=vae_codec, levels=levels, eta=eta, seed=seed,
                          preview=functools.partial(_show_progress, progress_bar(iterations)))
    samples, gen = run_pipeline(guider, sampler, grid, mat.init_latent, noise(mat.init_latent), seed,
                                progress=False)
    return mat.outputs(gen, samples.to(intermediate_device()), vae)


def _check_regularizers(regularizers):
    if regularizers is not None and not all(hasattr(r, "core") and hasattr(r, "conds") for r in regularizers):
        raise InputError("'regularizers' must come from Dream regularizer nodes (Dream CFG Edit, Mask Inpaint, ...)")


def run_dream_distill(model, positive, negative, vae, generator, seed, iterations, inner_steps, cfg, scheduler,
                      denoise, eta, fit_space, regularizers=None, data_term=None) -> tuple:
    """DreamSampler distillation (Algorithm 2): a reverse schedule, each step's (regularized) Tweedie
    estimate fitted, the projection renoised."""
    _check_regularizers(regularizers)

    def sigmas(init_latent):
        require_schedule(iterations, denoise, "iterations", "denoise")
        grid = calculate_sigmas(model, scheduler, iterations, denoise)
        if len(grid) < 2:
            raise InputError(f"iterations={iterations} with denoise={denoise} leaves no step; raise iterations or "
                             "denoise.")
        return grid

    return _distill(model, positive, negative, vae, generator, data_term, seed, iterations, inner_steps, cfg,
                    fit_space, auto_space="pixel", sigmas=sigmas,
                    noise=lambda init_latent: prepare_noise({"samples": init_latent}, seed),
                    method="dreamsampler", eta=eta, regularizers=regularizers)


def _levels_error(min_t, max_t, max_name: str = "max_t"):
    """The refusal of a noise-level range SDS / DDS cannot draw from, or None."""
    if max_t <= 0:
        return f"{max_name} must be greater than 0 (0 would do nothing)"
    if min_t > max_t:
        return f"min_t ({min_t}) must not exceed {max_name} ({max_t}), the largest noise level sampled"
    return None


def run_score_distill(model, positive, negative, vae, generator, seed, iterations, inner_steps, cfg, max_t, min_t,
                      fit_space, weighting, data_term=None, source=None, max_name: str = "max_t") -> tuple:
    """SDS (no ``source``) or DDS (``source``: the prompt of the generator's initial output) at
    ``iterations`` random noise levels in [min_t, max_t]; ComfyUI is handed that range as the run's
    grid.  ``max_name``: the widget that holds max_t (in messages)."""
    err = _levels_error(min_t, max_t, max_name)
    if err:
        raise InputError(err)
    if source is not None:
        check_conditioning(source, "source")
    with user_errors():
        levels = RandomLevels(iterations=int(iterations), t_range=(min_t, max_t), weighting=weighting)

    return _distill(model, positive, negative, vae, generator, data_term, seed, iterations, inner_steps, cfg,
                    fit_space, auto_space="latent",
                    sigmas=lambda init_latent: level_span(sigma_at(model_sampling(model)), min_t, max_t),
                    noise=torch.zeros_like, method="sds" if source is None else "dds", levels=levels, source=source)


# ----------------------------------------------------------------------------- shared declarations
def critic_inputs(positive_tip: str = "What the result should show (e.g. 'a red fox. minimal flat 2d vector icon. "
                                      "lineal color')."):
    """model, positive, negative, vae (every distillation node's first four inputs)."""
    return [
        io.Model.Input("model", tooltip="The diffusion model (not modified; used without gradients)."),
        io.Conditioning.Input("positive", tooltip=positive_tip),
        io.Conditioning.Input("negative", tooltip="Negative prompt (used when cfg != 1)."),
        io.Vae.Input("vae", tooltip="The checkpoint's VAE: encodes the SVG / image into the model's latent space (a "
                                    "differentiable copy of its encoder for the latent fit)."),
    ]


def distill_outputs():
    """svg, image, latent, svg_file (every distillation node's outputs)."""
    return [
        SVGParams.Output(display_name="svg", tooltip="The optimized SVG scene(s) (empty for an image or latent "
                                                     "generator)."),
        io.Image.Output(display_name="image", tooltip="The final result rendered / decoded."),
        io.Latent.Output(display_name="latent", tooltip="E(g(theta)) of the final result (VAE latent)."),
        io.SVG.Output(display_name="svg_file", tooltip="The optimized scene(s) as SVG documents (core SVG type; "
                                                       "connect Save SVG). Empty without an SVG."),
    ]


def iterations_input(tooltip: str):
    return io.Int.Input("iterations", default=50, min=1, max=MAX_STEPS, tooltip=tooltip)


def inner_steps_input(tooltip: str):
    return io.Int.Input("inner_steps", default=10, min=1, max=MAX_INNER, tooltip=tooltip)


def cfg_input(tooltip: str):
    return io.Float.Input("cfg", default=7.5, min=0.0, max=200.0, step=0.1, round=0.01, tooltip=tooltip)


def fit_space_input(tooltip: str):
    return io.Combo.Input("fit_space", options=list(FIT_SPACES), default="auto", tooltip=tooltip)


def lr_input(name: str, tooltip: str):
    """The colour / image / latent learning rate widget (old node: color_lr)."""
    return io.Float.Input(name, default=0.01, min=0.0, max=1.0, step=0.001, round=False, tooltip=tooltip)


def schedule_inputs():
    """scheduler, denoise, eta of DreamSampler distillation."""
    return [
        io.Combo.Input("scheduler", options=SCHEDULER_NAMES, default=DEFAULT_SCHEDULER,
                       tooltip="Noise schedule of the reverse steps."),
        io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Where to start: 1 = pure noise (text-to-SVG); 0.4-0.7 keeps the initial drawing's "
                               "layout (vectorization, restoration)."),
        io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Fraction of fresh noise in each renoise (0 = deterministic DDIM renoise)."),
    ]


def level_inputs():
    """max_t, min_t of SDS / DDS (the old node's denoise and min_t)."""
    return [
        io.Float.Input("max_t", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="The largest noise level sampled (t_max, fraction of the schedule; 1 = pure noise)."),
        io.Float.Input("min_t", default=0.02, min=0.0, max=1.0, step=0.01,
                       tooltip="The smallest noise level sampled (t_min, fraction of the schedule)."),
    ]


def weighting_input():
    return io.Combo.Input("weighting", options=list(WEIGHTINGS), default="tweedie",
                          tooltip="Noise-level weight: 'tweedie' (the Tweedie regression, spec identity) or 'sds' "
                                  "(DreamFusion's 1 - alpha_bar).")


GENERATOR_TIP = f"What is optimized: a {GENERATOR_NODES}."
DATA_TERM_TIP = ("Restoration: a Dream Distill Data Term (||A g - y||^2 on a masked or low-resolution raster) added to "
                 "every fit; needs an SVG or image generator.")
OUTPUT_TIP = "connect to Dream Distill, Dream SDS or Dream DDS."


# ----------------------------------------------------------------------------- generator nodes
class DreamSVGGenerator(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamSVGGenerator",
            search_aliases=["svg generator", "vector generator", "distill svg"],
            display_name="Dream SVG Generator",
            category=SUBCATEGORY,
            description="An SVG scene as the generator of score distillation: its control points, colours and "
                        "stroke widths are optimized through the pack's differentiable renderer, each with its own "
                        "Adam step (0 keeps that part fixed).",
            inputs=[
                SVGParams.Input("svg", tooltip="The scene(s) to optimize (Dream SVG Init, Dream Load SVG)."),
                io.Float.Input("point_lr", default=1.0, min=0.0, max=100.0, step=0.05,
                               tooltip="Adam step of the control points in pixels (VectorFusion: 1.0 on a 600-px "
                                       "canvas). 0 freezes the shapes (colours only)."),
                lr_input("color_lr", "Adam step of the colours / opacities (VectorFusion: 0.01)."),
                io.Float.Input("width_lr", default=0.0, min=0.0, max=10.0, step=0.01,
                               tooltip="Adam step of the stroke widths in pixels (0 = keep the widths)."),
            ],
            outputs=[GeneratorType.Output(display_name="generator", tooltip=f"The SVG generator: {OUTPUT_TIP}")],
        )

    @classmethod
    def check_inputs(cls, point_lr=None, color_lr=None, width_lr=None):
        return first_error(_zero_lrs_error(point_lr, color_lr, width_lr))

    @classmethod
    def execute(cls, svg, point_lr, color_lr, width_lr) -> io.NodeOutput:
        return io.NodeOutput(svg_generator(svg, point_lr, color_lr, width_lr))


class _RasterGenerator(DreamNode):
    """An image or latent generator node: its raster and one learning rate ``lr``."""

    @staticmethod
    def raster_schema(node_id: str, kind: str, socket, description: str, input_tip: str, lr_tip: str, aliases):
        return schema(
            node_id=node_id,
            search_aliases=[f"{kind} generator", *aliases, f"distill {kind}"],
            display_name=f"Dream {kind.capitalize()} Generator",
            category=SUBCATEGORY,
            description=description,
            inputs=[socket.Input(kind, tooltip=input_tip), lr_input("lr", lr_tip)],
            outputs=[GeneratorType.Output(display_name="generator", tooltip=f"The {kind} generator: {OUTPUT_TIP}")],
        )

    @classmethod
    def check_inputs(cls, lr=None):
        return first_error(_zero_lr_error(lr))


class DreamImageGenerator(_RasterGenerator):
    @classmethod
    def define_schema(cls):
        return cls.raster_schema(
            node_id="DreamImageGenerator", kind="image", socket=io.Image, aliases=["pixel generator"],
            description="A raster as the generator of score distillation: its pixel values are optimized directly "
                        "(Adam, kept in 0..1); the model sees it through the VAE encoder.",
            input_tip="The raster to optimize (its size must be a multiple of the VAE factor, 8 for most models).",
            lr_tip="Adam step of the pixel values (0..1).")

    @classmethod
    def execute(cls, image, lr) -> io.NodeOutput:
        return io.NodeOutput(raster_generator("image", image, lr))


class DreamLatentGenerator(_RasterGenerator):
    @classmethod
    def define_schema(cls):
        return cls.raster_schema(
            node_id="DreamLatentGenerator", kind="latent", socket=io.Latent, aliases=["identity generator"],
            description="A latent as the generator of score distillation (the identity generator): its values are "
                        "optimized directly in the model's latent space; it always fits in latent space and takes "
                        "no data term.",
            input_tip="The latent to optimize (VAE Encode, or an empty latent of the model's family).",
            lr_tip="Adam step of the latent's values.")

    @classmethod
    def execute(cls, latent, lr) -> io.NodeOutput:
        return io.NodeOutput(raster_generator("latent", latent, lr))


# ----------------------------------------------------------------------------- the data term
class DreamDistillDataTerm(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamDistillDataTerm",
            search_aliases=["svg restoration", "data term", "measurement"],
            display_name="Dream Distill Data Term",
            category=SUBCATEGORY,
            description="Restoration with score distillation: a data term weight * ||A g - y||^2 on the generator's "
                        "pixels, added to every fit. A measurement of the canvas size is a masked raster (A keeps "
                        "the mask's black pixels; no mask = every pixel known), the canvas divided by 2, 4 or 8 a "
                        "low-resolution one (A = average pooling); a Dream Degrade 'degradation' gives its own A.",
            inputs=[
                io.Image.Input("measurement",
                               tooltip="The damaged raster y, at the canvas size (masked; see 'mask') or the canvas "
                                       "divided by 2, 4 or 8 (low resolution)."),
                io.Float.Input("data_weight", default=1.0, min=0.0, max=1000.0, step=0.1,
                               tooltip="Weight of the data term relative to the distillation term."),
                io.Mask.Input("mask", optional=True,
                              tooltip="The measurement's missing pixels (white = missing), at the measurement's "
                                      "size."),
                Degradation.Input("degradation", optional=True,
                                  tooltip="A Dream Degrade operator (blur, super-resolution, colorization, ...) "
                                          "instead of the mask / size rule."),
            ],
            outputs=[DataTermType.Output(display_name="data_term", tooltip=f"The restoration term: {OUTPUT_TIP}")],
        )

    @classmethod
    def execute(cls, measurement, data_weight, mask=None, degradation=None) -> io.NodeOutput:
        check_image(measurement, "measurement")
        if mask is not None:
            mask_input(mask, "mask")
        if degradation is not None:
            degradation_of(degradation)
        return io.NodeOutput(DataTermSpec(measurement, mask, degradation, float(data_weight)))


# ----------------------------------------------------------------------------- method nodes
class DreamDistill(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamDistill",
            search_aliases=["dreamsampler distillation", "text to svg", "svg restoration", "algorithm 2"],
            display_name="DreamSampler Distill",
            category=SUBCATEGORY,
            description="DreamSampler distillation (Algorithm 2): a decreasing noise schedule where each step fits "
                        "the generator (an SVG, an image or a latent) to the (regularized) Tweedie estimate and "
                        "renoises the projection, inside ComfyUI's sampling (LoRAs, patches and ControlNets apply). "
                        "A data term adds restoration. Gradients never pass through the diffusion model.",
            inputs=[
                *critic_inputs(),
                GeneratorType.Input("generator", tooltip=GENERATOR_TIP),
                seed_input("Seed of the start noise and of each renoise."),
                iterations_input("Model calls: the reverse steps of the noise schedule."),
                inner_steps_input("Optimizer steps per model call: fits the generator to each step's target "
                                  "(10-20)."),
                cfg_input("Classifier-free guidance of positive vs negative (5-10)."),
                *schedule_inputs(),
                fit_space_input("Where the generator is fitted to each step's target: 'pixel' (||g - D(target)||^2, "
                                "no VAE backprop: faster, less memory) or 'latent' (||E(g) - target||^2, backprop "
                                "through a VAE-encoder copy). 'auto': pixel. A latent generator always fits in "
                                "latent space."),
                Regularizers.Input("regularizers", optional=True,
                                   tooltip="Proximal terms applied to each step's target (Dream CFG Edit, Mask "
                                           "Inpaint, Data Consistency)."),
                DataTermType.Input("data_term", optional=True, tooltip=DATA_TERM_TIP),
            ],
            outputs=distill_outputs(),
        )

    @classmethod
    def check_inputs(cls, iterations=None, denoise=None):
        return first_error(
            "denoise must be greater than 0 (0 would do nothing)"
            if isinstance(denoise, (int, float)) and denoise <= 0 else None,
            check_schedule(iterations, denoise, "iterations", "denoise"),
        )

    @classmethod
    def execute(cls, model, positive, negative, vae, generator, seed, iterations, inner_steps, cfg, scheduler, denoise,
                eta, fit_space, regularizers=None, data_term=None) -> io.NodeOutput:
        return io.NodeOutput(*run_dream_distill(model, positive, negative, vae, generator, seed, iterations,
                                                inner_steps, cfg, scheduler, denoise, eta, fit_space, regularizers,
                                                data_term))


SDS_CFG_TIP = "SDS needs much more guidance than sampling (VectorFusion: 100)."
SDS_FIT_TIP = ("Where the generator is fitted: 'latent' (||E(g) - target||^2 through a VAE-encoder copy; with one "
               "inner step exactly the {0} gradient) or 'pixel' (||g - D(target)||^2, no VAE backprop: faster, less "
               "memory). 'auto': latent.")


class _RandomLevelNode(DreamNode):
    """SDS / DDS: iterations at random noise levels in [min_t, max_t]."""

    @classmethod
    def check_inputs(cls, max_t=None, min_t=None):
        # a linked input is not passed (None): a linked min_t is checked in execute
        return True if max_t is None else first_error(_levels_error(0.0 if min_t is None else min_t, max_t))

    @classmethod
    def random_level_inputs(cls, name: str, positive_tip: str, cfg_tip: str, source=()):
        return [
            *critic_inputs(positive_tip),
            *source,
            GeneratorType.Input("generator", tooltip=GENERATOR_TIP),
            seed_input("Seed of the noise level and the noise drawn at each iteration."),
            iterations_input("Model calls, each at one random noise level (VectorFusion runs 1000)."),
            inner_steps_input(f"Optimizer steps per model call (1 for classic {name})."),
            cfg_input(cfg_tip),
            *level_inputs(),
            fit_space_input(SDS_FIT_TIP.format(name)),
            weighting_input(),
            DataTermType.Input("data_term", optional=True, tooltip=DATA_TERM_TIP),
        ]


class DreamSDS(_RandomLevelNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamSDS",
            search_aliases=["sds", "score distillation sampling", "vectorfusion", "dreamfusion"],
            display_name="Dream SDS (Score Distillation Sampling)",
            category=SUBCATEGORY,
            description="Score Distillation Sampling (DreamFusion / VectorFusion): each iteration noises the "
                        "generator's latent to a random level and moves the generator along the model's denoising "
                        "direction toward the prompt, inside ComfyUI's sampling. A data term adds restoration. "
                        "Gradients never pass through the diffusion model.",
            inputs=cls.random_level_inputs("SDS", "What the result should show.",
                                           f"Classifier-free guidance of positive vs negative; {SDS_CFG_TIP}"),
            outputs=distill_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, negative, vae, generator, seed, iterations, inner_steps, cfg, max_t, min_t,
                fit_space, weighting, data_term=None) -> io.NodeOutput:
        return io.NodeOutput(*run_score_distill(model, positive, negative, vae, generator, seed, iterations,
                                                inner_steps, cfg, max_t, min_t, fit_space, weighting, data_term))


class DreamDDS(_RandomLevelNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamDDS",
            search_aliases=["dds", "delta denoising score", "svg edit"],
            display_name="Dream DDS (Delta Denoising Score)",
            category=SUBCATEGORY,
            description="Delta Denoising Score (Hertz et al.): SDS toward the prompt minus SDS of the source prompt "
                        "at the generator's initial latent (same level and noise), so only what the prompts change "
                        "is edited. A data term adds restoration. Gradients never pass through the diffusion model.",
            inputs=cls.random_level_inputs(
                "DDS", "What the result should show (the edit goes from 'source' to this).",
                f"Classifier-free guidance of positive and of source vs negative; {SDS_CFG_TIP}",
                source=[io.Conditioning.Input("source", tooltip="The prompt describing the generator's initial "
                                                                "output (the edit goes from source to positive).")]),
            outputs=distill_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, negative, vae, source, generator, seed, iterations, inner_steps, cfg, max_t,
                min_t, fit_space, weighting, data_term=None) -> io.NodeOutput:
        return io.NodeOutput(*run_score_distill(model, positive, negative, vae, generator, seed, iterations,
                                                inner_steps, cfg, max_t, min_t, fit_space, weighting, data_term,
                                                source=source))


NODES = [DreamSVGGenerator, DreamImageGenerator, DreamLatentGenerator, DreamDistillDataTerm, DreamDistill, DreamSDS,
         DreamDDS]
