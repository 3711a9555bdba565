"""Editing quality on a learned model, in the papers' format (issue 17): target success (a judge
classifier) against fidelity to the source (PSNR), through a real ComfyUI server and /prompt.

    python -m bench.bench_quality [--quick] [--retrain] [--n 32] [--out bench]

Model: tools/shapes.py (class-conditional eps UNet on 16x16 coloured shapes, 9 classes,
trained here; weights committed in bench/weights, ``--retrain`` rebuilds them, ~5 min on one core).
Latent = pixels (3 channels, [-1, 1]; no VAE). Sources are held-out real samples; every source has
a ground-truth edit (same centre, size, background, target class), reported as PSNR-to-truth.
Methods: DreamSampler CFG Edit (invariant / paper, steps, refine), CycleDiffusion, Cycle-SDE vs
ODE, and core-node baselines SDEdit (KSampler denoise < 1) and the Unsampler recipe (FlipSigmas +
Euler inversion, then the target prompt); inpainting of the right half: Dream Mask Inpaint presets
vs core SetLatentNoiseMask + KSampler. Writes QUALITY.md, quality.png, quality_grid.png, quality.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np
import torch

from tools import shapes as S
from tools.host import REPO

NODES = REPO / "tests" / "support" / "server_nodes"
PAIRS = [(S.class_index("circle", "red"), S.class_index("square", "red")),
         (S.class_index("square", "green"), S.class_index("triangle", "green")),
         (S.class_index("triangle", "blue"), S.class_index("triangle", "red"))]
SCHED = "ddim_uniform"


# ----------------------------------------------------------------------------- grids
def grids(quick: bool) -> dict:
    """family -> list of (label, params); the benchmark's settings."""
    if quick:
        return {
            "cfg_edit": [dict(schedule="invariant", strength=s, steps=8, refine=0) for s in (0.0, 0.05)]
                        + [dict(schedule="paper", strength=0.05, steps=8, refine=0),
                           dict(schedule="invariant", strength=0.0, steps=8, refine=2),
                           dict(schedule="invariant", strength=0.05, steps=8, refine=0, source=True)],
            "sdedit": [dict(denoise=0.6, cfg=3.0, steps=8)],
            "unsampler": [dict(denoise=0.6, cfg=1.0, steps=8), dict(denoise=0.6, cfg=3.0, steps=8, neg="src")],
            "cyclediffusion": [dict(strength=0.6, cfg=3.0, steps=5)],
            "cycle_sde": [dict(t0=0.5, stage2=s, cfg=3.0, steps=4) for s in ("cycle_sde", "ode")],
            "inpaint_dream": [dict(preset=p, steps=8) for p in ("paper", "restore", "project")],
            "inpaint_core": [dict(cfg=3.0, steps=8)],
        }
    inv = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.35, 0.5)
    g = {"cfg_edit": [dict(schedule="invariant", strength=s, steps=st, refine=0) for st in (20, 50) for s in inv]}
    g["cfg_edit"] += [dict(schedule="invariant", strength=s, steps=20, refine=2) for s in (0.0, 0.02, 0.05, 0.1)]
    g["cfg_edit"] += [dict(schedule="paper", strength=s, steps=st, refine=0) for st in (20, 50)
                      for s in (0.0025, 0.005, 0.01, 0.02, 0.05, 0.1)]
    # the source prompt connected: edit direction target - source (DDS with a source text)
    g["cfg_edit"] += [dict(schedule="invariant", strength=s, steps=20, refine=0, source=True)
                      for s in (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)]
    g["cfg_edit"] += [dict(schedule="invariant", strength=s, steps=50, refine=0, source=True)
                      for s in (0.05, 0.075, 0.1, 0.15, 0.2)]
    g["sdedit"] = [dict(denoise=d, cfg=c, steps=20) for c in (1.0, 3.0) for d in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0)]
    # the same source prompt given to the baselines, as their negative (CFG away from the source)
    g["sdedit"] += [dict(denoise=d, cfg=3.0, steps=20, neg="src") for d in (0.2, 0.3, 0.4, 0.5, 0.7)]
    g["unsampler"] = [dict(denoise=d, cfg=c, steps=20) for c in (1.0, 3.0) for d in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0)]
    g["unsampler"] += [dict(denoise=d, cfg=c, steps=20, neg="src") for c in (2.0, 3.0) for d in (0.3, 0.5, 0.7, 0.85, 1.0)]
    g["unsampler"] += [dict(denoise=1.0, cfg=1.0, steps=20, recon=True)]
    g["cyclediffusion"] = [dict(strength=s, cfg=c, steps=max(3, round(20 * s))) for c in (1.0, 3.0)
                           for s in (0.3, 0.45, 0.6, 0.8)]
    g["cycle_sde"] = [dict(t0=t, stage2=s2, cfg=3.0, steps=max(3, round(50 * t))) for s2 in ("cycle_sde", "ode")
                      for t in (0.2, 0.35, 0.5, 0.7)]
    g["inpaint_dream"] = [dict(preset=p, steps=20) for p in ("paper", "restore", "project")]
    g["inpaint_dream"] += [dict(preset="restore", steps=20, strength=v) for v in (2.0, 4.0, 8.0)]
    g["inpaint_dream"] += [dict(preset="paper", steps=20, strength=2.0)]
    g["inpaint_core"] = [dict(cfg=c, steps=20) for c in (1.0, 3.0)]
    return g


