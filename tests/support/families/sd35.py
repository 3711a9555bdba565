"""SD3.5 (MMDiT flow model, 16-channel SD3 latent, ModelSamplingSD3 shift 3, pooled CLIP-L+G vector).

Loaded like a user's model: ComfyUI's MMDiT detection reads every size from the keys (hidden =
64 x depth, heads = depth, context / pooled widths, patch grid, RMS q/k norm), so a depth-2 MMDiT
(hidden 128, 2 heads, qk_norm "rms" as SD3.5 Large has) goes through UNETLoader.  Its text
encoders (CLIP-L, CLIP-G, T5-XXL) are fixed-size, so the conditioning has SD3 CLIPTextEncode's shapes
(context [1, 154, 4096]: 77 CLIP-L+G tokens padded to 4096 then 77 T5 tokens; pooled_output
[1, 2048]), from the test node TestFamilyModel (its MODEL output is None), with the 16-channel KL
VAE (the SD3 architecture) built in the server as VAELoader does, at width 32 (``_build.small_kl_vae``:
the loader fixes 128).
"""
from . import Family, Refs
from ._build import (
    ROUND_TRIP,
    cached_file,
    conditioning,
    family_refs,
    in_server_refs,
    init_,
    sample,
    shift_check,
    small_kl_vae,
)

SIZE = 64
NAME = "dream_tiny_sd35.safetensors"
#: what ComfyUI's detection reads back from the file (comfy.model_detection, mmdit branch)
MMDIT = {"in_channels": 16, "patch_size": 2, "out_channels": 16, "depth": 2, "input_size": None,
         "adm_in_channels": 2048,
         "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 128}},
         "num_patches": 256, "pos_embed_max_size": 16, "qk_norm": "rms", "pos_embed_scaling_factor": None,
         "x_block_self_attn_layers": []}


def diffusion_model():
    def make():
        import comfy.supported_models
        import torch
        from comfy.ldm.modules.diffusionmodules.mmdit import get_2d_sincos_pos_embed
        mc = comfy.supported_models.SD3(dict(MMDIT))
        mc.set_inference_dtype(torch.float32, None)
        dm = init_(mc.get_model({}, "").diffusion_model, 40, buffers=("pos_embed",))
        pe = get_2d_sincos_pos_embed(64 * MMDIT["depth"], MMDIT["pos_embed_max_size"])   # SD3's fixed embedding
        with torch.no_grad():
            dm.pos_embed.copy_(torch.from_numpy(pe).float().unsqueeze(0))
        return dm.state_dict()
    return cached_file("diffusion_models", NAME, "v1", make)


def _cond(seed):
    return conditioning(seed, 154, 4096, pooled=2048)


def build(variant: str = ""):
    if variant == "pooled":      # the positive's context with another pooled output
        pos = _cond(41)
        pos[0][1]["pooled_output"] = _cond(44)[0][1]["pooled_output"]
        return None, pos, _cond(42), _cond(43), None
    return None, _cond(41), _cond(42), _cond(43), small_kl_vae(16, 45)


def load(p) -> Refs:
    return family_refs(p, "sd35", 4.5, SIZE, model=p.add("UNETLoader", unet_name=NAME, weight_dtype="default"))


def conditioning_checks():
    return [shift_check("ModelSamplingSD3", 3.0, 6.0),
            ("pooled_output", lambda p, r: sample(p, r),
             lambda p, r: sample(p, r, positive=in_server_refs(p, "sd35", "pooled")["positive"]))]


FAMILY = Family(
    name="sd35", title="SD3.5", load=load, build=build,
    files=lambda: {"diffusion_models": [diffusion_model()]},
    latent_shape=(1, 16, SIZE // 8, SIZE // 8), conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "UNETLoader (depth-2 MMDiT, detected as SD3); conditioning of SD3's shapes and the "
                     "16-channel KL VAE from TestFamilyModel",
           "cfg": "4.5 (SD3.5's usual CFG; not distilled)",
           "steps": "28-40 simple (flow grid with ModelSamplingSD3 shift 3)",
           "refine_steps": "2-3: the inversion starts at sigma = 1, where the first step is an extrapolation; "
                           "measured at 28 steps 5.8e-2 / 7.3e-3 / 1.3e-3 / 2.7e-4 / 1.2e-5 at refine 0 / 1 / 2 / "
                           "3 / 5 (about 5x per iteration)",
           "edit_strength": "0.3-0.8 (flow: x0 differences are in the 16-channel latent's units, README table)"})
