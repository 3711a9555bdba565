"""DreamSampler editing through the diffusers adapter vs the official code's structure, same run,
same model: model evaluations and wall time.

    python -m bench.bench_diffusers [--steps 200] [--repeat 1] [--arch tiny|sd15] [--size 64]

Official structure (DreamSampler/dream-sampler, latent_diffusion.py; spec dreamsampler §2.1-2.2),
written here in alpha_bar space over the same diffusers UNet as a baseline: null-text DDIM
inversion that runs the UNet on a batch of 2 (null + source prompt, the source row unused at
cfg_guidance 0) on every step, then the edit loop with one batch-2 call (null + target) per step,
z0 = T(z, eps_null + omega abar_t (eps_tgt - eps_null)), renoise with eps_null.  The adapter
runs the same edit through ``DreamPipeline.edit`` (schedule "paper", omega 0.2, the same grid)
with a batch-1 inversion.  UNet calls and rows are counted with a forward hook on the UNet.

The outputs differ only by the clean-end convention of the first inversion step (official:
alpha_bar_{t<0} = final_alpha_cumprod = alpha_bar_0; adapter and ComfyUI: 1): the bench prints
that difference, and the difference to the baseline run once more with alpha_bar_{t<0} = 1
(float rounding only).  --arch sd15 builds the real-size SD1.5 architecture with random weights
(for the GPU; fp16 on CUDA).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from .timing import median_times, statistic, write_json


class Counter:
    """Counts UNet calls and batch rows through a forward pre-hook."""

    def __init__(self, unet):
        self.calls = self.rows = 0
        unet.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.calls += 1
        self.rows += sample.shape[0]


def sd15_pipeline(device, dtype, seed=0):
    """Real-size SD1.5 architecture (UNet 860M, VAE, CLIP ViT-L text encoder) with random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    from tools.diffusers_fixtures import clip_tokenizer
    tok = clip_tokenizer()
    with torch.random.fork_rng(devices=[]):          # seeded init without touching the caller's RNG state
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=768, intermediate_size=3072,
                                            num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77))
    for m in (unet, vae, text):                        # keep random activations finite in half precision
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(0.5)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe.to(device=device, dtype=dtype)


