"""Inpainting and image-restoration nodes: mask/text regularizer, data consistency, degradation
(spec dreamsampler §2.3, §4 "Inpainting", §6; the math is in dreamsampler_core.restoration)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from comfy_api.latest import io

from .host.vae import VAECodec
from .common import (CATEGORY, InputError, RegularizerSpec, Regularizers, check_conditioning, check_image,
                     check_latent, extend, first_error, mask_input, user_errors)
from .common import DreamNode, schema, seed_input
from ..dreamsampler_core.restoration import PRESETS, DataConsistency, MaskInpaint, preset
from ..dreamsampler_core.masks import OVERLAP_RULES, downscale_factor, feather
from ..dreamsampler_core.operators import (CG_MAX_ITERS, OPERATOR_NAMES, SOLVERS, LinearOperator, OperatorError,
                                           degrade, fit_measurement, make_operator, operator_errors)

SUBCATEGORY = f"{CATEGORY}/inverse"
#: a degradation: the operator plus the image shape it was made for (from Dream Degrade)
Degradation = io.Custom("DREAM_DEGRADATION")
MAX_REGIONS = 4

PRESET_HELP = ("'paper': the official dream_inpaint schedule (every 3rd step while under 85% of the steps, "
               "weight alpha_bar_t, fresh noise eta_t = alpha_bar_t on those steps; 57 of 200 steps); "
               "'restore': every step, weight alpha_bar_t (SR, deblurring); 'project': every step at full "
               "weight (strongest fidelity).")
MASK_PRESET_HELP = ("In every preset the mask acts on every step with a step-count-invariant weight (measured on "
                    "an exact oracle: hole mean within 0.1 of the target's at 20, 50 and 200 steps). 'paper' "
                    "(default): adds the official dream_inpaint's fresh noise (eta_t = alpha_bar_t on every 3rd of "
                    "200 steps down to t = 156), spread so any step count draws the same amount; on a learned model "
                    "this is what lets the hole change (bench/QUALITY.md: target success 0.34-0.47 at strength 1, "
                    "0.57 at 2, vs core noise-mask inpainting's 0.38-0.41); on the exact oracle it lowers the hole's "
                    "variation (std 0.68x the target's at 20 steps, 0.93x at 200). Unlike the official code the text "
                    "does not stop at 85% of the steps (on the oracle the hole then drifted back to its "
                    "surroundings). 'restore' and 'project': deterministic (the same here); exact on the oracle, but "
                    "on the learned model an inverted hole then keeps the source (success 0.01) or, when it was "
                    "grey, becomes a blur.")


@dataclass(frozen=True)
class DegradationInfo:
    """What Dream Degrade made: the operator and the [B, 3, H, W] shape of the clean image."""
    op: LinearOperator
    image_shape: tuple
    sigma_y: float


def degradation_of(degradation) -> DegradationInfo:
    """A connected 'degradation' input (DREAM_DEGRADATION): what Dream Degrade made, or an InputError."""
    if not isinstance(degradation, DegradationInfo):
        raise InputError("'degradation' must come from a Dream Degrade node")
    return degradation


# ----------------------------------------------------------------------------- helpers
def image_to_pixels(image, name: str) -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, C] in [0, 1] -> [B, 3, H, W] in [-1, 1], with checks."""
    return check_image(image, name).movedim(-1, 1) * 2.0 - 1.0


def pixels_to_image(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] in [-1, 1] (C = 1 or 3) -> IMAGE [B, H, W, 3] in [0, 1] (not clamped: an exact
    measurement; previews clip)."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return ((x + 1.0) / 2.0).movedim(1, -1).contiguous().cpu()


def check_mask(mask, name: str) -> torch.Tensor:
    m = mask_input(mask, name)
    if float(m.max()) <= 0.0:
        raise InputError(f"'{name}' is all zero: nothing to repaint. Paint the region to repaint (white = repaint, "
                         "ComfyUI's convention) or disconnect it.")
    return m


