"""AuraFlow (flow MMDiT with register tokens and a learned positional table, 4-channel SDXL latent,
ModelSamplingAuraFlow shift 1.73, multiplier 1; Pile-T5-XL context, no pooled vector).

Built in the server: ComfyUI's AuraFlow detection reads only the layer counts, the positional
table's length and the context width; the model width is fixed (3072, 12 heads).  So the model is
``supported_models.AuraFlow`` (``model_base.AuraFlow``) with width 64 (2 heads), one double and one
single layer, a 256-entry positional table.  The T5-XL encoder is fixed-size, so the conditioning has
AuraFlow's CLIPTextEncode shape ([1, 256, 2048]: min length 256).  The VAE is the SDXL KL
autoencoder, as AuraFlow uses, built in the server as VAELoader does at width 32 (``_build.small_kl_vae``).
"""
from . import Family, Refs
from ._build import ROUND_TRIP, conditioning, family_refs, in_server_model, shift_check, small_kl_vae

SIZE = 64
MMDIT = {"cond_seq_dim": 2048, "max_seq": 256, "n_double_layers": 1, "n_layers": 2, "dim": 64, "n_heads": 2,
         "global_conddim": 64}
CFG = 3.5


def _t5(seed):
    """CLIPTextEncode's output for Pile-T5-XL: 256 tokens of 2048, no pooled vector (None)."""
    return conditioning(seed, 256, 2048, pooled_output=None)


def build(variant: str = ""):
    import comfy.supported_models
    model = in_server_model(comfy.supported_models.AuraFlow, MMDIT, seed=70)
    return model, _t5(71), _t5(72), _t5(73), small_kl_vae(4, 75)


def load(p) -> Refs:
    return family_refs(p, "auraflow", CFG, SIZE)


FAMILY = Family(
    name="auraflow", title="AuraFlow", load=load, build=build,
    latent_shape=(1, 4, SIZE // 8, SIZE // 8),
    conditioning_checks=lambda: [shift_check("ModelSamplingAuraFlow", 1.73, 3.0)],
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.AuraFlow, width 64); conditioning of Pile-T5-XL's shape; "
                     "the SDXL KL VAE in the server",
           "cfg": "3.5 (AuraFlow's usual CFG)",
           "steps": "28-50 simple (flow grid with ModelSamplingAuraFlow shift 1.73)",
           "refine_steps": "3: measured at 28 steps 5.2e-2 / 1.4e-2 / 2.9e-3 / 6.1e-4 / 3.1e-5 at refine 0 / 1 / 2 "
                           "/ 3 / 5",
           "edit_strength": "0.3-0.8 (flow, README table)"})
