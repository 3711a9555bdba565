"""A ControlNet on the conditioning reaches the model in the pack's inversion and sampler, as in
core KSampler (issue 25: "Unsampler breaks with ControlNet"), through /prompt on a real server.

The ControlNet is built here from ComfyUI's own ``comfy.cldm.cldm.ControlNet`` in the tiny SD1.5
UNet's shape (seeded random weights, zero convolutions included, so it moves every prediction),
saved as safetensors and loaded by core ControlNetLoader; core ControlNetApplyAdvanced attaches it
to both prompts.  With it:

* DreamSampler (eta 0) == core KSampler 'ddim', and so does Dream Guider + Dream Sampler (SAMPLER)
  through SamplerCustomAdvanced; both differ from the run without the ControlNet;
* Dream DDIM Inversion == core CFGGuider(c, c, 1) driving Dream DDIM Inversion (SAMPLER), and
  differs from the inversion without the ControlNet.
"""
from __future__ import annotations

import json

import pytest
import torch

from test_model_patches import SCHED, SEED, STEPS, CFG, Prompt, _close, _differs, _gap, _latents

CONTROLNET_NAME = "dream_tiny_controlnet.safetensors"


def _write_controlnet(path):
    """ComfyUI's ControlNet class in the tiny SD1.5 UNet's shape, RGB hint, seeded weights."""
    import comfy.cldm.cldm
    import comfy.ops
    import comfy.utils
    from tools.tiny_models import UNET_CONFIG, seeded_init_
    cfg = {k: v for k, v in UNET_CONFIG.items() if k not in ("out_channels", "transformer_depth_output")}
    net = comfy.cldm.cldm.ControlNet(hint_channels=3, device="cpu", operations=comfy.ops.manual_cast, **cfg)
    seeded_init_(net, 21, std=0.2)
    comfy.utils.save_torch_file({k: v.float().contiguous() for k, v in net.state_dict().items()}, str(path))


@pytest.fixture(scope="module")
def controlnet_server(pack, tiny_ckpt, tmp_path_factory):
    from tools.server import ComfyServer
    work = tmp_path_factory.mktemp("comfy-controlnet")
    (work / "models" / "controlnet").mkdir(parents=True)
    _write_controlnet(work / "models" / "controlnet" / CONTROLNET_NAME)
    with ComfyServer(work, checkpoints=[tiny_ckpt]) as srv:
        yield srv


def _build(ckpt_name):
    p = Prompt()
    ckpt = p.add("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    model, clip = [ckpt, 0], [ckpt, 1]
    empty = [p.add("EmptyLatentImage", width=64, height=64, batch_size=1), 0]
    pos = [p.add("CLIPTextEncode", clip=clip, text="a photo of a cat"), 0]
    neg = [p.add("CLIPTextEncode", clip=clip, text=""), 0]
    hint = [p.add("EmptyImage", width=64, height=64, batch_size=1, color=0xC08040), 0]
    cnet = [p.add("ControlNetLoader", control_net_name=CONTROLNET_NAME), 0]
    applied = p.add("ControlNetApplyAdvanced", positive=pos, negative=neg, control_net=cnet, image=hint,
                    strength=1.0, start_percent=0.0, end_percent=1.0)
    pos_cn, neg_cn = [applied, 0], [applied, 1]
    source = [p.add("KSampler", model=model, seed=SEED, steps=STEPS, cfg=CFG, sampler_name="ddim", scheduler=SCHED,
                    positive=pos, negative=neg, latent_image=empty, denoise=1.0), 0]
    sigmas = [p.add("BasicScheduler", model=model, scheduler=SCHED, steps=STEPS, denoise=1.0), 0]

    def ksampler(c, n):
        return [p.add("KSampler", model=model, seed=SEED, steps=STEPS, cfg=CFG, sampler_name="ddim",
                      scheduler=SCHED, positive=c, negative=n, latent_image=empty, denoise=1.0), 0]

    def dream(c, n):
        return [p.add("DreamSampler", model=model, seed=SEED, steps=STEPS, cfg=CFG, scheduler=SCHED, positive=c,
                      negative=n, latent_image=empty, denoise=1.0, eta=0.0, eta_schedule="constant"), 0]

    def invert(c):
        return [p.add("DreamDDIMInversion", model=model, conditioning=c, latent_image=source, steps=STEPS,
                      scheduler=SCHED, denoise=1.0, refine_steps=0), 0]

    def custom(noise, guider, sampler, latent):
        return [p.add("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                      latent_image=latent), 0]

    edit = [p.add("DreamCFGEdit", target=neg_cn, strength=0.0, schedule="invariant", start=1.0, end=0.0), 0]
    outputs = {
        "ksampler": ksampler(pos_cn, neg_cn),
        "ksampler_plain": ksampler(pos, neg),
        "dream": dream(pos_cn, neg_cn),
        "dream_plain": dream(pos, neg),
        "custom": custom([p.add("RandomNoise", noise_seed=SEED), 0],
                         [p.add("DreamGuider", model=model, positive=pos_cn, negative=neg_cn, cfg=CFG,
                                regularizers=edit), 0],
                         [p.add("DreamSamplerSelect", eta=0.0, eta_schedule="constant"), 0], empty),
        "inversion": invert(pos_cn),
        "inversion_plain": invert(pos),
        "inversion_core_guider": custom([p.add("DisableNoise"), 0],
                                        [p.add("CFGGuider", model=model, positive=pos_cn, negative=pos_cn, cfg=1.0), 0],
                                        [p.add("DreamInversionSampler", refine_steps=0), 0], source),
    }
    names = {}
    for name, latent in outputs.items():
        p.save(f"controlnet_{name}", latent)
        names[str(len(p.nodes))] = name
    return p.nodes, names


def test_controlnet_reaches_the_model_in_inversion_and_sampling(controlnet_server, tiny_ckpt):
    prompt, names = _build(tiny_ckpt.name)
    entry = controlnet_server.run(prompt, timeout=600)
    z = _latents(controlnet_server, entry, names)
    for name, t in z.items():
        assert torch.isfinite(t).all(), name
    report = json.dumps({f"{a}/{b}": _gap(z[a], z[b]) for a, b in (
        ("dream", "ksampler"), ("custom", "ksampler"), ("inversion", "inversion_core_guider"),
        ("ksampler", "ksampler_plain"), ("dream", "dream_plain"), ("inversion", "inversion_plain"))})
    assert _differs(z["ksampler"], z["ksampler_plain"]), f"the ControlNet has no effect on KSampler; {report}"
    assert _differs(z["dream"], z["dream_plain"]), f"DreamSampler dropped the ControlNet; {report}"
    assert _differs(z["inversion"], z["inversion_plain"]), f"the inversion dropped the ControlNet; {report}"
    assert _close(z["dream"], z["ksampler"]), f"DreamSampler != core KSampler ddim; {report}"
    assert _close(z["custom"], z["ksampler"]), f"Dream Guider + Dream Sampler != core KSampler ddim; {report}"
    assert _close(z["inversion"], z["inversion_core_guider"]), \
        f"Dream DDIM Inversion != core CFGGuider driving the inversion sampler; {report}"
