"""Flow-model edits at equal quality: model rows and wall time of Dream Distill Edit against FlowEdit,
FireFlow and RF-Solver (issue 23, item 5).

    python -m bench.bench_flow_edit [--fidelity 19] [--batch 32] [--repeat 3] [--json out.json]

Each method runs the setting that gave its best success at PSNR >= ``--fidelity`` dB in the flow
quality table (``bench/quality_flow.json``, written by ``python -m bench.bench_quality --flow``), on
the same learned rectified-flow shapes model (ModelSamplingSD3 shift 3, `simple`, 28 steps), the same
batch of sources, in one process: the pack's node through its ComfyUI adapter, the peers as the
test-only nodes of tests/support/peer_nodes.py.  Rows are counted by a wrapper on the model (batch
rows per edited image); times are medians of interleaved repeats; ratios are against FlowEdit
measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from . import bench_quality as Q
from .timing import median_times, statistic, write_json

REPO = Path(__file__).resolve().parents[1]
METHODS = {"distill_edit": "Dream Distill Edit", "flowedit": "FlowEdit", "fireflow": "FireFlow",
           "rf_solver": "RF-Solver"}
STEPS = 28


def best_settings(table: dict, fidelity: float) -> dict:
    """family -> the result row with the best success at PSNR >= fidelity (ties: fewer rows)."""
    best = {}
    for r in table["results"]:
        if r["family"] in METHODS and r["psnr_src"] >= fidelity:
            b = best.get(r["family"])
            if b is None or (r["success"], -r["rows"]) > (b["success"], -b["rows"]):
                best[r["family"]] = r
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fidelity", type=float, default=19.0, help="PSNR floor (dB): 19 = the ground-truth edit's")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "tests"))
    from tools.host import load_pack
    load_pack()
    from comfy_extras.nodes_custom_sampler import BasicScheduler
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    from dreamsampler_pack.nodes.edit import DreamDistillEdit
    from support import peer_nodes as P
    from support.inprocess import run
    from tools import shapes as S

    table = json.loads((REPO / "bench" / "quality_flow.json").read_text())
    best = best_settings(table, args.fidelity)
    with torch.inference_mode():
        model = ModelSamplingSD3().patch(S.comfy_model(flow=True), 3.0)[0]
    src, tgt = S.class_index("circle", "red"), S.class_index("square", "red")
    c_src, c_tgt, null = S.conditioning(src), S.conditioning(tgt), S.conditioning(None)
    x = S.dataset("heldout", args.batch, cls=src)[0]
    lat = {"samples": x.float()}

    def sigmas(m, k, d=1.0):
        return run(BasicScheduler, m, "simple", k, d)[0]

    def call(family, p, m):
        if family == "distill_edit":
            w = Q.distill_edit_inputs(p)
            if w.pop("negative", False):
                w["negative"] = null
            return lambda: run(DreamDistillEdit, m, c_src, c_tgt, lat, scheduler="simple", **w)
        if family == "flowedit":
            sg = sigmas(m, p["steps"])
            return lambda: P.TestFlowEdit().edit(m, c_src, c_tgt, null, lat, sg, p["n_max"], 0, 1,
                                                 p.get("src_cfg", 1.0), p["tar_cfg"], 0)
        k = max(1, round(p["steps"] * p.get("denoise", 1.0)))
        sg = sigmas(m, k, p.get("denoise", 1.0))
        return lambda: P.TestRFSolverEdit().edit(m, null, c_tgt, null, lat, sg, family, p["cfg"])

    rows, cases = {}, {}
    for fam, r in best.items():
        key = f"bench-{fam}"
        counted = P.TestCountRows().patch(model, key)[0]
        with torch.inference_mode():
            call(fam, r["params"], counted)()
        rows[fam] = P.ROWS[key] // args.batch
        cases[fam] = call(fam, r["params"], model)

    def timed(fn):
        def go():
            with torch.inference_mode():
                fn()
        return go
    times = median_times({k: timed(v) for k, v in cases.items()}, args.repeat)
    base = times.get("flowedit")
    out = {"fidelity": args.fidelity, "batch": args.batch, "repeat": args.repeat,
           "statistic": statistic(args.repeat), "threads": torch.get_num_threads(), "rows": []}
    for fam in METHODS:
        if fam not in best:
            continue
        r = best[fam]
        out["rows"].append({"method": METHODS[fam], "setting": r["label"], "success": r["success"],
                            "psnr_src": r["psnr_src"], "rows_per_edit": rows[fam], "table_rows": r["rows"],
                            "time_s": times[fam], "ratio": None if base is None else times[fam] / base})
    print(f"flow edits at PSNR >= {args.fidelity:g} dB ({statistic(args.repeat)}, batch {args.batch}):")
    for r in out["rows"]:
        ratio = "" if r["ratio"] is None else f"  {r['ratio']:.2f}x FlowEdit's time"
        print(f"  {r['method']:20s} {r['setting']:60s} success {r['success']:.2f} at {r['psnr_src']:.1f} dB, "
              f"{r['rows_per_edit']} rows, {r['time_s'] * 1e3:.0f} ms{ratio}")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
