"""Score distillation node: SDS, DDS and DreamSampler distillation (Algorithm 2) of an SVG, an image
or a latent, optionally restoring a masked / low-resolution raster (spec dreamsampler §1.3, §2.4,
svg_rendering §3.4; the math is in dreamsampler_core.distill)."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from . import host as C
from .common import (CATEGORY, InputError, Regularizers, check_conditioning, check_model, check_schedule,
                     first_error, mask_input, model_latent, require_schedule, user_errors)
from .common import DreamNode, schema, seed_input
from .restoration import Degradation, degradation_of
from .svg import SVGParams, check_image, check_render_size, check_svg, render_image, svg_output, svg_texts
from ..dreamsampler_core.distill import (METHODS, WEIGHTINGS, FitConfig, ImageGenerator, LatentGenerator, PixelDataTerm,
                                         RandomLevels, SVGGenerator, dds, dream_distill, sds)
from ..dreamsampler_core.operators import AvgPoolSR, Inpainting, OperatorError

FIT_SPACES = ("auto", "latent", "pixel")
SR_FACTORS = (2, 4, 8)
MAX_STEPS = 10000
MAX_INNER = 1000
PREVIEW_SIZE = 512


# ----------------------------------------------------------------------------- helpers
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
        op = Inpainting(keep)
    else:
        f = h // y.shape[-2] if y.shape[-2] else 0
        if f not in SR_FACTORS or y.shape[-2] * f != h or y.shape[-1] * f != w:
            raise InputError(f"the measurement is {y.shape[-1]}x{y.shape[-2]} pixels: it must be the canvas size "
                             f"({w}x{h}, a masked raster) or the canvas divided by 2, 4 or 8 (a low-resolution "
                             "raster); resize it or connect a Dream Degrade 'degradation'")
        if mask is not None:
            raise InputError("a mask needs a measurement of the canvas size; a low-resolution measurement has no mask")
        op = AvgPoolSR(f)
    if getattr(op, "name", "") == "colorization":
        y = y.mean(1, keepdim=True)
    with user_errors(OperatorError):
        op.check(y, image_shape)
        return PixelDataTerm(op, y, float(weight))


def _preview(image_bhwc: torch.Tensor):
    from PIL import Image
    arr = (image_bhwc[0].detach().float().clamp(0.0, 1.0) * 255.0).round().byte().cpu().numpy()
    return ("JPEG", Image.fromarray(arr), PREVIEW_SIZE)


# ----------------------------------------------------------------------------- the node
class DreamScoreDistill(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamScoreDistill",
            search_aliases=["sds", "score distillation", "dds", "text to svg", "vectorfusion"],
            display_name="Dream Score Distill / DreamSampler Distill",
            category=f"{CATEGORY}/distill",
            description="Optimizes a differentiable generator (an SVG through the pack's renderer, an image through "
                        "the VAE encoder, or a latent) with the diffusion model as the critic, inside ComfyUI's "
                        "sampling (LoRAs, patches and ControlNets apply). 'dreamsampler': Algorithm 2, a decreasing "
                        "noise schedule where each step fits the generator to the (regularized) Tweedie estimate and "
                        "renoises the projection; 'sds': score distillation sampling (random t); 'dds': delta denoising "
                        "score toward the prompt from a source prompt. A measurement (masked or low-resolution raster) "
                        "adds a data term for restoration. Gradients never pass through the diffusion model.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (not modified; used without gradients)."),
                io.Conditioning.Input("positive", tooltip="What the result should show (e.g. 'a red fox. minimal flat "
                                                          "2d vector icon. lineal color')."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (used when cfg != 1)."),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE: encodes the SVG / image into the model's latent "
                                            "space (a differentiable copy of its encoder for the latent fit)."),
                io.Combo.Input("method", options=list(METHODS), default="dreamsampler",
                               tooltip="'dreamsampler': DreamSampler distillation (Algorithm 2: reverse sampling "
                                       "schedule, fit + renoise each step); 'sds': Score Distillation Sampling "
                                       "(VectorFusion); 'dds': Delta Denoising Score (needs 'source')."),
                seed_input("Seed of the noise (start latent, renoise, SDS levels)."),
                io.Int.Input("iterations", default=50, min=1, max=MAX_STEPS,
                             tooltip="Model calls. 'dreamsampler': the reverse steps of the noise schedule; 'sds' / "
                                     "'dds': iterations at one random noise level each (VectorFusion runs 1000)."),
                io.Int.Input("inner_steps", default=10, min=1, max=MAX_INNER,
                             tooltip="Optimizer steps per model call: fits the generator to each step's target "
                                     "(10-20 for 'dreamsampler'; 1 for classic SDS / DDS)."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=200.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance of positive vs negative. 5-10 for 'dreamsampler'; "
                                       "SDS needs much more (VectorFusion: 100)."),
                io.Combo.Input("scheduler", options=C.SCHEDULER_NAMES, default=C.DEFAULT_SCHEDULER,
                               tooltip="Noise schedule of 'dreamsampler' (ignored by SDS / DDS)."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="'dreamsampler': where to start (1 = pure noise, for text-to-SVG; 0.4-0.7 keeps "
                                       "the initial drawing's layout, for vectorization / restoration). 'sds' / "
                                       "'dds': the largest noise level sampled (t_max)."),
                io.Float.Input("min_t", default=0.02, min=0.0, max=1.0, step=0.01,
                               tooltip="'sds' / 'dds': the smallest noise level sampled (t_min, fraction of the "
                                       "schedule)."),
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="'dreamsampler': fraction of fresh noise in each renoise (0 = deterministic DDIM "
                                       "renoise)."),
                io.Combo.Input("fit_space", options=list(FIT_SPACES), default="auto",
                               tooltip="Where the generator is fitted: 'latent' (||E(g) - target||^2, backprop "
                                       "through a VAE-encoder copy; SDS's own form) or 'pixel' (||g - D(target)||^2, "
                                       "no VAE backprop: faster, less memory). 'auto': pixel for 'dreamsampler', "
                                       "latent for SDS / DDS. A latent generator always fits in latent space."),
                io.Combo.Input("weighting", options=list(WEIGHTINGS), default="tweedie",
                               tooltip="'sds' / 'dds' noise-level weight: 'tweedie' (the Tweedie regression, spec "
                                       "identity) or 'sds' (DreamFusion's 1 - alpha_bar)."),
                io.Float.Input("point_lr", default=1.0, min=0.0, max=100.0, step=0.05,
                               tooltip="SVG: Adam step of the control points in pixels (VectorFusion: 1.0 on a 600-px "
                                       "canvas). 0 freezes the shapes (colours only)."),
                io.Float.Input("color_lr", default=0.01, min=0.0, max=1.0, step=0.001, round=False,
                               tooltip="Adam step of the SVG colours / opacities, of the image's pixel values, or of "
                                       "the latent's values (VectorFusion colours: 0.01)."),
                io.Float.Input("width_lr", default=0.0, min=0.0, max=10.0, step=0.01,
                               tooltip="SVG: Adam step of the stroke widths in pixels (0 = keep the widths)."),
                io.Float.Input("data_weight", default=1.0, min=0.0, max=1000.0, step=0.1,
                               tooltip="Restoration: weight of the data term ||A g - y||^2 on the measurement, "
                                       "relative to the distillation term (only with a 'measurement')."),
                SVGParams.Input("svg", optional=True,
                                tooltip="Generator: an SVG scene (Dream SVG Init / Load SVG). Connect exactly one of "
                                        "svg, image, latent."),
                io.Image.Input("image", optional=True,
                               tooltip="Generator: a raster optimized pixel by pixel (its size must be a multiple of "
                                       "the VAE factor)."),
                io.Latent.Input("latent", optional=True, tooltip="Generator: a latent optimized directly."),
                io.Conditioning.Input("source", optional=True,
                                      tooltip="'dds' only: the prompt describing the initial generator output (the edit "
                                              "goes from source to positive)."),
                Regularizers.Input("regularizers", optional=True,
                                   tooltip="'dreamsampler' only: proximal terms applied to each step's target (Dream CFG "
                                           "Edit, Mask Inpaint, Data Consistency)."),
                io.Image.Input("measurement", optional=True,
                               tooltip="Restoration: the damaged raster y, at the canvas size (masked; see 'mask') or "
                                       "the canvas divided by 2, 4 or 8 (low resolution)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Restoration: the measurement's missing pixels (white = missing), at the "
                                      "measurement's size."),
                Degradation.Input("degradation", optional=True,
                                  tooltip="Restoration: a Dream Degrade operator (blur, super-resolution, "
                                          "colorization, ...) instead of the mask / size rule."),
            ],
            outputs=[
                SVGParams.Output(display_name="svg", tooltip="The optimized SVG scene(s) (empty for an image or latent "
                                                             "generator)."),
                io.Image.Output(display_name="image", tooltip="The final result rendered / decoded."),
                io.Latent.Output(display_name="latent", tooltip="E(g(theta)) of the final result (VAE latent)."),
                io.SVG.Output(display_name="svg_file", tooltip="The optimized scene(s) as SVG documents (core SVG "
                                                               "type; connect Save SVG). Empty without an SVG."),
            ],
        )

    @classmethod
    def check_inputs(cls, method=None, iterations=None, denoise=None, min_t=None):
        # a linked input is not passed (None): only the widget values are checked here (their declared ranges
        # and options before this, by DreamNode.validate_inputs)
        return first_error(
            "denoise must be greater than 0 (0 would do nothing)"
            if isinstance(denoise, (int, float)) and denoise <= 0 else None,
            f"min_t ({min_t}) must not exceed denoise ({denoise}), the largest noise level SDS / DDS sample"
            if method in ("sds", "dds") and isinstance(min_t, (int, float)) and isinstance(denoise, (int, float))
            and min_t > denoise else None,
            check_schedule(iterations, denoise, "iterations", "denoise") if method in (None, "dreamsampler") else None,
        )

    @classmethod
    def execute(cls, model, positive, negative, vae, method, seed, iterations, inner_steps, cfg, scheduler, denoise, min_t,
                eta, fit_space, weighting, point_lr, color_lr, width_lr, data_weight, svg=None, image=None,
                latent=None, source=None, regularizers=None, measurement=None, mask=None,
                degradation=None) -> io.NodeOutput:
        res = distill(model, positive, negative, vae, method, seed, iterations, inner_steps, cfg, scheduler, denoise, min_t,
                      eta, fit_space, weighting, point_lr, color_lr, width_lr, data_weight, svg, image, latent, source,
                      regularizers, measurement, mask, degradation)
        return io.NodeOutput(*res)


def distill(model, positive, negative, vae, method, seed, iterations, inner_steps, cfg, scheduler, denoise, min_t, eta,
            fit_space, weighting, point_lr, color_lr, width_lr, data_weight, svg=None, image=None, latent=None,
            source=None, regularizers=None, measurement=None, mask=None, degradation=None):
    """The Score Distill node's body: (svg, image, latent, svg_file)."""
    check_model(model)
    check_conditioning(positive, "positive")
    check_conditioning(negative, "negative")
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    if fit_space not in FIT_SPACES or weighting not in WEIGHTINGS:
        raise InputError(f"fit_space must be one of {FIT_SPACES} and weighting one of {WEIGHTINGS}")
    given = [n for n, v in (("svg", svg), ("image", image), ("latent", latent)) if v is not None]
    if len(given) != 1:
        raise InputError("connect exactly one generator input: 'svg' (an SVG scene), 'image' or 'latent'"
                         + (f" (got {', '.join(given)})" if given else ""))
    kind = given[0]
    with user_errors():
        vae_codec = C.VAECodec(vae, "score distillation")
    if method == "dds":
        if source is None:
            raise InputError("'dds' needs the 'source' prompt (what the initial drawing shows); connect a CLIP Text "
                             "Encode to 'source', or use 'sds'")
        check_conditioning(source, "source")
    if regularizers and method != "dreamsampler":
        raise InputError("regularizers act on the 'dreamsampler' method's steps; disconnect them for SDS / DDS")
    if regularizers is not None and not all(hasattr(r, "core") and hasattr(r, "conds") for r in regularizers):
        raise InputError("'regularizers' must come from Dream regularizer nodes (Dream CFG Edit, Mask Inpaint, ...)")
    lrs = (point_lr, color_lr, width_lr) if kind == "svg" else (color_lr,)
    if max(lrs) <= 0:
        raise InputError("every learning rate is 0: nothing would change (raise point_lr or color_lr)")

    # the generator's initial output and its VAE latent (the sampler's input, DDS's source)
    scenes = pixels = None
    if kind == "svg":
        scenes = check_svg(svg)
        check_render_size(scenes, "distill a smaller canvas or fewer paths", grad=True)
        canvas = (scenes[0].height, scenes[0].width)
        start = render_image(scenes)
    elif kind == "image":
        start = check_image(image, "image")
        canvas = tuple(start.shape[1:3])
    if kind in ("svg", "image"):
        f = vae_codec.downscale()
        if canvas[0] % f or canvas[1] % f:
            raise InputError(f"the {kind} is {canvas[1]}x{canvas[0]} pixels, not a multiple of the VAE's factor {f}; "
                             f"use a canvas / image size divisible by {f}")
        pixels = start
        init_latent = C.vae_encode(vae, pixels)
        batch = pixels.shape[0]
    else:
        init_latent = model_latent(model, latent, "latent")
        batch = init_latent.shape[0]
    data_term = None
    if measurement is not None or mask is not None or degradation is not None:
        if kind == "latent":
            raise InputError("restoration (measurement / mask / degradation) needs an 'svg' or 'image' generator")
        data_term = build_data_term(measurement, mask, degradation, canvas, batch, data_weight)

    space = fit_space if fit_space != "auto" else ("pixel" if method == "dreamsampler" else "latent")
    fit = FitConfig(space=space, inner_steps=int(inner_steps), data_term=data_term)
    if method == "dreamsampler":
        require_schedule(iterations, denoise, "iterations", "denoise")
        sigmas = C.calculate_sigmas(model, scheduler, iterations, denoise)
        if len(sigmas) < 2:
            raise InputError(f"iterations={iterations} with denoise={denoise} leaves no step; raise iterations or "
                             "denoise.")
        noise = C.prepare_noise({"samples": init_latent}, seed)
    else:
        sigmas = C.calculate_sigmas(model, scheduler, 1)       # unused: SDS / DDS draw their own levels
        noise = torch.zeros_like(init_latent)
        with user_errors():
            levels = RandomLevels(iterations=int(iterations), t_range=(min_t, denoise), weighting=weighting)

    guider = C.new_guider(model, positive, negative, cfg, regularizers)
    if source is not None:
        guider.add_branch("source", source, cfg)
    pbar = C.progress_bar(iterations)

    def make_generator(device, source_latent):
        if kind == "svg":
            return SVGGenerator(scenes, point_lr=point_lr, color_lr=color_lr, width_lr=width_lr, device=device)
        if kind == "image":
            return ImageGenerator(pixels.to(device).movedim(-1, 1) * 2.0 - 1.0, lr=color_lr)
        return LatentGenerator(source_latent.clone().float(), lr=color_lr)

    def run(job):
        codec = vae_codec.in_model_space(job.host.latent_in, job.host.latent_out)
        gen = make_generator(job.latent.device, job.latent)

        def callback(i, n, z):
            preview = None
            if gen.space == "pixel" and getattr(pbar, "hook", None) is not None:     # a UI is listening
                with torch.no_grad():
                    preview = _preview((gen.render()[:1] + 1.0).movedim(1, -1) / 2.0)
            pbar.update_absolute(i + 1, n, preview)

        common = dict(codec=codec, rng=torch.Generator(device="cpu").manual_seed(int(seed)), callback=callback,
                      interrupt=C.throw_if_interrupted)
        try:
            if method == "dreamsampler":
                spans, times = job.time_grid(job.sigmas)
                result = dream_distill(job.model, gen, job.sigmas, job.param, fit, extras=job.extras,
                                       regularizers=job.regularizers, eta=eta, x=job.start(job.sigmas), spans=spans,
                                       times=times, host=job.host, **common)
            elif method == "sds":
                result = sds(job.model, gen, job.host.sigma_at, job.param, levels, fit, **common)
            else:
                result = dds(job.model, job.branches["source"], gen, job.host.sigma_at, job.param, levels, fit,
                             source_latent=job.latent, **common)
        finally:
            codec.release()
        return result.latent.to(job.latent.dtype), gen

    sampler = C.CoreSampler(C.with_autograd(run))
    samples = C.run(guider, sampler, sigmas, init_latent, noise, seed, progress=False)
    samples = samples.to(C.intermediate_device())
    out_latent = C.latent_output(latent, samples, drop=("noise_mask",))
    gen = sampler.report
    if kind == "svg":
        out_svg = svg_output(gen.result())
        return out_svg, render_image(out_svg), out_latent, C.core_svg(svg_texts(out_svg))
    if kind == "image":
        out_image = gen.image.detach().movedim(1, -1).clamp(0.0, 1.0).float().cpu()
    else:
        out_image = C.vae_decode(vae, samples).float().cpu()
    return (), out_image, out_latent, C.core_svg([])


NODES = [DreamScoreDistill]
