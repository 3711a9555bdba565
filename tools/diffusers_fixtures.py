"""Test fixtures for the diffusers adapter (``dreamsampler_diffusers``): a tiny StableDiffusionPipeline
with seeded random weights, built from configs (offline), and the CLIP tokenizer it uses.

The tokenizer is ComfyUI's bundled SD1 copy from the test host (``host.host_dir()``), else a
character-level CLIP BPE vocabulary written once into the test cache (``host.cache_dir()``).
Used by tests/diffusers and bench/bench_diffusers.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .host import cache_dir, host_dir


def host_tokenizer_dir() -> Path | None:
    """ComfyUI's bundled SD1 CLIP tokenizer files in the test host, if it is built (usable offline)."""
    d = host_dir() / "comfy" / "sd1_tokenizer"
    return d if (d / "vocab.json").is_file() else None


def char_tokenizer_dir() -> Path:
    """A character-level CLIP BPE vocabulary (no merges), for when no host tokenizer is around."""
    from transformers.models.clip.tokenization_clip import bytes_to_unicode
    d = cache_dir() / "char_clip_tokenizer_v1"
    if (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
        return d
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    d.mkdir(parents=True, exist_ok=True)
    for name, text in (("merges.txt", "#version: 0.2\n"), ("vocab.json", json.dumps(vocab))):   # vocab last
        tmp = d / f"{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, d / name)                    # atomic: concurrent test processes never see half a file
    return d


def clip_tokenizer(tokenizer_dir: str | Path | None = None):
    """The SD1 CLIP tokenizer (77 tokens) from ``tokenizer_dir``, the host's copy or the character one."""
    from transformers import CLIPTokenizer
    d = Path(tokenizer_dir) if tokenizer_dir else (host_tokenizer_dir() or char_tokenizer_dir())
    return CLIPTokenizer.from_pretrained(str(d), model_max_length=77)


def tiny_pipeline(seed: int = 0, *, tokenizer_dir: str | Path | None = None, set_alpha_to_one: bool = False,
                  steps_offset: int = 1, prediction_type: str = "epsilon", channels=(32, 64),
                  cross_attention_dim: int = 32):
    """A tiny StableDiffusionPipeline with seeded random weights, built from configs (offline):
    SD1-shaped UNet (two levels, cross-attention on the first), a 2-level AutoencoderKL (factor 2),
    a 2-layer CLIPTextModel and ``clip_tokenizer``; the SD DDIM schedule (scaled_linear
    0.00085-0.012, steps_offset 1, clip_sample False).  It computes the real algorithms, not pretty
    pictures.  The modules initialise from the global CPU generator, so they are built inside
    ``torch.random.fork_rng`` seeded with ``seed``: the caller's RNG state is left as it was."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    tokenizer = clip_tokenizer(tokenizer_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, block_out_channels=tuple(channels), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=cross_attention_dim, attention_head_dim=8)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 32), latent_channels=4,
                            norm_num_groups=32, sample_size=32)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=cross_attention_dim,
                                            intermediate_size=2 * cross_attention_dim, num_hidden_layers=2,
                                            num_attention_heads=2, max_position_embeddings=77,
                                            projection_dim=cross_attention_dim))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=set_alpha_to_one, steps_offset=steps_offset,
                              prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=vae.eval(), text_encoder=text.eval(), tokenizer=tokenizer, unet=unet.eval(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
