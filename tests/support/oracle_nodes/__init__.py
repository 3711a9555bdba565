"""Test-only ComfyUI nodes: an exact Gaussian-mixture "checkpoint" for end-to-end tests through a
real server (never shipped; tests link this folder into a test server's custom_nodes).

* ``OracleTestModel``: a MODEL whose denoiser is the exact posterior mean E[x0 | x] of a mixture of
  K classes, class k ~ N(mean_k, std^2 I) on a [1, C, H, W] latent (``tools.tiny_models``);
* ``OracleTestPrompt``: the CONDITIONING that selects class k (-1 = the null prompt = the prior);
* ``OracleTestSample``: a LATENT drawn from class k (seeded).

The latent is the oracle's data space (process_latent_in/out are the identity), so the real
ComfyUI sampling path (guider, conds batching, model wrapper, noise masks) runs on known math.
"""
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[2]
for _p in (str(_TESTS.parent), str(_TESTS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import torch  # noqa: E402

from tools import host as _host  # noqa: E402

_host._imported = True          # ComfyUI is already imported and configured in the server process

CATEGORY = "DreamSamplerTest"
_MODELS = {}


def _means(text: str):
    try:
        vals = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"means must be comma-separated numbers, got {text!r}") from None
    if len(vals) < 2:
        raise ValueError("give at least two class means")
    return vals


def mixture(means: str, std: float, channels: int, height: int, width: int):
    from tools.tiny_models import exact_prompt_mixture
    m = _means(means)
    d = channels * height * width
    mu = torch.tensor(m, dtype=torch.float64)[:, None].expand(len(m), d).contiguous()
    return exact_prompt_mixture(mu, torch.full_like(mu, float(std)), torch.full((len(m),), 1.0 / len(m),
                                                                                  dtype=torch.float64))


_SHAPE = {
    "means": ("STRING", {"default": "-0.6, 0.9, 2.1"}),
    "std": ("FLOAT", {"default": 0.3, "min": 0.01, "max": 10.0, "step": 0.01}),
    "channels": ("INT", {"default": 4, "min": 1, "max": 16}),
    "height": ("INT", {"default": 8, "min": 1, "max": 128}),
    "width": ("INT", {"default": 8, "min": 1, "max": 128}),
}


class OracleTestModel:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": dict(_SHAPE, kind=(["eps", "v", "flow"],))}

    def load(self, means, std, channels, height, width, kind):
        from tools.tiny_models import oracle_model
        key = (means, float(std), channels, height, width, kind)
        if key not in _MODELS:
            _MODELS[key] = oracle_model(mixture(means, std, channels, height, width), kind)
        return (_MODELS[key],)


class OracleTestPrompt:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"class_index": ("INT", {"default": -1, "min": -1, "max": 700})}}

    def encode(self, class_index):
        from tools.tiny_models import class_conditioning
        return (class_conditioning(None if class_index < 0 else int(class_index)),)


class OracleTestSample:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": dict(_SHAPE, class_index=("INT", {"default": 0, "min": 0, "max": 700}),
                                 seed=("INT", {"default": 0, "min": 0, "max": 2 ** 31}))}

    def sample(self, means, std, channels, height, width, class_index, seed):
        gm = mixture(means, std, channels, height, width)
        x = gm.sample(1, torch.Generator().manual_seed(int(seed)), int(class_index))
        return ({"samples": x.reshape(1, channels, height, width).float()},)


NODE_CLASS_MAPPINGS = {"OracleTestModel": OracleTestModel, "OracleTestPrompt": OracleTestPrompt,
                       "OracleTestSample": OracleTestSample}
