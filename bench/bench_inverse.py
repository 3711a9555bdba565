"""Inpainting and super-resolution cost against plain DreamSampler editing at equal steps, and the
peak memory of one data-consistency step (vs one opt-in DPS step, which backpropagates through the
UNet as the official code does on 143 of its 200 steps).

    python -m bench.bench_inverse [--steps 10] [--size 64] [--repeat 2] [--ckpt model.safetensors]

All cases run in the same process on the same model (the tiny SD1.5-architecture checkpoint by
default: real SD VAE shapes, a 1-level UNet, so the VAE's share is larger than with a real UNet).
Ratios are computed from times measured in this run.  Peak memory of a 3-step run, each in a fresh
process after its models are loaded: CUDA max_memory_allocated on a GPU, on CPU the rise of the
process's peak RSS (VmHWM) above its RSS before the run.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from .timing import median_times, statistic, write_json

REPO = Path(__file__).resolve().parents[1]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


MEMORY_CASES = {
    "plain": "plain sampling step (model call only)",
    "dc": "data-consistency step (decode + exact solve + encode)",
    "dps": "opt-in DPS step (UNet + decoder backward, weight copies)",
}


def peak_memory_mib(fn) -> float:
    """Extra peak memory of fn() above what was in use before it, MiB (see module doc)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2 ** 20
    try:
        Path("/proc/self/clear_refs").write_text("5")          # reset VmHWM to the current RSS
    except OSError:
        pass
    before = _rss_kib("VmRSS")
    fn()
    return (_rss_kib("VmHWM") - before) / 1024


