"""SDXL (eps, 4-channel SDXL latent, pooled CLIP-G output and size conds through the UNet's ADM input).

Built in the server: ComfyUI's checkpoint detection of the SDXL class fixes model_channels 320 and
transformer depths [0, 0, 2, 2, 10, 10] (about 200 M parameters even with channel_mult [1, 1, 1]), and
its CLIP-G text encoder is fixed at 32 layers of 1280.  So the UNet is ``supported_models.SDXL`` with
small dims (``model_base.SDXL``: the real ADM path, 1280 pooled + 6 x 256 size embeddings = 2816)
as the loader builds it, and the conditioning has CLIPTextEncode's shapes ([1, 77, 2048] context,
[1, 1280] pooled_output; CLIPTextEncodeSDXL's width / height / crop / target entries in the
``size`` variant).  The VAE is the SD/SDXL KL autoencoder (4 channels, quant convs) built in the
server as VAELoader does, at width 32 (``_build.small_kl_vae``: the loader fixes 128).
"""
from . import Family, Refs
from ._build import ROUND_TRIP, conditioning, family_refs, in_server_model, in_server_refs, sample, small_kl_vae

SIZE = 64
CFG = 5.0        # SDXL's usual guidance: the negative (its pooled output and size conds too) is evaluated
UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "model_channels": 64,
    "num_res_blocks": [1, 1], "transformer_depth": [0, 1], "channel_mult": [1, 2], "transformer_depth_middle": 1,
    "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 1, 1], "use_temporal_attention": False, "use_temporal_resblock": False,
}
#: CLIPTextEncodeSDXL's entries for a 1024 x 1024 generation (the size conds of the ``size`` variant)
SIZE_CONDS = {"width": 1024, "height": 1024, "crop_w": 0, "crop_h": 0, "target_width": 1024, "target_height": 1024}


def _cond(seed, **extra):
    return conditioning(seed, 77, 2048, pooled=1280, **extra)


def build(variant: str = ""):
    import comfy.supported_models
    if variant == "size":        # the same prompts with CLIPTextEncodeSDXL's size conds
        return None, _cond(21, **SIZE_CONDS), _cond(22, **SIZE_CONDS), _cond(23, **SIZE_CONDS), None
    if variant == "pooled":      # the positive's context with another pooled output
        pos = _cond(21)
        pos[0][1]["pooled_output"] = _cond(24)[0][1]["pooled_output"]
        return None, pos, _cond(22), _cond(23), None
    model = in_server_model(comfy.supported_models.SDXL, UNET, seed=20)
    return model, _cond(21), _cond(22), _cond(23), small_kl_vae(4, 25)


def load(p) -> Refs:
    return family_refs(p, "sdxl", CFG, SIZE)


def conditioning_checks():
    def with_variant(variant):
        return lambda p, r: sample(p, r, positive=in_server_refs(p, "sdxl", variant)["positive"] if variant
                                   else r.positive)
    return [("size_conds", with_variant(""), with_variant("size")),
            ("pooled_output", with_variant(""), with_variant("pooled"))]


FAMILY = Family(
    name="sdxl", title="SDXL", load=load, build=build,
    latent_shape=(1, 4, SIZE // 8, SIZE // 8), conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.SDXL, small UNet); conditioning of CLIPTextEncode(SDXL)'s "
                     "shapes; the KL VAE in the server at width 32",
           "cfg": "5 (SDXL's usual guidance; the negative's pooled output and size conds are evaluated)",
           "steps": "50 ddim_uniform (eps on SD's discrete schedule, as SD1.5)",
           "refine_steps": "0-1: the inversion's top step is nearly exact on eps models (x = x0 + 14.6 eps); "
                           "measured at 50 steps: 6.0e-3 / 1.0e-5 / 2.4e-7 at refine 0 / 1 / 2",
           "edit_strength": "0.2 (0.1-0.3), as SD1.5: the same eps math and schedule"})