def build_operator(name, scale, blur_sigma, kernel_size, motion_angle, mask=None, image_hw=None) -> LinearOperator:
    """The operator of the widgets (the core's ``make_operator``); mask (ComfyUI MASK, 1 = missing) for
    inpainting, of the image's size ``image_hw``."""
    m = check_mask(mask, "mask") if name == "inpainting" and mask is not None else None
    with user_errors(OperatorError):
        return make_operator(name, scale=int(scale), blur_sigma=float(blur_sigma), kernel_size=int(kernel_size),
                             motion_angle=float(motion_angle), mask=m, image_hw=image_hw)


def operator_inputs():
    return [
        io.Combo.Input("operator", options=list(OPERATOR_NAMES), default="sr_bicubic",
                       tooltip="Degradation y = A(x): 'inpainting' (missing pixels, needs the mask input), "
                               "'sr_avgpool' / 'sr_bicubic' (super-resolution, downsampling by 'scale'), "
                               "'deblur_gauss' / 'deblur_uniform' / 'deblur_motion' (blur), 'colorization' "
                               "(gray image)."),
        io.Int.Input("scale", default=4, min=2, max=8,
                     tooltip="Super-resolution factor: 2, 4 or 8 (image sides must be multiples of it). "
                             "Ignored by the other operators."),
        io.Float.Input("blur_sigma", default=3.0, min=0.1, max=50.0, step=0.1,
                       tooltip="Gaussian blur standard deviation in pixels (deblur_gauss only)."),
        io.Int.Input("kernel_size", default=0, min=0, max=255,
                     tooltip="Blur size in pixels: Gaussian taps (0 = 6*sigma+1), uniform box size (odd; 0 = 9), "
                             "motion blur length (0 = 15)."),
        io.Float.Input("motion_angle", default=0.0, min=-180.0, max=180.0, step=1.0,
                       tooltip="Direction of the motion blur in degrees (0 = horizontal). deblur_motion only."),
    ]


def validate_operator(operator=None, scale=None, kernel_size=None):
    """Checks of the operator widgets beyond each one's declared range and options (DreamNode.validate_inputs
    checks those first): the core's ``operator_errors``, the messages ``make_operator`` raises."""
    return operator_errors(operator, scale, kernel_size)