def _variant(p: dict) -> str:
    """The non-default CFG Edit options of a setting, as a label suffix."""
    v = ""
    if p.get("base") == "src":
        v += " base src"
    if p.get("source"):
        v += " dir tgt-src"
    if p.get("start", 1.0) != 1.0 or p.get("end", 0.0) != 0.0:
        v += f" win {p.get('start', 1.0):g}-{p.get('end', 0.0):g}"
    if p.get("eta", 0.0):
        v += f" eta {p['eta']:g}"
    return v


def label(family: str, p: dict) -> str:
    if family.startswith("cfg_"):
        return f"CFG Edit {p['schedule']}{_variant(p)} s={p['strength']:g} {p['steps']} st r{p['refine']}"
    if family in ("sdedit", "unsampler"):
        name = {"sdedit": "SDEdit", "unsampler": "Unsampler"}[family]
        return (f"{name} {'recon (null prompt)' if p.get('recon') else ''}d={p['denoise']:g} cfg {p['cfg']:g}"
                + (" neg src" if p.get("neg") == "src" else ""))
    if family == "cyclediffusion":
        return f"CycleDiffusion s={p['strength']:g} cfg {p['cfg']:g}"
    if family == "cycle_sde":
        return f"Cycle-SDE {p['stage2']} t0={p['t0']:g}"
    if family == "inpaint_dream":
        return f"Dream Mask Inpaint {p['preset']}" + (f" strength {p['strength']:g}" if "strength" in p else "")
    return f"core noise mask cfg {p['cfg']:g}"


def curve_name(family: str, p: dict) -> str:
    """Which success-vs-fidelity curve a setting belongs to."""
    if family.startswith("cfg_"):
        return (f"CFG Edit {p['schedule']}{_variant(p)} {p['steps']} st"
                + (f" refine {p['refine']}" if p["refine"] else ""))
    if family in ("sdedit", "unsampler"):
        return (f"{'SDEdit' if family == 'sdedit' else 'Unsampler'} cfg {p['cfg']:g}"
                + (" neg src" if p.get("neg") == "src" else ""))
    if family == "cyclediffusion":
        return f"CycleDiffusion cfg {p['cfg']:g}"
    if family == "cycle_sde":
        return f"Cycle-SDE {p['stage2']}"
    return label(family, p)


