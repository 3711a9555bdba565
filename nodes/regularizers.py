"""Regularizer builder nodes: each appends one proximal term to a DREAM_REGULARIZERS list."""
from __future__ import annotations

from comfy_api.latest import io

from .common import CATEGORY, RegularizerSpec, Regularizers, check_conditioning, extend, first_error
from .common import DreamNode, schema
from ..dreamsampler_core.regularizers import EDIT_SCHEDULES, CFGEdit


class DreamCFGEdit(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamCFGEdit",
            search_aliases=["text edit", "prompt edit", "dds", "delta denoising score", "image editing"],
            display_name="Dream CFG Edit",
            category=f"{CATEGORY}/regularizers",
            description="Text editing regularizer: at each step moves the Tweedie estimate toward the target "
                        "prompt's (one DDS step, closed form), while the trajectory keeps the source noise. "
                        "Strength is step-count invariant in the default 'invariant' schedule.",
            inputs=[
                io.Conditioning.Input("target", tooltip="What the image should become (e.g. 'a zebra')."),
                io.Float.Input("strength", default=0.2, min=0.0, max=50.0, step=0.01,
                               tooltip="Edit strength (the paper's omega; 0.2 is its SD1.5 horse->zebra setting "
                                       "at 200 steps). 0 reconstructs the input; raise for stronger edits. Measured "
                                       "on the pack's learned test model (bench/QUALITY.md, 'invariant'): edits "
                                       "between 0.05 and 0.2 (0.1: about the fidelity of a true edit), 0.03 does "
                                       "almost nothing, 0.3 and above replace the source. Connect 'source' for "
                                       "stronger edits at the same fidelity."),
                io.Combo.Input("schedule", options=list(EDIT_SCHEDULES), default="invariant",
                               tooltip="'invariant': the same strength gives the same edit at any step count "
                                       "(equals 'paper' at 200 ddim_uniform steps); 'paper': omega*alpha_bar_t "
                                       "per step exactly as the official code (grows with steps); 'constant'."),
                io.Float.Input("start", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Edit from this point of the schedule (1 = first step)."),
                io.Float.Input("end", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Edit until this point (0 = last step)."),
                Regularizers.Input("regularizers", optional=True, tooltip="Earlier regularizers to chain."),
                io.Conditioning.Input("source", optional=True,
                                      tooltip="What the image shows now (e.g. 'a horse'). Connected: the edit "
                                              "direction is target - source (DDS with a source prompt) instead of "
                                              "target - the sampler's base (null) prediction; strength 0 still "
                                              "reconstructs. On the learned test model it edits more at equal "
                                              "fidelity (bench/QUALITY.md)."),
            ],
            outputs=[Regularizers.Output(display_name="regularizers")],
        )

    @classmethod
    def check_inputs(cls, start=1.0, end=0.0):
        return first_error(f"start ({start}) must be >= end ({end}): the edit runs from start (noisy) down to end"
                           if start is not None and end is not None and start < end else None)

    @classmethod
    def execute(cls, target, strength, schedule, start, end, regularizers=None, source=None) -> io.NodeOutput:
        check_conditioning(target, "target")
        conds = {"target": target}
        if source is not None:
            check_conditioning(source, "source")
            conds["source"] = source
        core = CFGEdit(strength=strength, schedule=schedule, start=start, end=end,
                       source=None if source is None else "source")
        return io.NodeOutput(extend(regularizers, RegularizerSpec(core, conds, "cfg_edit")))


NODES = [DreamCFGEdit]
