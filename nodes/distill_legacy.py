"""Dream Score Distill: the old all-in-one score-distillation node (SDS, DDS and DreamSampler
distillation of an SVG, an image or a latent, with restoration inputs), kept so that saved workflows
load and run as before.  Deprecated (hidden from node search): new graphs use a generator node, an
optional Dream Distill Data Term and one node per method (nodes/distill.py).  Its inputs and widget
order never change; its execute turns them into those nodes' values and calls the same functions."""
from __future__ import annotations

from comfy_api.latest import io

from .host.model import DEFAULT_SCHEDULER, SCHEDULER_NAMES
from .common import CATEGORY, InputError, Regularizers, check_schedule, first_error
from .common import DreamNode, schema, seed_input
from .distill import (DataTermSpec, GeneratorSpec, cfg_input, critic_inputs, distill_outputs,
                      fit_space_input, inner_steps_input, iterations_input, lr_input, raster_generator,
                      run_dream_distill, run_score_distill, svg_generator)
from .restoration import Degradation
from .svg import SVGParams
from ..dreamsampler_core.distill import METHODS, WEIGHTINGS


def legacy_generator(svg, image, latent, point_lr, color_lr, width_lr) -> GeneratorSpec:
    """The one connected generator input of the old node as a GeneratorSpec (color_lr is the image's
    or latent's learning rate)."""
    given = [n for n, v in (("svg", svg), ("image", image), ("latent", latent)) if v is not None]
    if len(given) != 1:
        raise InputError("connect exactly one generator input: 'svg' (an SVG scene), 'image' or 'latent'"
                         + (f" (got {', '.join(given)})" if given else ""))
    if given[0] == "svg":
        return svg_generator(svg, point_lr, color_lr, width_lr)
    return raster_generator(given[0], image if given[0] == "image" else latent, color_lr, lr_name="color_lr")


class DreamScoreDistill(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamScoreDistill",
            search_aliases=["sds", "score distillation", "dds", "text to svg", "vectorfusion"],
            display_name="Dream Score Distill (deprecated)",
            category=f"{CATEGORY}/distill",
            is_deprecated=True,
            description="Deprecated: kept so that saved workflows load and run unchanged; new graphs use a "
                        "generator (Dream SVG / Image / Latent Generator), an optional Dream Distill Data Term and "
                        "one node per method (DreamSampler Distill, Dream SDS, Dream DDS), which give the same "
                        "results. Optimizes a differentiable generator (an SVG through the pack's renderer, an image "
                        "through the VAE encoder, or a latent) with the diffusion model as the critic. "
                        "'dreamsampler': Algorithm 2, a decreasing noise schedule where each step fits the generator "
                        "to the (regularized) Tweedie estimate and renoises the projection; 'sds': score "
                        "distillation sampling (random t); 'dds': delta denoising score toward the prompt from a "
                        "source prompt. A measurement (masked or low-resolution raster) adds a data term for "
                        "restoration.",
            inputs=[
                *critic_inputs(),
                io.Combo.Input("method", options=list(METHODS), default="dreamsampler",
                               tooltip="'dreamsampler': DreamSampler distillation (Algorithm 2: reverse sampling "
                                       "schedule, fit + renoise each step); 'sds': Score Distillation Sampling "
                                       "(VectorFusion); 'dds': Delta Denoising Score (needs 'source')."),
                seed_input("Seed of the noise (start latent, renoise, SDS levels)."),
                iterations_input("Model calls. 'dreamsampler': the reverse steps of the noise schedule; 'sds' / "
                                 "'dds': iterations at one random noise level each (VectorFusion runs 1000)."),
                inner_steps_input("Optimizer steps per model call: fits the generator to each step's target "
                                  "(10-20 for 'dreamsampler'; 1 for classic SDS / DDS)."),
                cfg_input("Classifier-free guidance of positive vs negative. 5-10 for 'dreamsampler'; SDS needs "
                          "much more (VectorFusion: 100)."),
                io.Combo.Input("scheduler", options=SCHEDULER_NAMES, default=DEFAULT_SCHEDULER,
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
                fit_space_input("Where the generator is fitted: 'latent' (||E(g) - target||^2, backprop through a "
                                "VAE-encoder copy; SDS's own form) or 'pixel' (||g - D(target)||^2, no VAE backprop: "
                                "faster, less memory). 'auto': pixel for 'dreamsampler', latent for SDS / DDS. A "
                                "latent generator always fits in latent space."),
                io.Combo.Input("weighting", options=list(WEIGHTINGS), default="tweedie",
                               tooltip="'sds' / 'dds' noise-level weight: 'tweedie' (the Tweedie regression, spec "
                                       "identity) or 'sds' (DreamFusion's 1 - alpha_bar)."),
                io.Float.Input("point_lr", default=1.0, min=0.0, max=100.0, step=0.05,
                               tooltip="SVG: Adam step of the control points in pixels (VectorFusion: 1.0 on a 600-px "
                                       "canvas). 0 freezes the shapes (colours only)."),
                lr_input("color_lr", "Adam step of the SVG colours / opacities, of the image's pixel values, or of the "
                                     "latent's values (VectorFusion colours: 0.01)."),
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
            outputs=distill_outputs(),
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
        if method == "dds" and source is None:
            raise InputError("'dds' needs the 'source' prompt (what the initial drawing shows); connect a CLIP Text "
                             "Encode to 'source', or use 'sds'")
        if regularizers and method != "dreamsampler":
            raise InputError("regularizers act on the 'dreamsampler' method's steps; disconnect them for SDS / DDS")
        generator = legacy_generator(svg, image, latent, point_lr, color_lr, width_lr)
        data_term = (None if measurement is None and mask is None and degradation is None
                     else DataTermSpec(measurement, mask, degradation, float(data_weight)))
        if method == "dreamsampler":
            return io.NodeOutput(*run_dream_distill(model, positive, negative, vae, generator, seed, iterations,
                                                    inner_steps, cfg, scheduler, denoise, eta, fit_space,
                                                    regularizers, data_term))
        return io.NodeOutput(*run_score_distill(model, positive, negative, vae, generator, seed, iterations,
                                                inner_steps, cfg, denoise, min_t, fit_space, weighting, data_term,
                                                source=source if method == "dds" else None, max_name="denoise"))


NODES = [DreamScoreDistill]
