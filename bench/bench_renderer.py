"""Benchmark the pure-PyTorch SVG renderer: forward and forward+backward time.

Scenes are VectorFusion-like: closed 4-segment blobs with radius ~ canvas/12 (jittered), translucent
fills, every other path stroked. Throughput is reported as evaluated path·pixels per second of
the full canvas (paths × H × W / time) — the work a dense renderer would do.

    python -m bench.bench_renderer            # 256² and 512², 16/64/256 paths, CPU (+ CUDA if present)
    python -m bench.bench_renderer --quick    # 256², 16/64 paths, fewer repeats
"""
from __future__ import annotations

import argparse
import math

import torch

from dreamsampler_core.svg import SVGPath, SVGScene, render

from .timing import median_time, statistic, write_json


def make_scene(size: int, num_paths: int, seed: int = 0, device="cpu", dtype=torch.float32) -> SVGScene:
    g = torch.Generator().manual_seed(seed)
    n = 12
    theta = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    unit = torch.stack([theta.cos(), theta.sin()], -1)
    paths = []
    for i in range(num_paths):
        c = torch.rand(2, generator=g, dtype=torch.float64) * size
        r = size / 12 * (0.5 + torch.rand(1, generator=g, dtype=torch.float64))
        pts = c + r * unit * (1 + 0.3 * torch.randn(n, 1, generator=g, dtype=torch.float64))
        fill = torch.rand(4, generator=g, dtype=torch.float64)
        fill[3] = 0.5 + 0.5 * fill[3]
        stroke = torch.rand(4, generator=g, dtype=torch.float64) if i % 2 else None
        paths.append(SVGPath(pts.to(device, dtype), fill.to(device, dtype),
                             None if stroke is None else stroke.to(device, dtype), 2.0))
    return SVGScene(size, size, paths)


def bench(device: str, sizes, counts, repeats: int):
    rows = []
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}; {statistic(repeats)}")
    print(f"{'size':>6} {'paths':>6} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd Mpp/s':>10} {'f+b Mpp/s':>10}")
    for size in sizes:
        for n in counts:
            scene = make_scene(size, n, device=device).requires_grad_(widths=True)

            def fwd():
                with torch.no_grad():
                    render(scene)

            def fwd_bwd():
                render(scene).square().mean().backward()

            tf = median_time(fwd, repeats)
            tb = median_time(fwd_bwd, repeats)
            work = n * size * size / 1e6
            print(f"{size:>5}² {n:>6} {tf * 1e3:>9.1f} {tb * 1e3:>11.1f} {work / tf:>10.1f} {work / tb:>10.1f}")
            rows.append({"device": device, "size": size, "paths": n, "forward_s": tf, "forward_backward_s": tb,
                         "mpp_per_s": work / tb})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="256² with 16/64 paths only, 2 repeats")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--device", action="append", help="device(s) to run; default cpu (+cuda if available)")
    ap.add_argument("--json", help="also write the results here (for bench/report.py)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes, counts, repeats = ((256,), (16, 64), 2) if args.quick else ((256, 512), (16, 64, 256), 3)
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = [r for d in devices for r in bench(d, sizes, counts, repeats)]
    base = {(r["device"], r["size"]): r["forward_backward_s"] for r in rows if r["paths"] == counts[0]}
    for r in rows:  # cost per path relative to the smallest scene of the same size
        r["ratio"] = r["forward_backward_s"] / base[(r["device"], r["size"])]
    write_json(args.json, {"bench": "renderer", "repeat": repeats, "threads": args.threads,
                           "baseline": f"{counts[0]} paths at the same size", "rows": rows})


if __name__ == "__main__":
    main()
