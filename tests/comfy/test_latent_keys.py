"""LATENT keys as the newest ComfyUI (0.38) handles them: ``downscale_ratio_spacial`` /
``downscale_ratio_temporal`` describe an empty latent's size; core SamplerCustomAdvanced passes
them to ``fix_empty_latent_channels`` and leaves them out of its output.  Our nodes do the same (on
0.3.75, whose function takes no such arguments, they are only left out)."""
import pytest
import torch

from dreamsampler_pack.dreamsampler_core.analytic import GaussianMixture
from support.inprocess import run


@pytest.fixture(scope="module")
def setup(pack):
    from dreamsampler_pack.nodes import sampling
    from tools.tiny_models import class_conditioning, oracle_model
    gm = GaussianMixture.two_class(4 * 4 * 4, sep=3.0, std=0.5)
    return sampling, oracle_model(gm, "eps"), class_conditioning(None), gm


def _latent(gm):
    x = gm.sample(2, torch.Generator().manual_seed(3), 0).reshape(2, 4, 4, 4).float()
    return {"samples": x, "batch_index": [5, 6], "downscale_ratio_spacial": 8, "downscale_ratio_temporal": 1}


def test_size_keys_are_left_out_and_other_keys_kept(setup):
    sampling, model, null, gm = setup
    lat = _latent(gm)
    (inv,) = run(sampling.DreamDDIMInversion, model, null, lat, steps=6, scheduler="ddim_uniform", denoise=1.0,
                 refine_steps=0)
    out, denoised = run(sampling.DreamSampler, model, seed=0, steps=6, cfg=1.0, scheduler="ddim_uniform", positive=null,
                        negative=null, latent_image=inv, denoise=1.0, eta=0.0, eta_schedule="constant")
    for result in (inv, out, denoised):
        assert "downscale_ratio_spacial" not in result and "downscale_ratio_temporal" not in result
        assert result["batch_index"] == [5, 6]
    assert lat["downscale_ratio_spacial"] == 8          # the input LATENT is not modified


def test_size_keys_reach_a_newer_fix_empty_latent_channels(setup, monkeypatch):
    import comfy.sample
    sampling, model, null, gm = setup
    calls = []
    original = comfy.sample.fix_empty_latent_channels

    def newer(model, latent_image, downscale_ratio_spacial=None, downscale_ratio_temporal=None):
        calls.append((downscale_ratio_spacial, downscale_ratio_temporal))
        return original(model, latent_image)

    monkeypatch.setattr(comfy.sample, "fix_empty_latent_channels", newer)
    run(sampling.DreamDDIMInversion, model, null, _latent(gm), steps=4, scheduler="ddim_uniform", denoise=1.0,
        refine_steps=0)
    assert calls == [(8, 1)]

    def older(model, latent_image):                   # 0.3.75's signature: nothing extra is passed
        calls.append("old")
        return original(model, latent_image)

    monkeypatch.setattr(comfy.sample, "fix_empty_latent_channels", older)
    run(sampling.DreamDDIMInversion, model, null, _latent(gm), steps=4, scheduler="ddim_uniform", denoise=1.0,
        refine_steps=0)
    assert calls[-1] == "old"


def test_output_latents_go_where_core_puts_sampler_outputs(setup, monkeypatch):
    """Core's samplers return ``samples.to(device=intermediate_device(), dtype=intermediate_dtype())``
    (the newest ComfyUI; 0.3.75 moves the device only).  On a CPU-only machine the device is the CPU
    either way, so the newest ``--fp16-intermediates`` (``intermediate_dtype()`` float16, mimicked:
    0.3.75 has no such function) is what shows the move: every LATENT our nodes return is in it, and
    the same run without it stays float32."""
    import comfy.model_management as mm
    sampling, model, null, gm = setup

    def latents():
        (inv,) = run(sampling.DreamDDIMInversion, model, null, _latent(gm), steps=4, scheduler="ddim_uniform",
                     denoise=1.0, refine_steps=0)
        out, denoised = run(sampling.DreamSampler, model, seed=0, steps=4, cfg=1.0, scheduler="ddim_uniform",
                            positive=null, negative=null, latent_image=inv, denoise=1.0, eta=0.0,
                            eta_schedule="constant")
        return [r["samples"] for r in (inv, out, denoised)]

    assert all(s.dtype == torch.float32 and s.device == mm.intermediate_device() for s in latents())
    monkeypatch.setattr(mm, "intermediate_dtype", lambda: torch.float16, raising=False)
    assert all(s.dtype == torch.float16 and s.device == mm.intermediate_device() for s in latents())
