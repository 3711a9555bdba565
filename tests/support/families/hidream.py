"""HiDream-I1 (flow MoE DiT, 16-channel Flux latent, timestep = 1000 t; four text encoders: T5-XXL
context, CLIP-L + CLIP-G pooled output, and every hidden layer of Llama-3.1-8B, one per block).

Built in the server: ComfyUI's HiDream detection fixes every size (20 heads of 128, 16 double and 32
single blocks, the Llama layer map), so the DiT is ``supported_models.HiDream``
(``model_base.HiDream``) with the same layout at small dims: 2 heads of 32 with rotary axes
[16, 8, 8], one double-stream and one single-stream block, each with the real mixture of 4 routed
experts (2 active) plus the shared one, and Llama layers [0, 31] feeding them.  The text encoders'
configs are fixed, so the prompts are conditioning of HiDream's shapes: T5 context [1, tokens, 4096],
pooled_output [1, 2048] (CLIP-L 768 + CLIP-G 1280) and conditioning_llama3 [1, 32, tokens, 4096].
The VAE is Flux's 16-channel KL autoencoder built in the server as VAELoader does, at width 32.
HiDream-I1-Full is not distilled: cfg 5 at shift 3 (ModelSamplingSD3), as ComfyUI's template; Dev /
Fast are distilled (cfg 1).
"""
from __future__ import annotations

import torch

from . import Family, Refs
from ._build import ROUND_TRIP, conditioning, family_refs, in_server_model, in_server_refs, sample, shift_check, \
    small_kl_vae

SIZE = 64
TOKENS = 8
LLAMA_LAYERS = 32                 # Llama-3.1-8B's hidden layers, all returned by ComfyUI's encoder
DIT = {"image_model": "hidream", "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 1,
       "num_single_layers": 1, "attention_head_dim": 32, "num_attention_heads": 2, "caption_channels": [4096, 4096],
       "text_emb_dim": 2048, "num_routed_experts": 4, "num_activated_experts": 2, "axes_dims_rope": [16, 8, 8],
       "max_resolution": [128, 128], "llama_layers": [0, 31]}


def prompt(seed: int, llama_seed: int | None = None):
    """[[T5 context, {pooled_output, conditioning_llama3}]] with seeded values."""
    cond = conditioning(seed, TOKENS, 4096, pooled=2048)
    g = torch.Generator().manual_seed(seed + 1000 if llama_seed is None else llama_seed)
    cond[0][1]["conditioning_llama3"] = torch.randn(1, LLAMA_LAYERS, TOKENS, 4096, generator=g)
    return cond


def build(variant: str = ""):
    """(MODEL, positive, negative, alt_positive, VAE); variants: the positive with another pooled
    output (``pooled``) or other Llama hidden states (``llama``), and no model or VAE."""
    import comfy.supported_models
    if variant == "pooled":
        pos = prompt(71)
        pos[0][1]["pooled_output"] = prompt(74)[0][1]["pooled_output"]
        return None, pos, prompt(72), prompt(73), None
    if variant == "llama":
        return None, prompt(71, llama_seed=75), prompt(72), prompt(73), None
    model = in_server_model(comfy.supported_models.HiDream, DIT, seed=70)
    return model, prompt(71), prompt(72), prompt(73), small_kl_vae(16, 76)


def load(p) -> Refs:
    return family_refs(p, "hidream", 5.0, SIZE)


def conditioning_checks():
    def variant(name):
        return lambda p, r: sample(p, r, positive=in_server_refs(p, "hidream", name)["positive"])
    return [shift_check("ModelSamplingSD3", 3.0, 6.0),
            ("pooled_output", lambda p, r: sample(p, r), variant("pooled")),
            ("conditioning_llama3", lambda p, r: sample(p, r), variant("llama"))]


FAMILY = Family(
    name="hidream", title="HiDream-I1", load=load, build=build,
    latent_shape=(1, 16, SIZE // 8, SIZE // 8), conditioning_checks=conditioning_checks,
    notes={"measured": "refine_steps errors: " + ROUND_TRIP,
           "loaded": "in the server (supported_models.HiDream: MoE DiT 2 x 32 heads, 4 routed experts); "
                     "conditioning of HiDream's shapes (T5 [1, tokens, 4096], pooled 2048, Llama-3.1 hidden "
                     "states [1, 32, tokens, 4096]); the 16-channel KL VAE in the server",
           "cfg": "5 (HiDream-I1-Full, shift 3; Dev / Fast are distilled: cfg 1, shift 6 / 3)",
           "scheduler": "simple (Full: uni_pc / simple; Dev and Fast: lcm / normal in ComfyUI's templates)",
           "steps": "50 (Full, shift 3), 28 (Dev, shift 6), 16 (Fast, shift 3): ComfyUI's templates",
           "refine_steps": "3: measured at 28 steps (shift 1) 1.2e-1 / 3.3e-2 / 8.5e-3 / 2.4e-3 / 2.2e-4 at refine 0 "
                           "/ 1 / 2 / 3 / 5",
           "edit_strength": "0.3-0.8 (invariant), as the other flow models; not measured on real weights"})