# ----------------------------------------------------------------------------- mask inpainting
class DreamMaskInpaint(DreamNode):
    @classmethod
    def define_schema(cls):
        optional = [
            io.Conditioning.Input("target", optional=True,
                                  tooltip="What to paint in the mask (e.g. 'glasses'). Without it the hole is "
                                          "repainted by DreamSampler's positive prompt alone."),
            io.Latent.Input("source", optional=True,
                            tooltip="Clean latent of the source image (VAE Encode). When connected, the unmasked "
                                    "region follows it ('keep') and ends equal to it. Without it only a "
                                    "data-consistency term (the official configuration) keeps the known pixels."),
        ]
        for k in range(2, MAX_REGIONS + 1):
            optional += [
                io.Mask.Input(f"mask_{k}", optional=True,
                              tooltip=f"Region {k} to repaint (white = repaint), same size as 'mask'."),
                io.Conditioning.Input(f"target_{k}", optional=True,
                                      tooltip=f"Prompt for region {k} (e.g. 'a smile' for a mouth mask)."),
            ]
        optional.append(Regularizers.Input("regularizers", optional=True,
                                           tooltip="Earlier regularizers to chain (e.g. Dream Data Consistency; "
                                                   "the official order is data consistency first, then this)."))
        return schema(
            node_id="DreamMaskInpaint",
            search_aliases=["inpaint", "inpainting", "text guided inpainting", "mask edit"],
            display_name="Dream Mask Inpaint",
            category=SUBCATEGORY,
            description="Text-guided inpainting regularizer: inside each mask every step follows that region's "
                        "target prompt (DreamSampler's 'text distillation' blend as an exact sampler step, so 20, "
                        "50 or 200 steps give the same result), the rest follows the 'source' latent and ends "
                        "equal to it. Up to 4 masks with a prompt each; where masks overlap their prompts are "
                        "blended by the overlap rule, never summed. Masks are area-pooled to the latent grid "
                        "(soft edges). Measured recipes (bench/INPAINTING*.md): on flow models (Flux, SD3.5, "
                        "Qwen-Image, Wan) start DreamSampler from the image's latent at denoise 1 with the hole's "
                        "prompt as its positive, eta 1 and resample 1 (no target needed here); on eps models "
                        "invert the image with the hole removed and use preset 'paper' at strength 2.",
            inputs=[
                io.Mask.Input("mask", tooltip="Region to repaint, ComfyUI convention: white (1) = repaint, black "
                                              "= keep; the image's size. Soft values repaint partially."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.05,
                               tooltip="Guidance of the target prompt inside the mask: 1 = the target prompt's own "
                                       "prediction (on an exact oracle the hole then has the target class's mean "
                                       "and spread); above 1 it pushes past it like CFG against DreamSampler's "
                                       "positive prompt (try 2-5 if the model follows the prompt weakly); 0 = none."),
                io.Combo.Input("preset", options=list(PRESETS), default="paper", tooltip=MASK_PRESET_HELP),
                io.Int.Input("feather", default=0, min=0, max=256,
                             tooltip="Soft mask edge in pixels (Gaussian, before pooling to the latent grid)."),
                io.Combo.Input("overlap", options=list(OVERLAP_RULES), default="average",
                               tooltip="Where masks overlap: 'average' blends their prompts (mask-weighted), "
                                       "'last_on_top' lets the later mask win."),
                io.Float.Input("keep", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="How much of the unmasked region follows the 'source' latent (needs "
                                       "'source'): 1 = it follows the source's own noisy trajectory and the last "
                                       "step pastes the source back exactly (oracle: RMS < 1e-9, any preset or "
                                       "step count); 0.5 pastes half of it; 0 = free."),
            ] + optional,
            outputs=[Regularizers.Output(display_name="regularizers")],
        )

    @classmethod
    def execute(cls, mask, strength, preset, feather, overlap, keep, target=None, source=None,
                mask_2=None, target_2=None, mask_3=None, target_3=None, mask_4=None, target_4=None,
                regularizers=None) -> io.NodeOutput:
        given = {2: (mask_2, target_2), 3: (mask_3, target_3), 4: (mask_4, target_4)}
        pairs = [("mask", mask, "target", target)] + [(f"mask_{k}", m, f"target_{k}", t) for k, (m, t) in given.items()]
        masks, targets, conds = [], [], {}
        for mname, m, tname, t in pairs:
            if m is None:
                if t is not None:
                    raise InputError(f"'{tname}' is connected but '{mname}' is not; connect the region's mask")
                continue
            mm = check_mask(m, mname)
            if masks and tuple(mm.shape[-2:]) != tuple(masks[0].shape[-2:]):
                raise InputError(f"'{mname}' is {mm.shape[-1]}x{mm.shape[-2]} pixels but 'mask' is "
                                 f"{masks[0].shape[-1]}x{masks[0].shape[-2]}; all masks must have the image's size")
            masks.append(feather_mask(mm, feather))
            if t is not None:
                check_conditioning(t, tname)
                conds[tname] = t
                targets.append(tname)
            else:
                targets.append(None)
        src = None
        if source is not None:
            src = check_latent(source, "source")
            with user_errors():
                downscale_factor(tuple(masks[0].shape[-2:]), tuple(src.shape[-2:]))
        core = MaskInpaint(masks=tuple(masks), targets=tuple(targets), strength=float(strength), overlap=overlap,
                           source=src, keep=float(keep), schedule=preset_or_error(preset))
        return io.NodeOutput(extend(regularizers, RegularizerSpec(core, conds, "mask_inpaint")))


def feather_mask(mask: torch.Tensor, radius) -> torch.Tensor:
    return feather(mask, float(radius)) if radius else mask


def preset_or_error(name):
    with user_errors():
        return preset(name)


