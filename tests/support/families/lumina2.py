"""Lumina 2 (flow NextDiT, 16-channel Flux latent, ModelSamplingAuraFlow-style shift 6, timestep
t = 1 - sigma inside the model, Gemma-2-2B captions).

Built in the server: ComfyUI's Lumina detection reads the width, caption width and block count from
the keys but takes the heads, rotary axes and FFN from the class defaults (32 heads, axes summing to
128) unless the width is the real 2304 / 3840, so the DiT is ``supported_models.Lumina2``
(``model_base.Lumina2``, ``NextDiT``) with the real layout at small dims: 2 query heads of 32 sharing
one key/value head (Lumina 2's grouped attention), rotary axes [8, 12, 12], one refiner block per
stream and one joint block; the caption input stays 2304 wide.  Gemma-2-2B's config is fixed in
ComfyUI, so the prompts are conditioning of its shape [1, tokens, 2304] with the all-ones
attention_mask its encoder returns.  The VAE is Flux's 16-channel KL autoencoder built in the server
as VAELoader does, at width 32 (``_build.small_kl_vae``: the loader fixes 128).  Not distilled: cfg 4
as ComfyUI's Lumina 2 template; RenormCFG (the family's CFG patch) must reach DreamSampler's guidance.
"""
from __future__ import annotations

import torch

from . import Family, Refs
from ._build import ROUND_TRIP, conditioning, family_refs, in_server_model, sample, shift_check, small_kl_vae

SIZE = 64
TOKENS = 12
DIT = {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 64, "cap_feat_dim": 2304,
       "n_layers": 1, "n_refiner_layers": 1, "qk_norm": True, "n_heads": 2, "n_kv_heads": 1,
       "axes_dims": [8, 12, 12], "axes_lens": [300, 512, 512], "rope_theta": 10000.0, "ffn_dim_multiplier": 4.0}


def caption(seed: int, dim: int):
    """A caption encoder's output: hidden states [1, TOKENS, dim] and its attention_mask."""
    return conditioning(seed, TOKENS, dim, attention_mask=torch.ones(1, TOKENS, dtype=torch.long))


def nextdit_build(config_name: str, unet_config: dict, text_dim: int, seed: int):
    import comfy.supported_models
    model = in_server_model(getattr(comfy.supported_models, config_name), unet_config, seed=seed)
    return (model, caption(seed + 1, text_dim), caption(seed + 2, text_dim), caption(seed + 3, text_dim),
            small_kl_vae(16, seed + 5))


def nextdit_load(name: str, cfg: float):
    def load(p) -> Refs:
        return family_refs(p, name, cfg, SIZE)
    return load


def conditioning_checks():
    def renorm(on: bool):
        def build(p, r):
            # guidance truncated above sigma 0.5 (the prompt alone there), renormalized below
            model = p.add("RenormCFG", model=r.model, cfg_trunc=0.5, renorm_cfg=1.0) if on else r.model
            return sample(p, r, model=model)
        return build
    return [shift_check("ModelSamplingAuraFlow", 6.0, 1.0), ("RenormCFG", renorm(False), renorm(True))]


FAMILY = Family(
    name="lumina2", title="Lumina 2", load=nextdit_load("lumina2", cfg=4.0),
    build=lambda: nextdit_build("Lumina2", DIT, 2304, seed=50),
    latent_shape=(1, 16, SIZE // 8, SIZE // 8), conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.Lumina2: NextDiT 2 x 32 query heads, 1 key/value head); "
                     "conditioning of Gemma-2-2B's shape [1, tokens, 2304] + attention_mask; the 16-channel KL VAE "
                     "in the server",
           "cfg": "4 (ComfyUI's template; not distilled); RenormCFG reaches DreamSampler's guidance",
           "scheduler": "simple (the Lumina 2 fine-tune template NetaYume: res_multistep / simple, "
                        "ModelSamplingAuraFlow 4; Lumina 2's own shift is 6)",
           "steps": "25-30",
           "refine_steps": "2-3: measured at 30 steps (shift 6) 9.2e-2 / 1.9e-2 / 3.5e-3 / 6.2e-4 / 2.1e-5 at refine "
                           "0 / 1 / 2 / 3 / 5",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real weights"})
