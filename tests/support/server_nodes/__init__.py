"""Test-only ComfyUI nodes, linked into a test server's custom_nodes next to the pack (never
shipped): analytic models as MODEL outputs, so prompts through /prompt run on known math."""
import sys
from pathlib import Path

import torch

_TESTS = Path(__file__).resolve().parents[2]
for _p in (str(_TESTS.parent), str(_TESTS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from support import expansive  # noqa: E402
from support.tiny_models import class_conditioning, oracle_model  # noqa: E402


class TestExpansiveFlowOracle:
    """Flow (CONST) oracle on a mean-free mixture whose sigma = 1 refinement map is expansive
    (support.expansive), its null conditioning and a class-0 latent [1, 4, size, size]."""

    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL", "CONDITIONING", "LATENT")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"size": ("INT", {"default": 4, "min": 1, "max": 16}),
                             "seed": ("INT", {"default": 1, "min": 0, "max": 1000})}}

    def build(self, size, seed):
        gm = expansive.mean_free_mixture(4 * size * size)
        x0 = expansive.sample(gm, 1, seed, (4, size, size)).float()
        return oracle_model(gm, "flow", perturb=expansive.perturbation), class_conditioning(None), {"samples": x0}


NODE_CLASS_MAPPINGS = {"TestExpansiveFlowOracle": TestExpansiveFlowOracle}
