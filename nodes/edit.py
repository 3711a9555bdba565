"""Dream Distill Edit: the inversion-free text edit (DreamSampler distillation with the identity
generator and the DDS direction on the sampler's decreasing grid; the math is
``dreamsampler_core.distill.distill_edit``)."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from .host.model import INVERSION_KEY, calculate_sigmas, latent_output
from .host.sampling import CoreSampler, new_guider, run_pipeline
from .common import (CATEGORY, MAX_STEPS, InputError, check_conditioning, check_model, latent_mask,
                     model_latent, scheduler_input, seed_input, user_errors)
from .common import DreamNode, schema
from ..dreamsampler_core import pipelines

SUB = f"{CATEGORY}/edit"

#: the defaults: the best setting at the ground-truth edit's fidelity on the project's learned
#: rectified-flow model (bench/QUALITY.md, flow table): 0.78 success at 20.0 dB, 42 model rows, vs
#: FlowEdit's best 0.66 at 63 rows; eps / v models want start 0.75-0.9 (the eps table)
DEFAULT_STEPS = 28
DEFAULT_START = 0.5
DEFAULT_STRENGTH = 1.0
DEFAULT_FIDELITY = 1.3
DEFAULT_CFG = 2.5


def no_level_error(steps, start) -> str | None:
    """The message when ``steps`` and ``start`` leave no level to edit (None: they leave one, or one of
    them is not a literal number yet: a link)."""
    if isinstance(steps, int) and isinstance(start, (int, float)) and round(steps * start) < 1:
        return f"start: steps={steps} with start={start} edits no level (round(steps x start) = 0); raise start or steps."
    return None


def edit_grid(model, scheduler: str, steps: int, start: float) -> torch.Tensor:
    """The last round(steps * start) levels of the model's ``steps``-step grid (FlowEdit's n_max of
    T), ending at 0."""
    err = no_level_error(steps, start)
    if err:
        raise InputError(err)
    sigmas = calculate_sigmas(model, scheduler, steps, 1.0)
    return sigmas[len(sigmas) - 1 - round(steps * start):]


class DreamDistillEdit(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamDistillEdit",
            search_aliases=["flowedit", "flow edit", "inversion-free edit", "dds edit", "text edit", "edit image"],
            display_name="Dream Distill Edit (inversion-free)",
            category=SUB,
            description="Edits an image from a source prompt to a target prompt without inverting it: DreamSampler's "
                        "distillation step with the identity generator, on the sampler's own grid. At each level "
                        "the source image and the edit are noised with the same fresh noise, and the edit moves "
                        "by strength x (target prediction - source prediction), pulled back to the source by "
                        "fidelity (strength = fidelity = 1 is FlowEdit). The defaults guide the target against the "
                        "source prompt (cfg 2.5): three model calls per level (two at cfg 1), no inversion. "
                        "Works for flow (Flux, SD3.5, Qwen-Image, Wan), eps and v models, images and video. "
                        "An optional mask keeps the rest of the latent exactly.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (it is not modified)."),
                io.Conditioning.Input("source", tooltip="Prompt describing the INPUT image."),
                io.Conditioning.Input("target", tooltip="Prompt describing the EDITED image (the same text with "
                                                        "the change works best)."),
                io.Latent.Input("latent_image", tooltip="VAE-encoded image (or video) to edit."),
                seed_input("Seed of the fresh noise shared by both predictions at each level."),
                io.Int.Input("steps", default=DEFAULT_STEPS, min=1, max=MAX_STEPS,
                             tooltip="Steps of the full grid; the edit runs its last round(steps x start) "
                                     "levels, two model calls each."),
                scheduler_input(),
                io.Float.Input("start", default=DEFAULT_START, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the grid edited, from the noisy end (FlowEdit's n_max / T). "
                                       "Higher changes more (shapes, layout); lower keeps more (colours, texture). "
                                       "Flow models (Flux, SD3.5, Qwen-Image, Wan): 0.4-0.75; eps / v models "
                                       "(SD1.5, SDXL) need more: 0.75-0.9."),
                io.Float.Input("strength", default=DEFAULT_STRENGTH, min=0.0, max=10.0, step=0.05,
                               tooltip="Weight of the whole edit direction (target prediction - source "
                                       "prediction). Step-count invariant. 1 with fidelity 1 and cfg against an "
                                       "empty negative is FlowEdit; 1.25-2 edits more, at lower fidelity."),
                io.Float.Input("fidelity", default=DEFAULT_FIDELITY, min=0.0, max=10.0, step=0.05,
                               tooltip="Pull back toward the input image at each level. Higher keeps more of it "
                                       "(1.3-2 with cfg 2.5-3 edits and keeps best on the measured flow model); "
                                       "0 lets the edit drift."),
                io.Float.Input("cfg", default=DEFAULT_CFG, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of the target prediction: against the source prompt when 'negative' "
                                       "is not connected (it amplifies only what the prompts change: the measured "
                                       "best, 2-3), else against 'negative'. 1 = no guidance: two model calls per "
                                       "level instead of three."),
                io.Float.Input("source_cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of the source prediction against 'negative' (needs 'negative' "
                                       "when not 1)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Optional negative / empty prompt for the guidance of both branches."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional: white = may change, black = kept exactly (latent). Paste the "
                                      "decoded result back onto the source with the mask for exact pixels."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="Edited latent.")],
        )

    @classmethod
    def check_inputs(cls, steps=DEFAULT_STEPS, start=DEFAULT_START, **_):
        return no_level_error(steps, start)

    @classmethod
    def execute(cls, model, source, target, latent_image, seed, steps, scheduler, start, strength, fidelity, cfg,
                source_cfg, negative=None, mask=None) -> io.NodeOutput:
        check_model(model)
        for c, n in ((source, "source"), (target, "target"), (negative, "negative")):
            if c is not None:
                check_conditioning(c, n)
        if negative is None and abs(source_cfg - 1.0) > 1e-9:
            raise InputError("source_cfg is not 1 but 'negative' is not connected: connect a negative (e.g. an "
                             "empty prompt) or set source_cfg to 1.")
        samples = model_latent(model, latent_image)
        m = latent_mask(mask, samples)
        sigmas = edit_grid(model, scheduler, steps, start)
        guider = new_guider(model, target, source if negative is None else negative, cfg)
        guider.add_branch("source", source, source_cfg)          # source_cfg is 1 without a negative (above)
        levels = len(sigmas) - 1

        editor = CoreSampler(pipelines.distill_edit_pipeline, levels, strength=strength, fidelity=fidelity,
                             mask=m, seed=seed)
        with user_errors():
            out, _ = run_pipeline(guider, editor, sigmas, samples, seed=seed)
        result = latent_output(latent_image, out, drop=("noise_mask", INVERSION_KEY))
        return io.NodeOutput(result)


NODES = [DreamDistillEdit]
