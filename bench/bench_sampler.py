"""DreamSampler editing vs core ComfyUI sampling at equal model evaluations (same run, same model).

    python -m bench.bench_sampler [--steps 20] [--size 64] [--repeat 3] [--arch tiny|sd15|sdxl] [--json out.json]

Baselines: core KSampler ('ddim', cfg 3 -> a batch-2 UNet call per step) and SamplerCustomAdvanced
with core euler. DreamSampler edit: cfg 1 + a CFG-edit regularizer -> also one batch-2 call per
step. Model evaluations are counted through a UNet wrapper to prove they are equal. Runs on the
tiny SD1.5-architecture checkpoint (CPU, or CUDA when available); pass --ckpt for a real one, or
--arch sd15 / sdxl for the full-size UNet with random weights (real timings, random conditioning).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .timing import median_time, statistic, write_json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=0,
                    help="image size in pixels (latent = size/8); default 64, or 512 / 1024 for sd15 / sdxl on CUDA")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ckpt", type=Path)
    ap.add_argument("--arch", choices=("tiny", "sd15", "sdxl"), default="tiny",
                    help="tiny: the test checkpoint (or --ckpt); sd15/sdxl: full-size UNet, random weights")
    ap.add_argument("--json", type=Path, help="also write the results here (for bench/report.py)")
    args = ap.parse_args()
    if not args.size:
        args.size = {"sd15": 512, "sdxl": 1024}.get(args.arch, 64) if torch.cuda.is_available() else 64

    from tools.host import load_pack
    load_pack()
    import comfy.model_management as mm
    import comfy.sd
    import nodes as core
    from comfy_extras import nodes_custom_sampler as cs
    from dreamsampler_pack.nodes import regularizers, sampling
    from tools.tiny_models import real_size_model, tiny_sd15_checkpoint

    with torch.inference_mode():
        if args.arch == "tiny":
            ckpt = args.ckpt or tiny_sd15_checkpoint()
            model_name = ckpt.name
            model, clip, vae = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=True, output_clip=True)[:3]
            null = core.CLIPTextEncode().encode(clip, "")[0]
            tgt = core.CLIPTextEncode().encode(clip, "a zebra")[0]
        else:
            model_name = f"full-size {args.arch} UNet, random weights"
            model, tgt, null = real_size_model(args.arch)
        calls = {"n": 0, "batch": 0}
        model = model.clone()

        def counting(apply_model, kw):
            calls["n"] += 1
            calls["batch"] += kw["input"].shape[0]
            return apply_model(kw["input"], kw["timestep"], **kw["c"])

        model.set_model_unet_function_wrapper(counting)
        lat = {"samples": torch.randn(1, 4, args.size // 8, args.size // 8, generator=torch.Generator().manual_seed(0))}
        n = args.steps
        inv = sampling.DreamDDIMInversion.execute(model, null, lat, n, "ddim_uniform", 1.0, 0).result[0]
        reg = regularizers.DreamCFGEdit.execute(tgt, 0.2, "invariant", 1.0, 0.0).result[0]
        sigmas = cs.BasicScheduler.execute(model, "ddim_uniform", n, 1.0).result[0]
        euler = cs.KSamplerSelect.execute("euler").result[0]
        cfg_guider = cs.CFGGuider.execute(model, tgt, null, 3.0).result[0]
        noise = cs.RandomNoise.execute(0).result[0]

        cases = {
            "core KSampler ddim (cfg 3)": lambda: core.KSampler().sample(
                model, 0, n, 3.0, "ddim", "normal", tgt, null, lat, 1.0),
            "core SamplerCustomAdvanced euler (cfg 3)": lambda: cs.SamplerCustomAdvanced.execute(
                noise, cfg_guider, euler, sigmas, lat),
            "DreamSampler edit (cfg 1 + CFG edit)": lambda: sampling.DreamSampler.execute(
                model, 0, n, 1.0, "ddim_uniform", null, null, inv, 1.0, 0.0, "constant", reg),
            "DreamSampler eta=0.5 (cfg 3)": lambda: sampling.DreamSampler.execute(
                model, 0, n, 3.0, "normal", tgt, null, lat, 1.0, 0.5, "constant"),
        }
        results = {}
        for name, fn in cases.items():
            fn()                                   # warm-up
            calls.update(n=0, batch=0)
            t = median_time(fn, args.repeat, warmup=False)
            results[name] = (t, calls["n"] // args.repeat, calls["batch"] // args.repeat)

    base = results["core KSampler ddim (cfg 3)"][0]
    dev = mm.get_torch_device()
    print(f"device: {dev} ({torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}); {model_name}; "
          f"steps {n}; latent {args.size // 8}x{args.size // 8}; {statistic(args.repeat)}")
    print(f"{'case':45s} {'time s':>9s} {'UNet calls':>11s} {'batch rows':>11s} {'vs KSampler':>12s}")
    for name, (t, c, b) in results.items():
        print(f"{name:45s} {t:9.3f} {c:11d} {b:11d} {t / base:11.3f}x")
    official = 2 * 200 + 2 * 200
    ours = n + 2 * n
    print(f"\nedit cost in UNet batch rows: official pipeline (200 NFE, batch-2 inversion + batch-2 sampling) "
          f"= {official}; ours at {n} steps (batch-1 null inversion + batch-2 edit) = {ours} "
          f"({ours / official:.3f}x)")
    write_json(args.json, {
        "bench": "sampler", "model": model_name, "steps": n, "size": args.size, "repeat": args.repeat,
        "baseline": "core KSampler ddim (cfg 3)",
        "rows": [{"case": k, "time_s": t, "unet_calls": c, "batch_rows": b, "ratio": t / base}
                 for k, (t, c, b) in results.items()],
        "edit_cost": {"official_rows": official, "ours_rows": ours, "ours_steps": n},
    })


if __name__ == "__main__":
    main()