# ----------------------------------------------------------------------------- prompts
class Graph:
    def __init__(self):
        self.nodes, self.saves, self._memo = {}, {}, {}

    def add(self, cls, **inputs):
        nid = str(len(self.nodes) + 1)
        self.nodes[nid] = {"class_type": cls, "inputs": inputs}
        return nid

    def once(self, key, cls, **inputs):
        if key not in self._memo:
            self._memo[key] = self.add(cls, **inputs)
        return self._memo[key]

    def save(self, ref, key):
        self.saves[self.add("SaveLatent", samples=ref, filename_prefix=f"quality/{key}")] = key


def pair_graph(src: int, tgt: int, n: int, split="heldout"):
    g = Graph()
    r = {"model": [g.add("TestShapesModel"), 0],
         "null": [g.add("TestShapesPrompt", class_index=-1), 0],
         "src_c": [g.add("TestShapesPrompt", class_index=src), 0],
         "tgt_c": [g.add("TestShapesPrompt", class_index=tgt), 0],
         "x": [g.add("TestShapesImages", split=split, class_index=src, count=n), 0]}
    return g, r


def _inversion(g, r, steps, refine, base="null"):
    return g.once(("inv", steps, refine, base), "DreamDDIMInversion", model=r["model"], conditioning=r[base],
                  latent_image=r["x"], steps=steps, scheduler=SCHED, denoise=1.0, refine_steps=refine)


def _dream_sampler(g, r, latent, steps, regs, base="null", eta=0.0):
    return g.add("DreamSampler", model=r["model"], seed=0, steps=steps, cfg=1.0, scheduler=SCHED,
                 positive=r[base], negative=r["null"], latent_image=latent, denoise=1.0, eta=eta,
                 eta_schedule="ddim" if eta else "constant", regularizers=regs)