def memory_in_child(case: str, args) -> float:
    """Run one 3-step sampling case in a fresh process (freed CPU memory is not reused across
    cases there) and return its peak memory above the loaded models, MiB."""
    cmd = [sys.executable, "-m", "bench.bench_inverse", "--memory-case", case, "--size", str(args.size),
           "--threads", str(args.threads)]
    if args.ckpt:
        cmd += ["--ckpt", str(args.ckpt)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout
    return float(out.strip().splitlines()[-1])


def memory_case(case: str, args):
    """Child: models, measurement and regularizers first; then measure only the 3-step run.  With
    the 'paper' preset step 0 is a DC step and step 1 a DPS step (the last step has neither)."""
    from tools.host import load_pack
    load_pack()
    import comfy.sd
    from dreamsampler_pack.nodes import restoration, sampling
    from tools.tiny_models import fake_conditioning, tiny_sd15_checkpoint
    size = args.size
    with torch.inference_mode():
        model, _, vae = comfy.sd.load_checkpoint_guess_config(str(args.ckpt or tiny_sd15_checkpoint()),
                                                              output_vae=True, output_clip=False)[:3]
        null = fake_conditioning(0, tokens=77)
        image = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
        mask = torch.zeros(1, size, size)
        mask[:, size // 8: size // 2, size // 4: 3 * size // 4] = 1
        y, deg, init = restoration.DreamDegrade.execute(image, "inpainting", 4, 3.0, 0, 0.0, 0.01, 0, mask).result
        latent = {"samples": vae.encode(init)}
        regs = None
        if case != "plain":
            regs = restoration.DreamDataConsistency.execute(
                vae, y, "inpainting", 4, 3.0, 0, 0.0, 1.0, 0.01, 1e-4, "restore" if case == "dc" else "paper", "auto",
                10, 1.0 if case == "dps" else 0.0, mask, deg).result[0]
        print(peak_memory_mib(lambda: sampling.DreamSampler.execute(
            model, 0, 3, 1.0, "ddim_uniform", null, null, latent, 1.0, 0.0, "constant", regs)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", type=int, default=64, help="image size in pixels (multiple of 32)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ckpt", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-case", choices=list(MEMORY_CASES), help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help="also write the results here (for bench/report.py)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_case:
        return memory_case(args.memory_case, args)

    from tools.host import load_pack
    load_pack()
    import comfy.sd
    from dreamsampler_pack.nodes import regularizers, restoration, sampling
    from tools.tiny_models import tiny_sd15_checkpoint

    import nodes as core

    ckpt = args.ckpt or tiny_sd15_checkpoint()
    n, size = args.steps, args.size
    with torch.inference_mode():
        model, clip, vae = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=True, output_clip=True)[:3]
        null = core.CLIPTextEncode().encode(clip, "")[0]
        tgt = core.CLIPTextEncode().encode(clip, "a hot air balloon")[0]
        image = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
        mask = torch.zeros(1, size, size)
        mask[:, size // 8: size // 2, size // 4: 3 * size // 4] = 1

        y_inp, deg_inp, init_inp = restoration.DreamDegrade.execute(image, "inpainting", 4, 3.0, 0, 0.0, 0.01, 0,
                                                                   mask).result
        y_sr, deg_sr, init_sr = restoration.DreamDegrade.execute(image, "sr_bicubic", 4, 3.0, 0, 0.0, 0.01, 0).result
        inv = {}
        for name, init in (("edit", image), ("inpaint", init_inp), ("sr", init_sr)):
            lat = {"samples": vae.encode(init)}
            inv[name] = sampling.DreamDDIMInversion.execute(model, null, lat, n, "ddim_uniform", 1.0, 0).result[0]

        def dc(y, deg, op, preset_name="restore", dps=0.0, regs=None):
            return restoration.DreamDataConsistency.execute(vae, y, op, 4, 3.0, 0, 0.0, 1.0, 0.01, 1e-4, preset_name,
                                                            "auto", 10, dps, mask if op == "inpainting" else None, deg,
                                                            regs).result[0]

        edit = regularizers.DreamCFGEdit.execute(tgt, 0.2, "invariant", 1.0, 0.0).result[0]
        inpaint = restoration.DreamMaskInpaint.execute(mask, 1.0, "restore", 4, "average", 1.0, tgt,
                                                       regularizers=dc(y_inp, deg_inp, "inpainting")).result[0]
        inpaint_paper = restoration.DreamMaskInpaint.execute(
            mask, 1.0, "paper", 0, "average", 1.0, tgt,
            regularizers=dc(y_inp, deg_inp, "inpainting", "paper")).result[0]
        inpaint_dps = restoration.DreamMaskInpaint.execute(
            mask, 1.0, "paper", 0, "average", 1.0, tgt,
            regularizers=dc(y_inp, deg_inp, "inpainting", "paper", dps=1.0)).result[0]
        sr = dc(y_sr, deg_sr, "sr_bicubic")

        def run(latent, regs):
            return lambda: sampling.DreamSampler.execute(model, 0, n, 1.0, "ddim_uniform", null, null, latent, 1.0,
                                                         0.0, "constant", regs)

        cases = {
            "plain DreamSampler edit (CFG edit)": run(inv["edit"], edit),
            "text inpainting (DC + mask, every step)": run(inv["inpaint"], inpaint),
            "text inpainting, 'paper' preset (DC + mask on 1/3 of steps)": run(inv["inpaint"], inpaint_paper),
            "text inpainting, 'paper' + opt-in DPS": run(inv["inpaint"], inpaint_dps),
            "x4 super-resolution (DC every step)": run(inv["sr"], sr),
        }
        times = median_times(cases, args.repeat)


    mem = {label: memory_in_child(case, args) for case, label in MEMORY_CASES.items()}
    base = times["plain DreamSampler edit (CFG edit)"]
    dev = "cuda" if torch.cuda.is_available() else f"cpu ({args.threads} threads)"
    print(f"# {ckpt.name}, {size}x{size} px, {n} steps, ddim_uniform, {dev}; {statistic(args.repeat)}")
    print(f"{'case':64s} {'time s':>8s} {'vs edit':>8s}")
    for name, t in times.items():
        print(f"{name:64s} {t:8.2f} {t / base:7.2f}x")
    print(f"\n{'peak memory of a 3-step run above the resident models':64s} {'MiB':>8s} {'vs DC':>8s}")
    ref = mem["data-consistency step (decode + exact solve + encode)"]
    for name, m in mem.items():
        print(f"{name:64s} {m:8.1f} {m / ref if ref > 0 else float('nan'):7.2f}x")
    write_json(args.json, {
        "bench": "inverse", "model": ckpt.name, "steps": n, "size": size, "repeat": args.repeat,
        "baseline": "plain DreamSampler edit (CFG edit)",
        "rows": [{"case": k, "time_s": t, "ratio": t / base} for k, t in times.items()],
        "memory_baseline": "data-consistency step (decode + exact solve + encode)",
        "memory": [{"case": k, "peak_mib": m, "ratio": m / ref if ref > 0 else None} for k, m in mem.items()],
    })


if __name__ == "__main__":
    main()