# ----------------------------------------------------------------------------- data consistency
class DreamDataConsistency(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamDataConsistency",
            search_aliases=["super resolution", "upscale", "deblur", "inverse problem", "restoration", "dps"],
            display_name="Dream Data Consistency",
            category=SUBCATEGORY,
            description="Restoration regularizer for y = A(x) + noise in pixel space (inpainting, "
                        "super-resolution, deblurring, colorization): at its steps the estimate is decoded, "
                        "the closest image agreeing with the measurement is solved exactly (closed form, or "
                        "conjugate gradient to a tolerance for motion blur), re-encoded and mixed in with weight "
                        "strength * alpha_bar_t. No gradient through the diffusion model unless 'dps' > 0.",
            inputs=[
                io.Vae.Input("vae", tooltip="The checkpoint's VAE (decodes the estimate, encodes the solution). A "
                                            "video VAE (Wan, ...) works too: the operator then acts on every frame."),
                io.Image.Input("measurement", tooltip="The degraded image y: Dream Degrade's measurement, or a real "
                                                      "low-resolution / blurry / gray / damaged photo. For a video: "
                                                      "its degraded frames (an IMAGE batch, the frames the latent was "
                                                      "encoded from), or one frame for all."),
            ] + operator_inputs() + [
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.05,
                               tooltip="lambda: weight of the data term (multiplies alpha_bar_t); 0 turns it off "
                                       "exactly, 1 is the official weight."),
                io.Float.Input("sigma_y", default=0.01, min=0.0, max=1.0, step=0.001,
                               tooltip="Noise level of the measurement (std, in [-1, 1] pixel units; 0.01 is the "
                                       "official inpainting noise). The data are fit only down to this level, so "
                                       "noise is not amplified; 0 fits as tightly as 'mu' allows (official)."),
                io.Float.Input("mu", default=1e-4, min=1e-8, max=1e4, step=1e-5, round=False,
                               tooltip="Proximal weight of the pixel sub-problem ||y - Ax||^2 + mu ||x - x_hat||^2 "
                                       "(official 1e-4). Larger keeps more of the model's image."),
                io.Combo.Input("preset", options=list(PRESETS), default="restore", tooltip="When it acts: " + PRESET_HELP),
                io.Combo.Input("solver", options=list(SOLVERS), default="auto",
                               tooltip="'auto': exact closed form where the operator has one (all but motion blur), "
                                       "else conjugate gradient; 'cg': always conjugate gradient."),
                io.Int.Input("cg_iters", default=CG_MAX_ITERS, min=1, max=1000,
                             tooltip="Most conjugate-gradient iterations (motion blur, or solver 'cg'); CG stops "
                                     "earlier at a relative residual of 1e-5 (or at the sigma_y noise level). "
                                     "Measured at mu 1e-4 on a 15 px motion blur: ~220 iterations, 0.3% from the "
                                     "exact solution; the official 10 leave 66% of the correction undone."),
                io.Float.Input("dps", default=0.0, min=0.0, max=10.0, step=0.1,
                               tooltip="Opt-in DPS gradient step on the steps where the data term is inactive "
                                       "(1 = the official step). COSTLY: each such step adds a forward and a "
                                       "backward pass through the diffusion model and the VAE decoder (about 3x a "
                                       "plain step's time), plus a copy of the model's weights and the backward "
                                       "activations in memory (GBs for SD1.5 at 512px). 0 = off (no model gradients)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="For 'inpainting': the missing pixels, white (1) = missing; the measurement's "
                                      "size."),
                Degradation.Input("degradation", optional=True,
                                  tooltip="From Dream Degrade: uses its operator (overrides operator, scale, blur "
                                          "and mask here) and checks the measurement against it."),
                Regularizers.Input("regularizers", optional=True, tooltip="Earlier regularizers to chain."),
            ],
            outputs=[Regularizers.Output(display_name="regularizers")],
        )

    @classmethod
    def check_inputs(cls, operator=None, scale=4, kernel_size=0):
        return first_error(*validate_operator(operator, scale, kernel_size))

    @classmethod
    def execute(cls, vae, measurement, operator, scale, blur_sigma, kernel_size, motion_angle, strength, sigma_y,
                mu, preset, solver, cg_iters, dps, mask=None, degradation=None, regularizers=None) -> io.NodeOutput:
        with user_errors():
            codec = VAECodec(vae, "data consistency", video=True)
        y = image_to_pixels(measurement, "measurement")
        if degradation is not None:
            degradation = degradation_of(degradation)
            op = degradation.op
            expected = op.measurement_shape(degradation.image_shape)
            if tuple(y.shape[-2:]) != tuple(expected[-2:]):
                raise InputError(f"the measurement is {y.shape[-1]}x{y.shape[-2]} pixels but the {op.describe()} "
                                 f"degradation makes {expected[-1]}x{expected[-2]} measurements; connect the "
                                 "measurement from the same Dream Degrade node")
        else:
            op = build_operator(operator, scale, blur_sigma, kernel_size, motion_angle, mask, tuple(y.shape[-2:]))
        with user_errors(OperatorError):
            y, image_shape = fit_measurement(op, y)
        f = codec.downscale()
        if image_shape[-1] % f or image_shape[-2] % f:
            raise InputError(f"the restored image would be {image_shape[-1]}x{image_shape[-2]} pixels, not a multiple "
                             f"of the VAE's factor {f}; crop or resize the measurement")
        n = int(y.shape[0])
        if codec.video and n > 1 and codec.frames(n) != n:
            counts = sorted({codec.frames(k) for k in range(1, 4 * n)} - {0})[:5]
            raise InputError(f"the measurement has {n} frames, but this video VAE encodes and decodes "
                             f"{codec.frames(n)} of them (it takes {', '.join(map(str, counts))}, ... frames); "
                             "measure the frames the latent was encoded from")
        core = DataConsistency(op=op, y=y, codec=codec, strength=float(strength), sigma_y=float(sigma_y),
                               mu=float(mu), solver=solver, cg_iters=int(cg_iters),
                               schedule=preset_or_error(preset), dps=float(dps))
        return io.NodeOutput(extend(regularizers, RegularizerSpec(core, {}, "data_consistency")))


