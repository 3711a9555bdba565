"""CSD-Edit time per iteration vs the number of particles N (must grow linearly, not quadratically).

    python -m bench.bench_csd [--ns 1,2,4,8,16] [--size 32] [--iterations 3] [--kernel-ns 4,8,16,32,64]

Part 1 times whole CSD iterations (frames mode, N particles) through ComfyUI's own sampling machinery
with the tiny SD1.5-architecture checkpoint (or --ckpt): per iteration 3N UNet rows (target prompt +
negative at x_t, source prompt at x~_t) plus the SVGD kernel.  Part 2 times the SVGD combination alone on
SD-sized features (4 x 64 x 64 = 16384 per particle), whose N^2 d cost is the only super-linear term.
Ratios are measured in the same run: t(2N) / t(N) is 2 for linear growth and 4 for quadratic.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .timing import median_time, statistic, write_json


def linear_fit(ns, ts):
    """Least squares t = a + b N; returns (a, b, worst relative residual)."""
    n = torch.tensor(ns, dtype=torch.float64)
    t = torch.tensor(ts, dtype=torch.float64)
    A = torch.stack([torch.ones_like(n), n], 1)
    a, b = torch.linalg.lstsq(A, t[:, None]).solution[:, 0].tolist()
    resid = float(((A @ torch.tensor([a, b], dtype=torch.float64)) - t).abs().div(t).max())
    return a, b, resid


def report(title, ns, ts, unit="ms"):
    scale = 1e3 if unit == "ms" else 1.0
    print(f"\n{title}")
    print(f"{'N':>5s} {'time ' + unit:>12s} {'per particle':>13s} {'t(N)/t(N/2)':>12s}")
    for i, (n, t) in enumerate(zip(ns, ts)):
        ratio = f"{t / ts[i - 1]:12.2f}" if i > 0 and n == 2 * ns[i - 1] else f"{'':12s}"
        print(f"{n:5d} {t * scale:12.2f} {t * scale / n:13.3f} {ratio}")
    a, b, resid = linear_fit(ns, ts)
    print(f"linear fit t = {a * scale:.2f} + {b * scale:.3f} N {unit}; worst relative residual {resid:.1%}")
    return a, b


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ns", default="1,2,4,8,16", help="particle counts for whole iterations")
    ap.add_argument("--size", type=int, default=32, help="frame size in pixels (latent = size / 8)")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kernel-ns", default="4,8,16,32,64")
    ap.add_argument("--kernel-dim", type=int, default=4 * 64 * 64)
    ap.add_argument("--ckpt", type=Path)
    ap.add_argument("--json", type=Path, help="also write the results here (for bench/report.py)")
    args = ap.parse_args()

    from tools.host import load_pack
    load_pack()
    import comfy.model_management as mm
    import comfy.sd
    import nodes as core
    from dreamsampler_pack.dreamsampler_core import pipelines
    from dreamsampler_pack.dreamsampler_core.svgd import svgd_combine
    from dreamsampler_pack.nodes import host as C
    from dreamsampler_pack.nodes.csd import csd_guider, csd_sigmas
    from tools.tiny_models import tiny_sd15_checkpoint

    dev = mm.get_torch_device()
    cuda = dev.type == "cuda"
    ns = [int(v) for v in args.ns.split(",")]
    h = args.size // 8
    with torch.inference_mode():
        model, clip, _ = comfy.sd.load_checkpoint_guess_config(str(args.ckpt or tiny_sd15_checkpoint()),
                                                               output_vae=False, output_clip=True)[:3]
        enc = lambda t: core.CLIPTextEncode().encode(clip, t)[0]
        target, negative, source = enc("a watercolor painting"), enc(""), enc("a photo")
        sigma_at = C.sigma_at(C.model_sampling(model))

        def edit(n):
            lat = torch.randn(n, 4, h, h, generator=torch.Generator().manual_seed(0))
            editor = C.CoreSampler(pipelines.csd_edit, args.iterations, mode="frames", iterations=args.iterations,
                                   generator=torch.Generator().manual_seed(0))
            guider = csd_guider(model, target, negative, source, 7.5, 5.0)
            return C.run_pipeline(guider, editor, csd_sigmas(sigma_at, 0.02, 0.5), lat)[0]

        edit(ns[0])                                        # warm-up: model load
        totals = [median_time(lambda n=n: edit(n), args.repeat, warmup=False) for n in ns]
        # the fixed cost of a run (model prepare, cond processing) measured with 0 iterations
        saved, args.iterations = args.iterations, 0
        fixed = [median_time(lambda n=n: edit(n), args.repeat, warmup=False) for n in ns]
        args.iterations = saved
        per_iter = [(t - f) / args.iterations for t, f in zip(totals, fixed)]

    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"device: {dev} ({name}); threads {torch.get_num_threads()}; latent {h}x{h} per particle; "
          f"{args.iterations} iterations; {statistic(args.repeat)}")
    report("whole CSD iteration (3N UNet rows + SVGD kernel)", ns, per_iter)

    knp = [int(v) for v in args.kernel_ns.split(",")]
    kt = []
    for n in knp:
        g = torch.Generator().manual_seed(n)
        delta = torch.randn(n, args.kernel_dim, generator=g).to(dev)
        feat = torch.randn(n, args.kernel_dim, generator=g).to(dev)
        kt.append(median_time(lambda: svgd_combine(delta, feat), max(args.repeat, 5)))
    report(f"SVGD combination alone (d = {args.kernel_dim}, fp32): the N^2 d term", knp, kt)
    a, b, resid = linear_fit(ns, per_iter)
    write_json(args.json, {
        "bench": "csd", "size": args.size, "iterations": args.iterations, "repeat": args.repeat,
        "baseline": f"N = {ns[0]}",
        "rows": [{"n": n, "iteration_s": t, "ratio": t / per_iter[0]} for n, t in zip(ns, per_iter)],
        "fit": {"fixed_s": a, "per_particle_s": b, "worst_residual": resid},
        "kernel": [{"n": n, "time_s": t} for n, t in zip(knp, kt)], "kernel_dim": args.kernel_dim,
    })


if __name__ == "__main__":
    main()
