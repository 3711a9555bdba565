"""Behaviour of the newest ComfyUI (0.38.1) that the pinned 0.3.75 lacks, written here from what the
newest source does, so that a test can show the pack handling it (COMPATIBILITY.md, "mimicked"):

* ``QuantizedLinear``: the input-quantization decision of the newest ``MixedPrecisionOps.Linear``
  (``comfy/ops.py``): while the op has a ``layout_type``, is not full-precision
  (``_full_precision_mm``), not force-cast (``comfy_force_cast_weights``) and has no weight / bias
  functions, its forward quantizes the *activation* (to FP8 here, as the TensorCoreFP8 layouts do;
  under autograd through ``QuantLinearFunc``), which is lossy; otherwise it runs the cast weights.
* ``multigpu_clone``: where the newest ``ModelPatcher`` keeps the clones of a MultiGPU setup
  (additional models under the key ``"multigpu"``, which ``_calc_cond_batch_multigpu`` runs).
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


def multigpu_clone(patcher, device=None):
    """Attach a clone of ``patcher`` as the newest ComfyUI's MultiGPU setup does (``additional_models``
    under ``"multigpu"``; ``get_additional_models_with_key("multigpu")`` lists them)."""
    clone = patcher.clone()
    if device is not None:
        clone.load_device = device
    patcher.set_additional_models("multigpu", [clone])
    return clone