def build(family: str, p: dict, g: Graph, r: dict):
    """Add the nodes of one setting; returns the edited latent's reference."""
    if family.startswith("cfg_"):
        base = "src_c" if p.get("base") == "src" else "null"
        inv = _inversion(g, r, p["steps"], p["refine"], base)
        extra = {"source": r["src_c"]} if p.get("source") else {}
        reg = g.add("DreamCFGEdit", target=r["tgt_c"], strength=p["strength"], schedule=p["schedule"],
                    start=p.get("start", 1.0), end=p.get("end", 0.0), **extra)
        return [_dream_sampler(g, r, [inv, 0], p["steps"], [reg, 0], base, p.get("eta", 0.0)), 0]
    if family == "sdedit":
        return [g.add("KSampler", model=r["model"], seed=0, steps=p["steps"], cfg=p["cfg"], sampler_name="euler",
                      scheduler=SCHED, positive=r["tgt_c"], negative=r["src_c" if p.get("neg") == "src" else "null"],
                      latent_image=r["x"], denoise=p["denoise"]), 0]
    if family == "unsampler":
        sch = g.once(("sch", p["steps"], p["denoise"]), "BasicScheduler", model=r["model"], scheduler=SCHED,
                     steps=p["steps"], denoise=p["denoise"])
        noise = g.once("noise", "DisableNoise")
        euler = g.once("euler", "KSamplerSelect", sampler_name="euler")
        flip = g.once(("flip", sch), "FlipSigmas", sigmas=[sch, 0])
        base = g.once("basic", "BasicGuider", model=r["model"], conditioning=r["null"])
        inv = g.once(("uinv", sch), "SamplerCustomAdvanced", noise=[noise, 0], guider=[base, 0], sampler=[euler, 0],
                     sigmas=[flip, 0], latent_image=r["x"])
        guide = g.add("CFGGuider", model=r["model"], positive=r["null" if p.get("recon") else "tgt_c"],
                      negative=r["src_c" if p.get("neg") == "src" else "null"], cfg=p["cfg"])
        return [g.add("SamplerCustomAdvanced", noise=[noise, 0], guider=[guide, 0], sampler=[euler, 0],
                      sigmas=[sch, 0], latent_image=[inv, 0]), 0]
    if family == "cyclediffusion":
        enc = g.once(("enc", p["strength"], p["steps"]), "DreamDDPMEncode", model=r["model"], source=r["src_c"],
                     negative=r["null"], latent_image=r["x"], seed=0, steps=p["steps"], scheduler=SCHED,
                     strength=p["strength"], eta=0.1, source_cfg=1.0, coupling="posterior")
        return [g.add("DreamDDPMDecode", model=r["model"], target=r["tgt_c"], negative=r["null"], encoded=[enc, 0],
                      cfg=p["cfg"]), 0]
    if family == "cycle_sde":
        return [g.add("DreamCycleSDEEdit", model=r["model"], source=r["src_c"], target=r["tgt_c"],
                      negative=r["null"], latent_image=r["x"], seed=0, steps=p["steps"], scheduler=SCHED,
                      t0=p["t0"], stage2=p["stage2"], cfg=p["cfg"], source_cfg=p["cfg"]), 0]
    mask = g.once("mask", "MaskComposite", destination=[g.once("m0", "SolidMask", value=0.0, width=S.SIZE,
                                                                 height=S.SIZE), 0],
                  source=[g.once("m1", "SolidMask", value=1.0, width=S.SIZE // 2, height=S.SIZE), 0],
                  x=S.SIZE // 2, y=0, operation="add")
    if family == "inpaint_dream":
        inv = _inversion(g, r, p["steps"], 0)
        reg = g.add("DreamMaskInpaint", mask=[mask, 0], strength=p.get("strength", 1.0), preset=p["preset"], feather=0,
                    overlap="average", keep=1.0, target=r["tgt_c"], source=r["x"])
        return [_dream_sampler(g, r, [inv, 0], p["steps"], [reg, 0]), 0]
    if family == "inpaint_core":
        masked = g.once("noisemask", "SetLatentNoiseMask", samples=r["x"], mask=[mask, 0])
        return [g.add("KSampler", model=r["model"], seed=0, steps=p["steps"], cfg=p["cfg"], sampler_name="euler",
                      scheduler=SCHED, positive=r["tgt_c"], negative=r["null"], latent_image=[masked, 0],
                      denoise=1.0), 0]
    raise KeyError(family)


def fetch_latents(server, entry: dict, saves: dict) -> dict:
    from safetensors.torch import load as load_st
    out = {}
    for nid, node_out in entry.get("outputs", {}).items():
        for it in node_out.get("latents", []):
            q = urllib.parse.urlencode({"filename": it["filename"], "subfolder": it.get("subfolder", ""),
                                        "type": it.get("type", "output")})
            status, raw = server.request("GET", f"/view?{q}")
            if status != 200:
                raise RuntimeError(f"/view {it} -> {status}")
            out[saves[nid]] = load_st(raw)["latent_tensor"].float()
    return out


def run_family(server, family, settings, pairs, n, log=print) -> dict:
    """{(pair index, setting index): latent [n, 3, 16, 16]} for one method family, one prompt per pair."""
    split = "inpaint" if family.startswith("inpaint") else "heldout"
    res = {}
    for pi, (src, tgt) in enumerate(pairs):
        g, r = pair_graph(src, tgt, n, split)
        for si, p in enumerate(settings):
            g.save(build(family, p, g, r), f"{family}-{pi}-{si}")
        t = time.time()
        lat = fetch_latents(server, server.run(g.nodes, timeout=1800), g.saves)
        for key, x in lat.items():
            _, a, b = key.rsplit("-", 2)
            res[(int(a), int(b))] = x
        if log:
            log(f"  {family} pair {pi}: {len(settings)} settings in {time.time() - t:.1f} s")
    return res


def generate_samples(server, per_class: int, steps: int, cfgs=(1.0, 3.0)) -> dict:
    """The model's own samples through KSampler: {cfg: (images [K*per_class, 3, 16, 16], labels)}."""
    g = Graph()
    model = [g.add("TestShapesModel"), 0]
    null = [g.add("TestShapesPrompt", class_index=-1), 0]
    shape = [g.add("TestShapesImages", split="judge_test", class_index=0, count=per_class), 0]
    for c in range(S.K):
        pos = [g.add("TestShapesPrompt", class_index=c), 0]
        for cfg in cfgs:
            g.save([g.add("KSampler", model=model, seed=c, steps=steps, cfg=cfg, sampler_name="euler",
                          scheduler=SCHED, positive=pos, negative=null, latent_image=shape, denoise=1.0), 0],
                   f"gen-{c}-{cfg:g}")
    lat = fetch_latents(server, server.run(g.nodes, timeout=1800), g.saves)
    out = {}
    for cfg in cfgs:
        xs = [lat[f"gen-{c}-{cfg:g}"] for c in range(S.K)]
        out[cfg] = (torch.cat(xs), torch.arange(S.K).repeat_interleave(per_class))
    return out


# ----------------------------------------------------------------------------- scoring
def score(judge, edited, sources, src, tgt, truth, keep_mask=None) -> dict:
    with torch.no_grad():
        pred = judge(edited.clamp(-1, 1)).argmax(1)
    e, s, t = S.to_unit(edited), S.to_unit(sources), S.to_unit(truth)
    d = {"success": float((pred == tgt).float().mean()), "retention": float((pred == src).float().mean()),
         "psnr_src": float(S.psnr(e, s).mean()), "psnr_truth": float(S.psnr(e, t).mean()),
         "finite": bool(torch.isfinite(edited).all())}
    if keep_mask is not None:
        d["psnr_kept"] = float(S.psnr(e, s, keep_mask).mean())
    return d


def inputs_for(pairs, n):
    out = []
    for src, tgt in pairs:
        x, _, p = S.dataset("heldout", n, src)
        xi, _, pi = S.dataset("inpaint", n, src, right_half=True)
        out.append({"x": x, "truth": S.counterfactual(p, tgt), "xi": xi, "truth_i": S.counterfactual(pi, tgt)})
    return out


def aggregate(rows):
    keys = [k for k in rows[0] if k != "finite"]
    d = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    d["finite"] = all(r["finite"] for r in rows)
    return d


def run_benchmark(quick=False, n=32, pairs=PAIRS, log=print, families=None, server_dir=None) -> dict:
    from tools.server import ComfyServer
    judge = S.trained_judge(log=log)
    S.trained_unet(log=log)
    acc = S.judge_accuracy(judge)
    if log:
        log(f"judge accuracy on held-out real samples: {acc:.4f}")
    G = grids(quick)
    families = families or list(G)
    data = inputs_for(pairs, n)
    t_all = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        with ComfyServer(Path(server_dir or tmp) / "server", custom_nodes=[NODES], env={"OMP_NUM_THREADS": "1"}) as server:
            t = time.time()
            gen = generate_samples(server, 4 if quick else 32, 8 if quick else 20, (3.0,) if quick else (1.0, 3.0))
            sample_acc = {}
            for cfg, (x, y) in gen.items():
                with torch.no_grad():
                    pred = judge(x.clamp(-1, 1)).argmax(1)
                sample_acc[cfg] = {"overall": float((pred == y).float().mean()),
                                   "per_class": [float((pred[y == c] == c).float().mean()) for c in range(S.K)],
                                   "finite": bool(torch.isfinite(x).all())}
            if log:
                log(f"model samples judged as their prompt: { {k: round(v['overall'], 3) for k, v in sample_acc.items()} }"
                    f" ({time.time() - t:.1f} s)")
            results, timings, latents = {}, {}, {}
            for fam in families:
                t = time.time()
                lat = run_family(server, fam, G[fam], pairs, n, log)
                timings[fam] = time.time() - t
                inpaint = fam.startswith("inpaint")
                keep = torch.zeros(S.SIZE, S.SIZE)
                keep[:, : S.SIZE // 2] = 1
                for si, p in enumerate(G[fam]):
                    rows = []
                    for pi, (src, tgt) in enumerate(pairs):
                        d = data[pi]
                        xs, truth = (d["xi"], d["truth_i"]) if inpaint else (d["x"], d["truth"])
                        rows.append(score(judge, lat[(pi, si)], xs, src, tgt, truth, keep if inpaint else None))
                        latents[(fam, si, pi)] = lat[(pi, si)][:4]
                    results[(fam, si)] = {"family": fam, "params": p, "label": label(fam, p),
                                          "curve": curve_name(fam, p), "per_pair": rows, **aggregate(rows)}
    refs = []
    with torch.no_grad():
        for pi, (src, tgt) in enumerate(pairs):
            d = data[pi]
            other, _, _ = S.dataset("judge_test", n, tgt)                 # an unrelated real target sample
            refs.append({"truth": score(judge, d["truth"], d["x"], src, tgt, d["truth"]),
                         "replace": score(judge, other, d["x"], src, tgt, d["truth"]),
                         "source": score(judge, d["x"], d["x"], src, tgt, d["truth"])})
    reference = {k: aggregate([r[k] for r in refs]) for k in refs[0]}
    return {"judge_accuracy": acc, "sample_accuracy": sample_acc, "results": list(results.values()),
            "reference": reference, "timings": timings, "total_s": time.time() - t_all, "n": n,
            "pairs": [[S.CLASSES[a], S.CLASSES[b]] for a, b in pairs], "_latents": latents, "_data": data}


# ----------------------------------------------------------------------------- report
def success_at(points, fid):
    """Success interpolated along a curve (points: [(psnr, success)]) at PSNR = fid, or None when
    the curve does not reach that fidelity on both sides."""
    pts = sorted(points)
    for (p0, s0), (p1, s1) in zip(pts, pts[1:]):
        if p0 <= fid <= p1:
            return s0 + (s1 - s0) * (fid - p0) / (p1 - p0) if p1 > p0 else max(s0, s1)
    return None


def best_at(rows, fid):
    ok = [r for r in rows if r["psnr_src"] >= fid]
    return max(ok, key=lambda r: (r["success"], r["psnr_src"])) if ok else None


def findings(path: Path) -> list:
    """The hand-written '## Findings' section of an existing report (kept across regenerations)."""
    if not path.exists():
        return []
    lines, keep = path.read_text().splitlines(), []
    for ln in lines:
        if ln.startswith("## "):
            if keep:
                break
            if ln.startswith("## Findings"):
                keep.append(ln)
        elif keep:
            keep.append(ln)
    while keep and not keep[-1].strip():
        keep.pop()
    return keep + [""] if keep else []


def write_report(res: dict, out: Path, cmd: str):
    out.mkdir(parents=True, exist_ok=True)
    rows = res["results"]
    edits = [r for r in rows if not r["family"].startswith("inpaint") and not r["params"].get("recon")]
    ref = res["reference"]
    fids = sorted({round(ref["truth"]["psnr_src"]), round(ref["truth"]["psnr_src"]) + 4})
    curves = {}
    for r in edits:
        curves.setdefault(r["curve"], []).append(r)
    L = [f"# Editing quality on a learned model (`{cmd}`)", "",
         f"Model: class-conditional eps UNet ({sum(p.numel() for p in S.ShapesUNet().parameters()) / 1e3:.0f} k "
         f"parameters) trained here on 16x16 coloured shapes (9 classes: {{circle, square, triangle}} x "
         f"{{red, green, blue}}), wrapped as a ComfyUI `BaseModel` (eps, SD1.5 schedule); latent = pixels. "
         f"All runs through a real ComfyUI server (`/prompt`), {res['n']} held-out sources per pair, pairs: "
         + ", ".join(f"{a} → {b}" for a, b in res["pairs"]) + f". Scheduler `{SCHED}`. Total {res['total_s']:.0f} s.",
         "",
         f"* **Judge** (CNN trained on its own real split): accuracy **{res['judge_accuracy']:.3f}** on held-out real samples.",
         "* **Model samples** judged as their prompt (KSampler euler): " + ", ".join(
             f"cfg {c:g}: **{v['overall']:.3f}** (per class {min(v['per_class']):.2f}–{max(v['per_class']):.2f})"
             for c, v in res["sample_accuracy"].items()),
         f"* **References**: the ground-truth edit (same picture, target class) has PSNR to the source "
         f"{ref['truth']['psnr_src']:.1f} dB and success {ref['truth']['success']:.2f}; replacing the source by an "
         f"unrelated real target sample gives {ref['replace']['psnr_src']:.1f} dB (success "
         f"{ref['replace']['success']:.2f}); the source itself is judged as the target {ref['source']['success']:.2f}.",
         "", "Success = judge says target class; retention = judge still says source class; PSNR to the source "
         "(fidelity) and to the ground-truth edit (the right answer), in dB on [0, 1] pixels.", ""]
    L += findings(out / "QUALITY.md")
    L += ["## Best operating point per method at a stated fidelity", "",
          "| method | " + " | ".join(f"success at PSNR ≥ {f} dB (setting)" for f in fids)
          + " | best PSNR to truth (setting, success) |", "|---|" + "---|" * (len(fids) + 1)]
    for name, rs in curves.items():
        cells = []
        for f in fids:
            b = best_at(rs, f)
            cells.append(f"{b['success']:.2f} ({b['label'].replace(name, '').strip() or b['label']}, "
                         f"{b['psnr_src']:.1f} dB)" if b else "—")
        bt = max(rs, key=lambda r: r["psnr_truth"])
        cells.append(f"{bt['psnr_truth']:.1f} dB ({bt['label']}, {bt['success']:.2f})")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    L += ["", "## Success at equal fidelity (interpolated along each curve)", "",
          "| method | " + " | ".join(f"PSNR = {f} dB" for f in fids) + " |", "|---|" + "---|" * len(fids)]
    for name, rs in curves.items():
        vals = [success_at([(r["psnr_src"], r["success"]) for r in rs], f) for f in fids]
        L.append(f"| {name} | " + " | ".join("—" if v is None else f"{v:.2f}" for v in vals) + " |")
    L += ["", "## Every setting", "", "| setting | success | retention | PSNR src | PSNR truth | finite |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        if r["family"].startswith("inpaint"):
            continue
        L.append(f"| {r['label']} | {r['success']:.2f} | {r['retention']:.2f} | {r['psnr_src']:.1f} | "
                 f"{r['psnr_truth']:.1f} | {'yes' if r['finite'] else '**no**'} |")
    recon = [r for r in rows if (r["family"] == "cfg_edit" and r["params"]["strength"] == 0) or r["params"].get("recon")]
    L += ["", "## Reconstruction at strength 0", "", "| setting | PSNR to the source |", "|---|---|"]
    L += [f"| {r['label']} | {r['psnr_src']:.1f} |" for r in recon]
    inv = {}
    for r in rows:
        p = r["params"]
        if r["family"] == "cfg_edit" and p["refine"] == 0:
            inv.setdefault((p["schedule"] + _variant(p), p["strength"]), {})[p["steps"]] = r
    L += ["", "## Step-count invariance (same strength, 20 vs 50 steps)", "",
          "| schedule | strength | success 20 / 50 | PSNR src 20 / 50 |", "|---|---|---|---|"]
    for (sch, s), d in sorted(inv.items()):
        if len(d) == 2:
            a, b = d[min(d)], d[max(d)]
            L.append(f"| {sch} | {s:g} | {a['success']:.2f} / {b['success']:.2f} | {a['psnr_src']:.1f} / {b['psnr_src']:.1f} |")
    inp = [r for r in rows if r["family"].startswith("inpaint")]
    if inp:
        L += ["", "## Text-guided inpainting of the right half (shape in the right half, target prompt)", "",
              "| method | success | retention | kept-half PSNR | PSNR to truth |", "|---|---|---|---|---|"]
        L += [f"| {r['label']} | {r['success']:.2f} | {r['retention']:.2f} | {r['psnr_kept']:.1f} | {r['psnr_truth']:.1f} |"
              for r in inp]
    L += ["", "## Timings", "", "| family | seconds (all pairs) |", "|---|---|"]
    L += [f"| {k} | {v:.1f} |" for k, v in res["timings"].items()]
    L += ["", "![success vs fidelity](quality.png)", "", "![before / after](quality_grid.png)", ""]
    (out / "QUALITY.md").write_text("\n".join(L))
    clean = {k: v for k, v in res.items() if not k.startswith("_")}
    (out / "quality.json").write_text(json.dumps(clean, indent=1, default=float))
    plot(res, curves, fids, out / "quality.png")
    picture_grid(res, curves, fids, out / "quality_grid.png")


def plot(res, curves, fids, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 6))
    for name, rs in curves.items():
        pts = sorted((r["psnr_src"], r["success"]) for r in rs)
        style = "-o" if name.startswith("CFG Edit") else "--s"
        ax.plot([p for p, _ in pts], [s for _, s in pts], style, ms=4, label=name,
                color=plt.cm.tab20(len(ax.lines) % 20))
    ref = res["reference"]
    for k, m in (("truth", "*"), ("replace", "X")):
        ax.plot(ref[k]["psnr_src"], ref[k]["success"], m, ms=14, color="k",
                label={"truth": "ground-truth edit", "replace": "unrelated real target sample"}[k])
    for f in fids:
        ax.axvline(f, color="grey", lw=0.5)
    ax.set_xlabel("PSNR to the source (dB)  →  more faithful")
    ax.set_ylabel("target success (judge)")
    ax.set_title("Editing on a learned model: success vs fidelity")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def picture_grid(res, curves, fids, path, per_pair=4, zoom=4):
    """Rows: the first sources of each pair; columns: source, ground truth, each method at its best
    point at the first stated fidelity, then the inpainting source and each inpainting method."""
    from PIL import Image, ImageDraw
    cols = [("source", "x"), ("ground truth", "truth")]
    for name, rs in curves.items():
        if name.startswith("CFG Edit") and ("refine" in name or "50 st" in name):
            continue
        b = best_at(rs, fids[0])
        if b is not None:
            cols.append((f"{b['label']} ({b['psnr_src']:.0f} dB)", b))
    cols.append(("inpaint source", "xi"))
    cols += [(r["label"], r) for r in res["results"] if r["family"].startswith("inpaint")]
    index = {}
    for r in res["results"]:
        index.setdefault(r["family"], []).append(r)
    tile, head = S.SIZE * zoom, 70
    im = Image.new("RGB", (tile * len(cols) + 2 * len(cols), head + tile * per_pair * len(res["pairs"])), "white")
    d = ImageDraw.Draw(im)
    for ci, (name, r) in enumerate(cols):
        x0 = ci * (tile + 2)
        for li, chunk in enumerate([name[j:j + 10] for j in range(0, len(name), 10)][:6]):
            d.text((x0 + 1, 2 + 11 * li), chunk, fill=(0, 0, 0))
        for pi in range(len(res["pairs"])):
            for k in range(per_pair):
                if isinstance(r, str):
                    x = res["_data"][pi][r][k]
                else:
                    x = res["_latents"][(r["family"], index[r["family"]].index(r), pi)][k]
                arr = (S.to_unit(x).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                im.paste(Image.fromarray(arr).resize((tile, tile), Image.NEAREST),
                         (x0, head + (pi * per_pair + k) * tile))
    im.save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny grid (the CI test's size)")
    ap.add_argument("--retrain", action="store_true", help="retrain the model and the judge (bench/weights)")
    ap.add_argument("--n", type=int, default=32, help="held-out sources per class pair")
    ap.add_argument("--out", type=Path, default=REPO / "bench")
    ap.add_argument("--family", action="append", help="only these method families (default: all)")
    args = ap.parse_args()
    if args.retrain:
        S.trained_judge(retrain=True)
        S.trained_unet(retrain=True)
    res = run_benchmark(quick=args.quick, n=args.n, families=args.family)
    cmd = "python -m bench.bench_quality" + (" --quick" if args.quick else "") + (f" --n {args.n}" if args.n != 32 else "")
    write_report(res, args.out, cmd)
    print(f"wrote {args.out / 'QUALITY.md'} ({res['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
