"""DDIM inversion and the DreamSampler sampler nodes (KSampler replacement, SAMPLER, GUIDER)."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from .host.model import INVERSION_KEY, calculate_sigmas, latent_output, prepare_noise, process_latent_out
from .host.sampling import CoreSampler, new_guider, run_pipeline
from .host.vae import check_grad_memory
from .common import (CATEGORY, MAX_STEPS, InputError, Regularizers, check_conditioning, check_model, check_schedule,
                     first_error, model_latent, require_schedule, scheduler_input, user_errors)
from .common import DreamNode, schema, seed_input
from ..dreamsampler_core import pipelines
from ..dreamsampler_core.sampler import ETA_SCHEDULES

MAX_RESAMPLE = 10

REFINE_TOOLTIP = (
    "Fixed-point refinements per step (one model call each, plus one per step to check the plain step). "
    "Guarded: each step keeps its best iterate and stops once the reverse-step residual stops shrinking or "
    "turns NaN, so it is never worse than plain inversion. On flow models (SD3, Flux) the step into sigma = 1 "
    "solves x_T = (x - a D(x_T)) / s, which converges only where the model is smooth at pure noise; "
    "otherwise that step stays plain. The log says how many iterations helped.")


def _validate_sampling(steps=None, denoise=None):
    """The checks beyond each input's declared range and options (DreamNode.validate_inputs checks those
    first): denoise 0 does nothing, and the schedule ComfyUI would build must fit."""
    return first_error(
        "denoise must be greater than 0 (0 would do nothing)" if denoise is not None and denoise <= 0 else None,
        check_schedule(steps, denoise),
    )


def _sigmas(model, scheduler, steps, denoise):
    require_schedule(steps, denoise)
    sigmas = calculate_sigmas(model, scheduler, steps, denoise)
    if len(sigmas) < 2:
        raise InputError(f"steps={steps} with denoise={denoise} leaves no sampling step; raise steps or denoise.")
    return sigmas


class DreamDDIMInversion(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamDDIMInversion",
            search_aliases=["unsampler", "ddim inversion", "invert image", "reverse sampling", "noise inversion"],
            display_name="Dream DDIM Inversion",
            category=f"{CATEGORY}/inversion",
            description="Deterministic DDIM inversion of a real image's latent (null-text inversion, as the "
                        "DreamSampler code): walks the sampler's own noise grid upward so that DreamSampler "
                        "with eta=0 and no regularizer reconstructs the input. Works for eps, v and flow models.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (it is not modified)."),
                io.Conditioning.Input("conditioning", tooltip="Null / source prompt used for inversion. The papers "
                                      "invert with the empty prompt: CLIP Text Encode with an empty text."),
                io.Latent.Input("latent_image", tooltip="VAE-encoded image to invert."),
                io.Int.Input("steps", default=50, min=1, max=MAX_STEPS,
                             tooltip="Inversion steps. Match DreamSampler's steps for an exact reconstruction."),
                scheduler_input(),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="How far to invert: 1 = to pure noise; less inverts only part of the way "
                                       "(set DreamSampler's denoise to the same value)."),
                io.Int.Input("refine_steps", default=0, min=0, max=50,
                             tooltip=REFINE_TOOLTIP + " (So does the output LATENT, under 'dream_inversion'.) 0 = "
                                     "plain DDIM inversion as in the paper; 2-5 makes the round trip nearly exact."),
            ],
            outputs=[io.Latent.Output(display_name="inverted_latent",
                                      tooltip="Noisy latent x_T (plus the grid it was inverted on). "
                                              "Feed it to DreamSampler.")],
        )

    @classmethod
    def check_inputs(cls, steps=1, denoise=1.0):
        return _validate_sampling(steps=steps, denoise=denoise)

    @classmethod
    def execute(cls, model, conditioning, latent_image, steps, scheduler, denoise, refine_steps) -> io.NodeOutput:
        check_model(model)
        check_conditioning(conditioning, "conditioning")
        samples = model_latent(model, latent_image)
        sigmas = _sigmas(model, scheduler, steps, denoise)
        x_t, refined = run_pipeline(new_guider(model, conditioning, conditioning, 1.0),
                                    CoreSampler(pipelines.invert, refine=refine_steps), sigmas, samples)
        out = latent_output(latent_image, x_t)
        # "source": the clean latent, for a noise_mask (set before or after this node): its known
        # region must end equal to the source, not to the inverted x_T
        out[INVERSION_KEY] = {"sigma_start": float(sigmas[0]), "steps": int(steps), "scheduler": scheduler,
                              "denoise": float(denoise), "source": samples}
        if refined is not None:
            out[INVERSION_KEY]["refine"] = refined.as_dict()
        return io.NodeOutput(out)


def _sampling_inputs():
    return [
        io.Model.Input("model", tooltip="The diffusion model (it is not modified)."),
        seed_input("Seed for the initial noise (unless the latent comes from inversion) and for eta noise."),
        io.Int.Input("steps", default=50, min=1, max=MAX_STEPS, tooltip="Reverse steps (model evaluations per prompt)."),
        io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance of the base (positive vs negative) prediction. For editing "
                               "an inverted image keep 1.0 and put the edit in a CFG-edit regularizer."),
        scheduler_input(),
        io.Conditioning.Input("positive", tooltip="Base / source prompt. For editing: the same null prompt used "
                                                  "for inversion (or a prompt describing the source image)."),
        io.Conditioning.Input("negative", tooltip="Negative prompt (only used when cfg != 1)."),
        io.Latent.Input("latent_image", tooltip="Latent to sample from: an inverted latent (DDIM Inversion) or "
                                                "any LATENT (noise is then added like KSampler)."),
        io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Fraction of the schedule to run (as KSampler). For an inverted latent use the "
                               "inversion's denoise."),
        io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Stochasticity: fraction of fresh noise in each renoise step (see eta_schedule). "
                               "0 = deterministic DDIM (exact reconstruction of an inverted image)."),
        io.Combo.Input("eta_schedule", options=list(ETA_SCHEDULES), default="constant",
                       tooltip="'constant': eta is the fraction of fresh noise at every step; eta = 1 replaces the "
                               "base noise entirely (no memory of the trajectory), unlike the papers' eta. "
                               "'alpha_bar': eta * alpha_bar_t, more noise late (the official inpainting setting). "
                               "'ddim': DDIM's eta (1 = the DDPM posterior), the one that reproduces the papers' eta."),
    ]


class DreamSampler(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamSampler",
            search_aliases=["ksampler", "regularized sampler", "image editing", "ddim"],
            display_name="DreamSampler",
            category=CATEGORY,
            description="KSampler replacement running DreamSampler: each step takes the model's Tweedie estimate, "
                        "refines it with the connected regularizers (text edit, mask, data consistency) as a "
                        "proximal step, then renoises with the base noise (eta mixes in fresh noise). With no "
                        "regularizer and eta=0 it is DDIM.",
            inputs=_sampling_inputs() + [
                Regularizers.Input("regularizers", optional=True,
                                   tooltip="Regularizers from Dream CFG Edit / mask / data-consistency nodes "
                                           "(chain them; they apply in order)."),
                resample_input(),
            ],
            outputs=[io.Latent.Output(display_name="output", tooltip="Sampled latent."),
                     io.Latent.Output(display_name="denoised_output",
                                      tooltip="The last step's regularized Tweedie estimate.")],
        )

    @classmethod
    def check_inputs(cls, steps=1, denoise=1.0):
        return _validate_sampling(steps=steps, denoise=denoise)

    @classmethod
    def execute(cls, model, seed, steps, cfg, scheduler, positive, negative, latent_image, denoise, eta,
                eta_schedule, regularizers=None, resample=0) -> io.NodeOutput:
        out, denoised = sample(model, seed, steps, cfg, scheduler, positive, negative, latent_image, denoise,
                               eta, eta_schedule, regularizers, resample=resample)
        return io.NodeOutput(out, denoised)


def resample_input():
    return io.Int.Input("resample", default=0, min=0, max=MAX_RESAMPLE, optional=True,
                        tooltip="Take each step again this many times: the step's estimate goes back to the same "
                                "noise level with fresh noise and the model denoises it again (RePaint-style "
                                "resampling). Each costs one model evaluation per step. For inpainting, 1 with "
                                "eta 1 lets the hole agree with the kept part (bench/INPAINTING_FLOW.md); "
                                "0 = the plain sampler.")


def dream_sampler(eta: float, eta_schedule: str, resample: int | None, known_source=None) -> CoreSampler:
    """The DreamSampler loop (``pipelines.sample``) as a sampler; ``known_source``: the clean latent
    (VAE space) a noise mask keeps when the input is an inverted x_T."""
    return CoreSampler(pipelines.sample, eta=eta, eta_schedule=eta_schedule,
                       resample=0 if resample is None else int(resample), known_source=known_source)


def sample(model, seed, steps, cfg, scheduler, positive, negative, latent_image, denoise, eta, eta_schedule,
           regularizers=None, resample=0):
    """The DreamSampler node's body (also used by the other pack nodes)."""
    check_model(model)
    check_conditioning(positive, "positive")
    check_conditioning(negative, "negative")
    samples = model_latent(model, latent_image)
    sigmas = _sigmas(model, scheduler, steps, denoise)
    latent = dict(latent_image, samples=samples)
    inverted = latent.pop(INVERSION_KEY, None)
    if inverted is not None:
        s0 = inverted.get("sigma_start")
        if s0 is not None and abs(float(sigmas[0]) - s0) > 1e-3 * max(1.0, s0):
            raise InputError(
                f"This latent was inverted to noise level {s0:.4g} (denoise={inverted.get('denoise')}), but "
                f"DreamSampler starts at {float(sigmas[0]):.4g} (denoise={denoise}). Set DreamSampler's denoise "
                f"(and scheduler) to the inversion's.")
        noise = torch.zeros_like(samples)
        known = inverted.get("source") if latent.get("noise_mask") is not None else None
        if known is not None and tuple(known.shape) != tuple(samples.shape):
            raise InputError(
                f"'latent_image' has a noise mask and comes from Dream DDIM Inversion, but its shape "
                f"{tuple(samples.shape)} is not the inverted image's {tuple(known.shape)}; set the noise mask "
                f"on the latent as it leaves the inversion (or before it), without resizing it in between.")
    else:
        noise = prepare_noise(latent, seed)
        known = None
    dps = [spec for spec in regularizers or () if float(getattr(spec.core, "dps", 0.0) or 0.0) > 0.0]
    if dps:
        with user_errors():
            check_grad_memory(model, samples.shape, "Dream Data Consistency's dps")
    guider = new_guider(model, positive, negative, cfg, regularizers)
    sampler = dream_sampler(eta, eta_schedule, resample, known_source=known)
    x0_output = {}
    result, _ = run_pipeline(guider, sampler, sigmas, samples, noise, seed, latent.get("noise_mask"), x0_output)
    out = latent_output(latent, result)
    denoised = dict(out)
    if "x0" in x0_output:
        denoised["samples"] = process_latent_out(model, x0_output["x0"].cpu())
    return out, denoised


