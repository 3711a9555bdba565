"""Model patches a user chains in front of the pack's nodes still apply (issue 15), through /prompt
on a real ``main.py`` server: core nodes that patch the model (Skip Layer Guidance, Perturbed
Attention Guidance, Self-Attention Guidance, RescaleCFG, TCFG, a LoRA, ModelSampling* overrides)
before DreamSampler, Dream DDIM Inversion and SamplerCustomAdvanced with Dream Guider / Dream
Sampler (SAMPLER).  Each patch's effect must be there, and equal to what core does with the same
patch where the math is the same:

* DreamSampler (eta 0, no regularizer, and with a strength-0 CFG Edit whose extra prompt rides in
  the same model batch) == core KSampler 'ddim';
* SamplerCustomAdvanced: Dream Guider == core CFGGuider, both driving Dream Sampler (SAMPLER);
* Dream DDIM Inversion (its guider: CFG 1 of the conditioning) == core CFGGuider(c, c, 1) driving
  Dream DDIM Inversion (SAMPLER).

Skip Layer Guidance skips DiT blocks, so its cases run a tiny MMDiT (SD3 layout, built here and
loaded by core UNETLoader; CLIP-L conditioning from the tiny SD1.5 checkpoint).  FreeU is not a
case: it scales only 640/1280-channel UNet blocks, which the one-level tiny UNet does not have (its
mechanism, transformer_options patches, is the one PAG's attention replacement exercises).
"""
from __future__ import annotations

import json
import urllib.parse

import pytest
import torch

STEPS, CFG, SEED, SCHED = 4, 5.0, 7, "normal"
MMDIT_NAME = "dream_tiny_mmdit.safetensors"
LORA_NAME = "dream_tiny_lora.safetensors"

# case -> (base model, patch nodes applied in order (class_type, inputs without "model"),
#          whether the patch changes a CFG-1 call: the inversion's[, tolerance of "the same math"])
CASES = {
    # sampler_calc_cond_batch_function: [cond, uncond] with the uncond's DiT block skipped
    "slg_simple": ("mmdit", [("SkipLayerGuidanceDiTSimple", dict(double_layers="1", single_layers="",
                                                                  start_percent=0.0, end_percent=1.0))], False),
    # sampler_post_cfg_function with its own calc_cond_batch (skipped block on the cond)
    "slg": ("mmdit", [("SkipLayerGuidanceDiT", dict(double_layers="1", single_layers="", scale=3.0,
                                                    start_percent=0.0, end_percent=1.0, rescaling_scale=0.0))], True),
    # ModelSamplingFlux: flow sampling with Flux's resolution-dependent shift
    "flux_shift": ("mmdit", [("ModelSamplingFlux", dict(max_shift=1.15, base_shift=0.5, width=64, height=64))], True),
    # post-CFG + a self-attention replacement in transformer_options
    "pag": ("sd15", [("PerturbedAttentionGuidance", dict(scale=3.0))], True),
    # post-CFG + attention output patch + disable_cfg1_optimization
    "sag": ("sd15", [("SelfAttentionGuidance", dict(scale=0.5, blur_sigma=2.0))], True),
    # sampler_cfg_function
    "rescale_cfg": ("sd15", [("RescaleCFG", dict(multiplier=1.0))], False),
    # sampler_pre_cfg_function
    "tcfg": ("sd15", [("TCFG", {})], False),
    # a weight patch (LoRA file)
    "lora": ("sd15", [("LoraLoaderModelOnly", dict(lora_name=LORA_NAME, strength_model=1.0))], True),
    # model_sampling object patches
    # (zero terminal SNR starts at sigma ~4500: float32 DDIM and Euler steps part by ~1e-4 there)
    "v_zsnr": ("sd15", [("ModelSamplingDiscrete", dict(sampling="v_prediction", zsnr=True))], True, 1e-3),
    "sd3_shift": ("sd15", [("ModelSamplingSD3", dict(shift=3.0))], True),
}