@torch.no_grad()
def official_edit(unet, abar, final_abar, timesteps, z0, null, source, target, omega):
    """The official dream_edit structure in VP / alpha_bar space (spec dreamsampler §2.1, §2.2)."""
    skip = timesteps[0] - timesteps[1] if len(timesteps) > 1 else 1000
    alpha = lambda t: abar[t] if t >= 0 else final_abar                              # noqa: E731
    dtype = unet.dtype
    z = z0
    for t in reversed(timesteps):                                    # inversion, ascending: 1, 6, ..., 996
        a_t, a_p = alpha(t), alpha(t - skip)
        eps = unet(torch.cat([z, z]).to(dtype), t, encoder_hidden_states=torch.cat([null, source])).sample
        eps = eps[:1].float()                                        # cfg_guidance 0: the null row only
        z = a_t ** 0.5 * (z - (1 - a_p) ** 0.5 * eps) / a_p ** 0.5 + (1 - a_t) ** 0.5 * eps
    z0t = z
    for t in timesteps:                                              # edit, descending
        a_t, a_p = alpha(t), alpha(t - skip)
        eps_u, eps_c = unet(torch.cat([z, z]).to(dtype), t, encoder_hidden_states=torch.cat([null, target])
                            ).sample.float().chunk(2)
        z0t = (z - (1 - a_t) ** 0.5 * (eps_u + omega * a_t * (eps_c - eps_u))) / a_t ** 0.5
        z = a_p ** 0.5 * z0t + (1 - a_p) ** 0.5 * eps_u
    return z0t                                                       # the last Tweedie estimate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--arch", choices=("tiny", "sd15"), default="tiny")
    ap.add_argument("--size", type=int, default=0, help="image size in pixels (default: 32 tiny, 512 sd15)")
    ap.add_argument("--omega", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: stable timings on a shared machine)")
    ap.add_argument("--json", type=Path, help="also write the results here (for bench/report.py)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from dreamsampler_diffusers import DreamPipeline
    from tools.diffusers_fixtures import tiny_pipeline
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if args.arch == "tiny":
        pipe, size = tiny_pipeline(0).to(device), args.size or 32
    else:
        pipe, size = sd15_pipeline(device, dtype), args.size or 512
    counter = Counter(pipe.unet)
    dream = DreamPipeline(pipe)
    h = size // pipe.vae_scale_factor
    z0 = torch.randn(1, 4, h, h, generator=torch.Generator().manual_seed(0)).to(device)
    null, tgt = dream.embed(""), dream.embed("a zebra")
    ts = dream.timesteps(args.steps)
    abar = [float(a) for a in dream.table.alphas_cumprod]
    last = {}                                                        # case -> (output, UNet calls, rows)

    def counted(name, fn):
        def call():
            counter.calls = counter.rows = 0
            out = fn()
            last[name] = (out, counter.calls, counter.rows)
        return call

    def fn_off():
        return official_edit(pipe.unet, abar, dream.table.final_alpha_cumprod, ts, z0, null, null, tgt, args.omega)

    def fn_ours():
        return dream.edit(z0, "a zebra", edit_strength=args.omega, schedule="paper", steps=args.steps,
                          output_type="latent").latents

    # a warm-up call of each (kernels, caches), then interleaved: load drifts hit both
    times = median_times({"off": counted("off", fn_off), "ours": counted("ours", fn_ours)}, args.repeat)
    t_off, t_ours = times["off"], times["ours"]
    (off, c_off, r_off), (ours, c_ours, r_ours) = last["off"], last["ours"]

    def rel(a, b):
        return float((a.double() - b.double()).abs().max() / b.double().abs().max())

    diff = rel(ours, off)
    same_end = official_edit(pipe.unet, abar, 1.0, ts, z0, null, null, tgt, args.omega)
    diff_same_end = rel(ours, same_end)

    dev = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"DreamSampler edit, {args.steps} DDIM steps (t = {ts[0]} ... {ts[-1]}), omega {args.omega}, "
          f"{args.arch} UNet, {size}x{size} px, {dev}, {dtype}, {statistic(args.repeat)} interleaved runs "
          "after a warm-up")
    print(f"{'':34s}{'UNet calls':>11s}{'UNet rows':>11s}{'wall s':>10s}")
    print(f"{'official structure (batch-2 inv.)':34s}{c_off:11d}{r_off:11d}{t_off:10.2f}")
    print(f"{'diffusers adapter (batch-1 inv.)':34s}{c_ours:11d}{r_ours:11d}{t_ours:10.2f}")
    print(f"ratios adapter / official: calls {c_ours / c_off:.3f}, rows {r_ours / r_off:.3f}, "
          f"wall {t_ours / t_off:.3f}")
    print(f"max |adapter - official| / max |official| = {diff:.2e} (clean-end convention of the first "
          f"inversion step: alpha_bar_0 = {dream.table.final_alpha_cumprod:.5f} vs 1); with the official "
          f"structure at alpha_bar_(t<0) = 1: {diff_same_end:.2e}")
    write_json(args.json, {
        "bench": "diffusers", "arch": args.arch, "steps": args.steps, "size": size, "repeat": args.repeat,
        "baseline": "official structure (batch-2 inversion + batch-2 edit)",
        "rows": [{"case": "official structure (batch-2 inversion + batch-2 edit)", "unet_calls": c_off,
                  "unet_rows": r_off, "time_s": t_off, "ratio": 1.0},
                 {"case": "ours, diffusers adapter (batch-1 inversion + batch-2 edit)", "unet_calls": c_ours,
                  "unet_rows": r_ours, "time_s": t_ours, "ratio": t_ours / t_off}],
        "max_rel_diff": diff,
    })
    if not math.isfinite(diff):
        sys.exit("non-finite output")


if __name__ == "__main__":
    main()
