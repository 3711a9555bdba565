"""Test-only ComfyUI nodes, linked into a test server's custom_nodes next to the pack (never
shipped): analytic models as MODEL outputs, so prompts through /prompt run on known math."""
import sys
from pathlib import Path

import torch

_TESTS = Path(__file__).resolve().parents[2]
for _p in (str(_TESTS.parent), str(_TESTS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from support import expansive, sampling_behaviours  # noqa: E402
from support.peer_nodes import NODES as PEER_NODES  # noqa: E402
from tools import shapes  # noqa: E402
from tools.tiny_models import class_conditioning, oracle_model  # noqa: E402


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


class TestModelSamplingBehaviour:
    """A clone of the MODEL whose model_sampling behaves like another prediction type
    (support.sampling_behaviours), as a model patch does (add_object_patch)."""

    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "behaviour": (list(sampling_behaviours.BEHAVIOURS),)}}

    def patch(self, model, behaviour):
        m = model.clone()
        m.add_object_patch("model_sampling", sampling_behaviours.make(behaviour, getattr(model.model, "model_config",
                                                                                         None)))
        return (m,)


class TestFamilyModel:
    """A family's tiny model built in the server (support.families.<name>.FAMILY.build): for families
    whose loader hard-codes full sizes; (MODEL, positive, negative, alt_positive, VAE).  ``variant``
    (optional): ``build(variant)``, another set of outputs of the same family (e.g. conditionings
    that differ only in the family's own conditioning, such as SDXL's size conds)."""

    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "CONDITIONING", "VAE")
    FUNCTION = "build"
    _cache = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": ("STRING", {"default": "sdxl"})},
                "optional": {"variant": ("STRING", {"default": ""})}}

    def build(self, family, variant=""):
        key = (family, variant)
        if key not in TestFamilyModel._cache:
            from support.families import families
            fam = families()[family]
            TestFamilyModel._cache[key] = fam.build(variant) if variant else fam.build()
        return TestFamilyModel._cache[key]


class TestFamilyText:
    """A family's stand-in text encoder (support.families.stand_ins): conditioning with the shapes,
    padding and extra entries of the family's positive prompt (TestFamilyModel), its float values
    drawn from a seed of ``text`` (the same text: the same conditioning)."""

    CATEGORY = "testing"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": ("STRING", {"default": "sdxl"}),
                             "text": ("STRING", {"default": "", "multiline": True})}}

    def encode(self, family, text):
        import hashlib
        seed = int.from_bytes(hashlib.sha256(f"{family}|{text}".encode()).digest()[:4], "little")
        g = torch.Generator().manual_seed(seed)

        def like(t):
            if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
                return t
            nonzero = t != 0
            scale = t[nonzero].float().std() if nonzero.sum() > 1 else torch.tensor(1.0)
            new = torch.randn(t.shape, generator=g) * scale
            return torch.where(nonzero, new, torch.zeros_like(new)).to(t.dtype)

        template = TestFamilyModel().build(family)[1]
        return ([[like(c), {k: like(v) for k, v in opts.items()}] for c, opts in template],)


class TestShapesModel:
    """The learned shapes model (tools.shapes): ComfyUI BaseModel, eps, SD1.5 schedule, latent =
    pixels [B, 3, 16, 16] in [-1, 1]; loaded once per server from the committed weights."""

    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    FLOW = False
    _models = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def build(self):
        if self.FLOW not in TestShapesModel._models:
            TestShapesModel._models[self.FLOW] = shapes.comfy_model(flow=True) if self.FLOW else shapes.comfy_model()
        return (TestShapesModel._models[self.FLOW],)


class TestShapesFlowModel(TestShapesModel):
    """The learned shapes rectified-flow model (tools.shapes, velocity target): ComfyUI BaseModel,
    ModelType.FLOW (ModelSamplingDiscreteFlow, shift 3 as SD3), latent = pixels [B, 3, 16, 16]."""

    FLOW = True


class TestShapesPrompt:
    """The class 'prompt' (index into tools.shapes.CLASSES; -1 = the null prompt)."""

    CATEGORY = "testing"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"class_index": ("INT", {"default": -1, "min": -1, "max": shapes.K - 1})}}

    def build(self, class_index):
        return (shapes.conditioning(class_index),)


class TestShapesImages:
    """Real samples of one class from a split, as a latent batch [count, 3, 16, 16]
    ('inpaint': small shapes centred in the right half)."""

    CATEGORY = "testing"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"split": (["heldout", "inpaint", "judge_test"],),
                             "class_index": ("INT", {"default": 0, "min": 0, "max": shapes.K - 1}),
                             "count": ("INT", {"default": 32, "min": 1, "max": 1024})}}

    def build(self, split, class_index, count):
        x, _, _ = shapes.dataset(split, count, class_index, right_half=split == "inpaint")
        return ({"samples": x},)


class TestProgressHookWithoutInterrupt:
    """Makes this server's progress-bar hook report progress but never raise on /interrupt (from
    now on, for every prompt): newer ComfyUI throttles the hook (at most every 100 ms / 0.5 %), so a
    node must not rely on it to stop.  Run it once, alone, before the prompts under test."""

    CATEGORY = "testing"
    RETURN_TYPES = ()
    FUNCTION = "install"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def install(self):
        import comfy.model_management as mm
        import comfy.utils
        inner = comfy.utils.PROGRESS_BAR_HOOK
        if getattr(inner, "_without_interrupt", False) or inner is None:
            return {}

        def hook(*args, **kwargs):
            check = mm.throw_exception_if_processing_interrupted
            mm.throw_exception_if_processing_interrupted = lambda: None
            try:
                return inner(*args, **kwargs)
            finally:
                mm.throw_exception_if_processing_interrupted = check

        hook._without_interrupt = True
        comfy.utils.set_progress_bar_global_hook(hook)
        return {}


NODE_CLASS_MAPPINGS = {"TestExpansiveFlowOracle": TestExpansiveFlowOracle, "TestShapesModel": TestShapesModel,
                       "TestShapesPrompt": TestShapesPrompt, "TestShapesImages": TestShapesImages,
                       "TestProgressHookWithoutInterrupt": TestProgressHookWithoutInterrupt,
                       "TestModelSamplingBehaviour": TestModelSamplingBehaviour, "TestFamilyModel": TestFamilyModel,
                       "TestFamilyText": TestFamilyText, "TestShapesFlowModel": TestShapesFlowModel,
                       **PEER_NODES}