class DreamSamplerSelect(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamSamplerSelect",
            search_aliases=["sampler select", "custom sampler", "ddim"],
            display_name="Dream Sampler (SAMPLER)",
            category=f"{CATEGORY}/custom_sampling",
            description="DreamSampler as a SAMPLER for core SamplerCustomAdvanced. With a Dream Guider it applies "
                        "the guider's regularizers; with any other guider it is DDIM with eta. A DisableNoise "
                        "noise input starts from the latent as it is (e.g. an inverted latent).",
            inputs=[
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of fresh noise in each renoise step (0 = deterministic DDIM)."),
                io.Combo.Input("eta_schedule", options=list(ETA_SCHEDULES), default="constant",
                               tooltip="'constant' (eta = 1 replaces the base noise entirely, unlike the papers' eta), "
                                       "'alpha_bar' (eta * alpha_bar_t) or 'ddim' (DDIM's eta, as the papers)."),
                resample_input(),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, eta, eta_schedule, resample=0) -> io.NodeOutput:
        return io.NodeOutput(dream_sampler(eta, eta_schedule, resample))


class DreamInversionSampler(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamInversionSampler",
            search_aliases=["unsampler", "flip sigmas", "inversion sampler", "ddim inversion"],
            display_name="Dream DDIM Inversion (SAMPLER)",
            category=f"{CATEGORY}/custom_sampling",
            description="DDIM inversion as a SAMPLER for SamplerCustomAdvanced: give it the normal (descending) "
                        "sigmas of the sampler you will use (FlipSigmas output is accepted too) and a DisableNoise. "
                        "Unlike flipped Euler it is safe for flow models (no division by zero at sigma = 1).",
            inputs=[io.Int.Input("refine_steps", default=0, min=0, max=50, tooltip=REFINE_TOOLTIP)],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, refine_steps) -> io.NodeOutput:
        return io.NodeOutput(CoreSampler(pipelines.invert, refine=refine_steps))


class DreamGuiderNode(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamGuider",
            search_aliases=["cfg guider", "guider"],
            display_name="Dream Guider",
            category=f"{CATEGORY}/custom_sampling",
            description="GUIDER for SamplerCustomAdvanced: CFG of positive vs negative, plus the regularizers' "
                        "extra prompts evaluated in the same model batch. Use with 'Dream Sampler (SAMPLER)'.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (it is not modified)."),
                io.Conditioning.Input("positive", tooltip="Base / source prompt."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (used when cfg != 1)."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of the base prediction."),
                Regularizers.Input("regularizers", optional=True, tooltip="Regularizers to apply."),
            ],
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, regularizers=None) -> io.NodeOutput:
        check_model(model)
        check_conditioning(positive, "positive")
        check_conditioning(negative, "negative")
        return io.NodeOutput(new_guider(model, positive, negative, cfg, regularizers))


NODES = [DreamDDIMInversion, DreamSampler, DreamSamplerSelect, DreamInversionSampler, DreamGuiderNode]