# ----------------------------------------------------------------------------- degradation
class DreamDegrade(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamDegrade",
            search_aliases=["degradation", "blur", "downscale", "measurement"],
            display_name="Dream Degrade",
            category=SUBCATEGORY,
            description="Makes a restoration benchmark from a clean image: the measurement y = A(x) + sigma_y * "
                        "noise, the degradation (operator) for Dream Data Consistency, and a full-size starting "
                        "image (upsampled / gray-filled) to encode and invert.",
            inputs=[io.Image.Input("image", tooltip="Clean image x (or a video's frames: each is degraded alike).")]
            + operator_inputs() + [
                io.Float.Input("sigma_y", default=0.01, min=0.0, max=1.0, step=0.001,
                               tooltip="Measurement noise std in [-1, 1] pixel units (official 0.01)."),
                seed_input("Seed of the measurement noise."),
                io.Mask.Input("mask", optional=True,
                              tooltip="For 'inpainting': the pixels to remove, white (1) = missing; the image's size."),
            ],
            outputs=[
                io.Image.Output(display_name="measurement", tooltip="Degraded image y (smaller for super-resolution, "
                                                                    "gray for colorization, grey hole for inpainting)."),
                Degradation.Output(display_name="degradation", tooltip="The operator A, for Dream Data Consistency."),
                io.Image.Output(display_name="initial", tooltip="y brought to the full image size: VAE-encode and "
                                                                "invert it to start DreamSampler."),
            ],
        )

    @classmethod
    def check_inputs(cls, operator=None, scale=4, kernel_size=0):
        return first_error(*validate_operator(operator, scale, kernel_size))

    @classmethod
    def execute(cls, image, operator, scale, blur_sigma, kernel_size, motion_angle, sigma_y, seed,
                mask=None) -> io.NodeOutput:
        x = image_to_pixels(image, "image")
        op = build_operator(operator, scale, blur_sigma, kernel_size, motion_angle, mask, tuple(x.shape[-2:]))
        with user_errors(OperatorError):
            op.measurement_shape(tuple(x.shape))
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        y = degrade(x, op, float(sigma_y), gen)
        info = DegradationInfo(op=op, image_shape=tuple(x.shape), sigma_y=float(sigma_y))
        return io.NodeOutput(pixels_to_image(y), info, pixels_to_image(op.initial_image(y)).clamp(0.0, 1.0))


NODES = [DreamMaskInpaint, DreamDataConsistency, DreamDegrade]