# ----------------------------------------------------------------------------- tiny model files
def _write_mmdit(path):
    """A two-block MMDiT (hidden 128) in SD3's key layout, CLIP-L sized text inputs (768)."""
    import comfy.supported_models
    import comfy.utils
    from tools.tiny_models import seeded_init_
    cfg = {"in_channels": 16, "patch_size": 2, "out_channels": 16, "depth": 2, "adm_in_channels": 768,
           "context_embedder_config": {"target": "torch.nn.Linear",
                                       "params": {"in_features": 768, "out_features": 128}},
           "num_patches": 256, "pos_embed_max_size": 16, "pos_embed_scaling_factor": None, "input_size": None,
           "x_block_self_attn_layers": []}
    net = comfy.supported_models.SD3(cfg).get_model({}, device="cpu").diffusion_model
    seeded_init_(net, 5, std=0.2)
    with torch.no_grad():
        net.pos_embed.copy_(torch.randn(net.pos_embed.shape, generator=torch.Generator().manual_seed(6)) * 0.1)
    comfy.utils.save_torch_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def _write_lora(path):
    """A rank-4 LoRA on the tiny UNet's time embedding (every call sees it)."""
    import comfy.utils
    g = torch.Generator().manual_seed(11)
    comfy.utils.save_torch_file({
        "lora_unet_time_embed_0.lora_up.weight": torch.randn(1280, 4, generator=g) * 0.5,
        "lora_unet_time_embed_0.lora_down.weight": torch.randn(4, 320, generator=g) * 0.5,
        "lora_unet_time_embed_0.alpha": torch.tensor(4.0),
    }, str(path))


@pytest.fixture(scope="module")
def patch_server(pack, tiny_ckpt, tmp_path_factory):
    """A server of its own (its models folder holds the tiny LoRA and MMDiT files)."""
    from tools.server import ComfyServer
    work = tmp_path_factory.mktemp("comfy-patches")
    for sub, name, write in (("loras", LORA_NAME, _write_lora), ("diffusion_models", MMDIT_NAME, _write_mmdit)):
        (work / "models" / sub).mkdir(parents=True, exist_ok=True)
        write(work / "models" / sub / name)
    with ComfyServer(work, checkpoints=[tiny_ckpt]) as srv:
        yield srv


# ----------------------------------------------------------------------------- the prompt
class Prompt:
    def __init__(self):
        self.nodes = {}

    def add(self, class_type, **inputs):
        key = str(len(self.nodes) + 1)
        self.nodes[key] = {"class_type": class_type, "inputs": inputs}
        return key

    def save(self, name, latent):
        self.add("SaveLatent", samples=latent, filename_prefix=f"patches/{name}")


def _build(case, ckpt_name):
    base, patches = CASES[case][:2]
    p = Prompt()
    ckpt = p.add("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    clip = [ckpt, 1]
    if base == "mmdit":
        model = [p.add("UNETLoader", unet_name=MMDIT_NAME, weight_dtype="default"), 0]
        empty = [p.add("EmptySD3LatentImage", width=64, height=64, batch_size=1), 0]
    else:
        model = [ckpt, 0]
        empty = [p.add("EmptyLatentImage", width=64, height=64, batch_size=1), 0]
    pos = [p.add("CLIPTextEncode", clip=clip, text="a photo of a cat"), 0]
    neg = [p.add("CLIPTextEncode", clip=clip, text=""), 0]
    tgt = [p.add("CLIPTextEncode", clip=clip, text="a zebra"), 0]
    patched = model
    for class_type, inputs in patches:
        patched = [p.add(class_type, model=patched, **inputs), 0]
    # the latent to invert: the unpatched model's own sample
    source = [p.add("KSampler", model=model, seed=SEED, steps=STEPS, cfg=CFG, sampler_name="ddim",
                    scheduler=SCHED, positive=pos, negative=neg, latent_image=empty, denoise=1.0), 0]

    def dream(m, regularizers=None):
        extra = {} if regularizers is None else {"regularizers": regularizers}
        return [p.add("DreamSampler", model=m, seed=SEED, steps=STEPS, cfg=CFG, scheduler=SCHED, positive=pos,
                      negative=neg, latent_image=empty, denoise=1.0, eta=0.0, eta_schedule="constant", **extra), 0]

    def invert(m):
        return [p.add("DreamDDIMInversion", model=m, conditioning=pos, latent_image=source, steps=STEPS,
                      scheduler=SCHED, denoise=1.0, refine_steps=0), 0]

    sigmas = [p.add("BasicScheduler", model=patched, scheduler=SCHED, steps=STEPS, denoise=1.0), 0]
    noise = [p.add("RandomNoise", noise_seed=SEED), 0]
    no_noise = [p.add("DisableNoise"), 0]
    dream_sampler = [p.add("DreamSamplerSelect", eta=0.0, eta_schedule="constant"), 0]
    inversion_sampler = [p.add("DreamInversionSampler", refine_steps=0), 0]

    def custom(noise_in, guider, sampler, latent):
        return [p.add("SamplerCustomAdvanced", noise=noise_in, guider=guider, sampler=sampler, sigmas=sigmas,
                      latent_image=latent), 0]

    edit = [p.add("DreamCFGEdit", target=tgt, strength=0.0, schedule="invariant", start=1.0, end=0.0), 0]
    outputs = {
        "dream": dream(patched),
        "dream_unpatched": dream(model),
        "dream_edit0": dream(patched, edit),
        "ksampler": [p.add("KSampler", model=patched, seed=SEED, steps=STEPS, cfg=CFG, sampler_name="ddim",
                           scheduler=SCHED, positive=pos, negative=neg, latent_image=empty, denoise=1.0), 0],
        "custom_dream_guider": custom(noise, [p.add("DreamGuider", model=patched, positive=pos, negative=neg,
                                                    cfg=CFG), 0], dream_sampler, empty),
        "custom_core_guider": custom(noise, [p.add("CFGGuider", model=patched, positive=pos, negative=neg,
                                                   cfg=CFG), 0], dream_sampler, empty),
        "inversion": invert(patched),
        "inversion_unpatched": invert(model),
        "inversion_core_guider": custom(no_noise, [p.add("CFGGuider", model=patched, positive=pos, negative=pos,
                                                         cfg=1.0), 0], inversion_sampler, source),
    }
    names = {}
    for name, latent in outputs.items():
        p.save(f"{case}_{name}", latent)
        names[str(len(p.nodes))] = name
    return p.nodes, names


def _latents(server, entry, names):
    from safetensors.torch import load
    out = {}
    for node, name in names.items():
        item = entry["outputs"][node]["latents"][0]
        q = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                    "type": item.get("type", "output")})
        status, raw = server.request("GET", f"/view?{q}")
        assert status == 200, (name, status)
        out[name] = load(raw)["latent_tensor"].float()
    return out


