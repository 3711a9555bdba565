"""SD2.x-v (768-v: v-prediction on the discrete SD schedule, 4-channel SD latent, OpenCLIP-H context).

Loaded like a user's model: one checkpoint through CheckpointLoaderSimple.  ComfyUI's detection of
the SD2 class fixes only model_channels 320, the 1024-wide linear-projection transformers and 64-dim
heads; the UNet here has SD2's four levels with two res blocks each, at 320 channels throughout and
transformers only at the first level (about 50 M parameters).  ComfyUI tells 768-v from 512-base by
the spread of ``output_blocks.11.1.transformer_blocks.0.norm1.bias`` (std > 0.09 is v-prediction), so
that bias gets the spread a trained v-model has, and the loader detects V_PREDICTION by itself.  The
OpenCLIP-H text encoder is fixed at 24 layers of 1024 and the KL VAE at width 128, so neither is in
the checkpoint (the loader returns no CLIP and an empty VAE): the conditioning has CLIPTextEncode's
SD2 shape ([1, 77, 1024]) and the SD KL VAE is built at width 32, both by TestFamilyModel (its MODEL
output is None; ``_build.small_kl_vae``).
"""
from . import Family, Refs
from ._build import ROUND_TRIP, cached_file, conditioning, family_refs, init_, sample, small_kl_vae

SIZE = 64
CFG = 7.0        # SD2's usual guidance
NAME = "dream_tiny_sd2v.safetensors"
UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "model_channels": 320, "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 0, 0, 0, 0, 0, 0], "channel_mult": [1, 1, 1, 1], "transformer_depth_middle": 1,
    "use_linear_in_transformer": True, "context_dim": 1024, "num_head_channels": 64,
    "transformer_depth_output": [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    "use_temporal_resblock": False, "use_temporal_attention": False,
}
V_KEY = "output_blocks.11.1.transformer_blocks.0.norm1.bias"


def checkpoint():
    def make():
        import comfy.model_base
        import comfy.supported_models
        import comfy.utils
        import torch
        mc = comfy.supported_models.SD20(dict(UNET))
        mc.set_inference_dtype(torch.float32, None)
        model = comfy.model_base.BaseModel(mc, model_type=comfy.model_base.ModelType.V_PREDICTION, device="cpu")
        init_(model.diffusion_model, 80)
        with torch.no_grad():          # a trained v-model's spread (ComfyUI's SD20.model_type reads it)
            b = model.diffusion_model.get_parameter(V_KEY)
            b.copy_(torch.randn(b.shape, generator=torch.Generator().manual_seed(81)) * 0.2)
        return model.state_dict_for_saving(None, None, None)
    return cached_file("checkpoints", NAME, "v2", make)


def build(variant: str = ""):
    return None, conditioning(81, 77, 1024), conditioning(82, 77, 1024), conditioning(83, 77, 1024), small_kl_vae(4, 85)


def load(p) -> Refs:
    return family_refs(p, "sd2v", CFG, SIZE, model=p.add("CheckpointLoaderSimple", ckpt_name=NAME))


def conditioning_checks():
    def as_type(sampling, zsnr=False):
        return lambda p, r: sample(p, r, model=p.add("ModelSamplingDiscrete", model=r.model, sampling=sampling,
                                                     zsnr=zsnr))
    # the loader detected v-prediction (relabelled as eps the same network samples differently), and
    # v-prediction's own knob, zero terminal SNR, reaches the sampler
    return [("detected_v_prediction", lambda p, r: sample(p, r), as_type("eps")),
            ("ModelSamplingDiscrete_zsnr", as_type("v_prediction"), as_type("v_prediction", zsnr=True))]


FAMILY = Family(
    name="sd2v", title="SD2.x-v", load=load, build=build, files=lambda: {"checkpoints": [checkpoint()]},
    latent_shape=(1, 4, SIZE // 8, SIZE // 8), conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "CheckpointLoaderSimple (SD2 UNet at 320 channels, v-prediction detected by ComfyUI's "
                     "own heuristic); conditioning of OpenCLIP-H's shape and the KL VAE from TestFamilyModel",
           "cfg": "7 (SD2's usual guidance)",
           "steps": "50 ddim_uniform (v-prediction on SD's discrete schedule; the latent is still x0 + sigma eps)",
           "refine_steps": "1-2: measured at 50 steps 3.0e-3 / 1.4e-4 / 8.2e-6 at refine 0 / 1 / 2",
           "edit_strength": "0.2 (0.1-0.3), as SD1.5: v-prediction changes the network's output, not the math"})
