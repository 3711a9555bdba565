"""Behaviour of the newest ComfyUI (0.38.1) that the pinned 0.3.75 lacks, written here from what the
newest source does, so that a test can show the pack handling it (COMPATIBILITY.md, "mimicked"):

* ``QuantizedLinear``: the input-quantization decision of the newest ``MixedPrecisionOps.Linear``
  (``comfy/ops.py``): while the op has a ``layout_type``, is not full-precision
  (``_full_precision_mm``), not force-cast (``comfy_force_cast_weights``) and has no weight / bias
  functions, its forward quantizes the *activation* (to FP8 here, as the TensorCoreFP8 layouts do;
  under autograd through ``QuantLinearFunc``), which is lossy; otherwise it runs the cast weights.
* ``with_multigpu_clone`` / ``multigpu_calc_cond_batch``: a MultiGPU run (``comfy/sampler_helpers.py``
  puts the per-device patchers in ``model_options["multigpu_clones"]``; ``comfy/samplers.py``
  ``_calc_cond_batch_multigpu`` runs the conds it schedules on another device on that device's
  clone, without gradients).
"""
from __future__ import annotations

import torch

import comfy.ops


def fp8_activation(x: torch.Tensor) -> torch.Tensor:
    """What an FP8 layout keeps of an activation (per-tensor scale 1): e4m3 rounding."""
    return x.to(torch.float8_e4m3fn).to(x.dtype)


class QuantizedLinear(comfy.ops.manual_cast.Linear):
    """A ComfyUI Linear op that quantizes its input as the newest MixedPrecisionOps.Linear does."""

    layout_type = None
    _full_precision_mm = False

    def uses_quantized_input(self) -> bool:
        return (getattr(self, "layout_type", None) is not None and not self._full_precision_mm
                and not getattr(self, "comfy_force_cast_weights", False)
                and len(self.weight_function) == 0 and len(self.bias_function) == 0)

    def forward(self, input, *args, **kwargs):
        if self.uses_quantized_input():
            input = fp8_activation(input)
        return self.forward_comfy_cast_weights(input, *args, **kwargs)


def quantized_linear(in_features: int, out_features: int, seed: int = 0) -> QuantizedLinear:
    """A QuantizedLinear as an FP8 checkpoint loads it: FP8 weight storage, a TensorCoreFP8 layout,
    float compute (weights cast per call)."""
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        op = QuantizedLinear(in_features, out_features)
        op.weight = torch.nn.Parameter((torch.randn(out_features, in_features, generator=g) * 0.5)
                                       .to(torch.float8_e4m3fn), requires_grad=False)
        op.bias = torch.nn.Parameter(torch.randn(out_features, generator=g) * 0.1, requires_grad=False)
    op.layout_type = "TensorCoreFP8E4M3Layout"
    op.quant_format = "float8_e4m3fn"
    return op


def with_multigpu_clone(patcher, other):
    """``patcher`` carrying a MultiGPU setup as the newest ComfyUI hands one to a run:
    ``model_options["multigpu_clones"]`` = {device: patcher}, the main one and ``other`` (a patcher
    of a separate network with its own weights, as a deep clone on another device; here both on the
    CPU, so they are keyed by name)."""
    patcher.model_options["multigpu_clones"] = {"main": patcher, "other": other}
    return patcher


def multigpu_calc_cond_batch(original):
    """``comfy.samplers.calc_cond_batch`` as the newest one runs with ``multigpu_clones``
    (``_calc_cond_batch_multigpu``): conds scheduled on another device run that device's clone,
    under ``torch.no_grad()``.  Here every cond goes to the other device (the newest splits them)."""
    def calc_cond_batch(model, conds, x_in, timestep, model_options):
        clones = model_options.get("multigpu_clones")
        if not clones:
            return original(model, conds, x_in, timestep, model_options)
        other = next(p for p in clones.values() if p.model is not model)
        other.model.current_patcher = other          # prepared for the run, as the newest does per device
        rest = {k: v for k, v in model_options.items() if k != "multigpu_clones"}
        with torch.no_grad():
            return original(other.model, conds, x_in, timestep, rest)
    return calc_cond_batch