def _gap(a, b):
    """max |a - b| relative to max |b| (the tiny random models' latents reach a few hundred)."""
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


def _close(a, b, tol=1e-5):
    return _gap(a, b) <= tol            # float32 through two code paths of the same math


def _differs(a, b):
    return _gap(a, b) > 5e-5            # well above that (the weakest effect here is ~3e-4): the patch acts


@pytest.mark.parametrize("case", list(CASES))
def test_model_patch_applies_through_the_pack(patch_server, tiny_ckpt, case):
    prompt, names = _build(case, tiny_ckpt.name)
    acts_at_cfg1, tol = (CASES[case][2:] + (1e-5,))[:2]
    entry = patch_server.run(prompt, timeout=600)
    z = _latents(patch_server, entry, names)
    for name, t in z.items():
        assert torch.isfinite(t).all(), name
    gap = {f"{k}/{ref}": _gap(z[k], z[ref]) for k, ref in
           (("dream", "ksampler"), ("dream_edit0", "ksampler"), ("custom_dream_guider", "custom_core_guider"),
            ("custom_core_guider", "ksampler"), ("inversion", "inversion_core_guider"),
            ("ksampler", "dream_unpatched"), ("inversion", "inversion_unpatched"))}
    report = json.dumps(gap)
    # the patch acts (else the case would prove nothing)
    assert _differs(z["ksampler"], z["dream_unpatched"]), f"{case}: the patch has no effect on core KSampler; {report}"
    assert _differs(z["dream"], z["dream_unpatched"]), f"{case}: DreamSampler dropped the patch; {report}"
    # and acts as in core
    assert _close(z["dream"], z["ksampler"], tol), f"{case}: DreamSampler != core KSampler ddim; {report}"
    assert _close(z["dream_edit0"], z["ksampler"], tol), \
        f"{case}: DreamSampler with a regularizer's extra prompt != core KSampler ddim; {report}"
    assert _close(z["custom_dream_guider"], z["custom_core_guider"], tol), \
        f"{case}: Dream Guider != core CFGGuider under SamplerCustomAdvanced; {report}"
    assert _close(z["custom_core_guider"], z["ksampler"], tol), f"{case}: Dream Sampler (SAMPLER) != ddim; {report}"
    assert _close(z["inversion"], z["inversion_core_guider"], tol), \
        f"{case}: Dream DDIM Inversion != core CFGGuider driving the inversion sampler; {report}"
    if acts_at_cfg1:
        assert _differs(z["inversion"], z["inversion_unpatched"]), f"{case}: the inversion dropped the patch; {report}"
