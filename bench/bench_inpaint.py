"""Text-guided inpainting on a learned model (issue 26): Dream Mask Inpaint (every preset and
strength, and new configurations) vs core noise-mask inpainting (SetLatentNoiseMask + KSampler over
its cfg range), Differential Diffusion with a soft (feathered) mask, and LanPaint (the test-only
node tests/support/lanpaint_nodes, written from the paper), through a real ComfyUI server and /prompt.

    python -m bench.bench_inpaint [--n 32] [--family dream --family core ...] [--out bench]
    python -m bench.bench_inpaint --flow [--n 32] [--family f_core ...]   # the rectified-flow model
    python -m bench.bench_inpaint --flow --n 96 --family f_confirm       # its finalists, seeds 0 and 1

Model, data and judge as bench.bench_quality's inpainting (tools/shapes.py: 16x16 shapes in the
right half, the right half repainted with the target class's prompt; latent = pixels through
ComfyUI's pixel-space VAE).  Per setting: success (the judge on the whole picture says the target
class), retention (it still says the source class), the kept (left) half's PSNR to the source
(latent; pixels are the latent here), PSNR to the ground-truth counterfactual, and model rows per
inpaint counted through a model wrapper (TestRowCounter) on one picture.  Writes INPAINTING.md and
inpainting.json.

``--flow``: the same task, data, judge and scoring on the rectified-flow shapes model as
bench.bench_quality's flow table builds it (TestShapesFlowModel through core ModelSamplingSD3 shift 3,
scheduler `simple`, 28 steps): core noise-mask inpainting, LanPaint, Dream Mask Inpaint after Dream
DDIM Inversion with 3 refinement steps, and Dream Distill Edit with the hole as its mask (the source
class as its source prompt); ``--family`` merges with the families already in inpainting_flow.json.
Writes INPAINTING_FLOW.md (its hand-written '## Findings' kept) and inpainting_flow.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench import bench_quality as Q
from tools import shapes as S
from tools.host import REPO

LANPAINT_NODES = REPO / "tests" / "support" / "lanpaint_nodes"
STEPS = 20


def grids() -> dict:
    g = {}
    g["dream"] = [dict(preset=p, steps=STEPS, strength=s, hole=h) for h in ("source", "grey")
                  for p in ("paper", "restore", "project") for s in (1.0, 2.0, 4.0)]
    g["core"] = [dict(cfg=c, steps=STEPS) for c in (1.0, 3.0, 5.0, 7.5)]
    g["diffdiff"] = [dict(cfg=c, steps=STEPS, feather=f) for c in (3.0, 7.5) for f in (2, 4)]
    g["lanpaint"] = [dict(cfg=c, steps=STEPS, n=5) for c in (1.0, 3.0, 5.0, 7.5)]
    g["lanpaint"] += [dict(cfg=5.0, steps=STEPS, n=n) for n in (2, 10)]
    g["lanpaint"] += [dict(cfg=5.0, steps=STEPS, n=5, mode="Prompt First")]
    g["dreamx"] = [dict(name=f"from noise, {pr} strength {s:g}" + (", eta 1" if e else ""), steps=STEPS, preset=pr,
                        strength=s, eta=e) for pr, e in (("restore", 1.0), ("paper", 0.0)) for s in (2.0, 4.0)]
    g["dreamx"] += [dict(name="from noise, target base cfg 3, restore strength 1, eta 1", steps=STEPS,
                         preset="restore", strength=1.0, eta=1.0, base="tgt", cfg=3.0)]
    g["dreamx"] += [dict(name=f"grey hole, paper strength {s:g}" + (f", {st} steps" if st != STEPS else ""),
                         steps=st, preset="paper", strength=s, invert="grey") for s, st in ((3.0, 20), (2.0, 50))]
    g["dreamx"] += [dict(name="from noise, restore strength 3, eta 1", steps=STEPS, preset="restore", strength=3.0,
                         eta=1.0),
                    dict(name="from noise, restore strength 2, eta 0.5", steps=STEPS, preset="restore", strength=2.0,
                         eta=0.5),
                    dict(name="grey hole, restore strength 2, eta 1", steps=STEPS, preset="restore", strength=2.0,
                         eta=1.0, invert="grey"),
                    dict(name="grey hole, paper strength 2, eta 0.5", steps=STEPS, preset="paper", strength=2.0,
                         eta=0.5, invert="grey")]
    # the best of each method on more sources (96 per pair)
    g["confirm"] = [dict(of="core", cfg=7.5, steps=STEPS), dict(of="diffdiff", cfg=3.0, steps=STEPS, feather=2),
                    dict(of="lanpaint", cfg=5.0, steps=STEPS, n=5, mode="Prompt First"),
                    dict(of="lanpaint", cfg=3.0, steps=STEPS, n=5),
                    dict(of="dream", preset="paper", steps=STEPS, strength=2.0, hole="grey"),
                    dict(of="dreamx", name="from noise, restore strength 3, eta 1", steps=STEPS, preset="restore",
                         strength=3.0, eta=1.0)]
    # the finalists again with another noise seed (96 sources per pair)
    g["seed1"] = [dict(of="core", cfg=7.5, steps=STEPS, seed=1),
                  dict(of="lanpaint", cfg=3.0, steps=STEPS, n=5, seed=1),
                  dict(of="lanpaint", cfg=5.0, steps=STEPS, n=5, mode="Prompt First", seed=1),
                  dict(of="dreamx", name="grey hole, paper strength 2", steps=STEPS, preset="paper", strength=2.0,
                       invert="grey", seed=1)]
    # more Dream candidates on the finalists' sources, both seeds (chosen after seeing the grids above)
    g["search2"] = [dict(of="dreamx", name=f"grey hole, {pr} strength {st:g}" + (", eta 1" if e else ""),
                         steps=STEPS, preset=pr, strength=st, eta=e, invert="grey", seed=sd)
                    for pr, st, e in (("paper", 2.5, 0.0), ("paper", 3.0, 0.0), ("restore", 2.0, 1.0))
                    for sd in (0, 1)]
    g["search2"] += [dict(of="dreamx", name="from noise, restore strength 2, eta 1", steps=STEPS, preset="restore",
                          strength=2.0, eta=1.0, seed=sd) for sd in (0, 1)]
    # the finalists and the flow model's recipe (eta 1, resample 1) with the hole judge, three noise seeds
    final = [dict(of="core", cfg=7.5, steps=STEPS), dict(of="lanpaint", cfg=3.0, steps=STEPS, n=5),
             dict(of="lanpaint", cfg=5.0, steps=STEPS, n=5, mode="Prompt First"),
             dict(of="dreamx", name="grey hole, paper strength 2", steps=STEPS, preset="paper", strength=2.0,
                  invert="grey")]
    final += [dict(of="dreamx", name="from noise, restore strength 3, eta 1" + (f", resample {r}" if r else ""),
                   steps=STEPS, preset="restore", strength=3.0, eta=1.0, resample=r) for r in (0, 1)]
    g["confirm3"] = [dict(f, seed=sd) for f in final for sd in CONFIRM_SEEDS]
    return g


#: the flow model's recipe (bench_quality's flow table)
FLOW_STEPS, FLOW_SCHED = Q.FLOW_STEPS, Q.FLOW_SCHED
FLOW_REFINE = 3                 # Dream DDIM Inversion's refinement steps on the flow model


CONFIRM_SEEDS = (0, 1, 2)


def recipe_name(resample: int, eta: float, how: str = "the hole's prompt as positive") -> str:
    """The from-noise Dream Mask Inpaint settings' labels."""
    return (f"from noise, {how}, eta {eta:g}" + (f", resample {resample}" if resample else ""))


def flow_grids() -> dict:
    """family -> settings on the rectified-flow model (28 steps, `simple`)."""
    st = FLOW_STEPS
    g = {"f_core": [dict(cfg=c, steps=st) for c in (1.0, 2.0, 3.0, 5.0)]}
    g["f_lanpaint"] = [dict(cfg=c, steps=st, n=5) for c in (1.0, 3.0, 5.0)]
    g["f_lanpaint"] += [dict(cfg=3.0, steps=st, n=n) for n in (2, 10)]
    g["f_lanpaint"] += [dict(cfg=5.0, steps=st, n=5, mode="Prompt First")]
    g["f_dream"] = [dict(preset=pr, steps=st, strength=s, refine=FLOW_REFINE, hole=h) for h in ("source", "grey")
                    for pr in ("paper", "restore") for s in (1.0, 2.0, 4.0)]
    g["f_distill"] = [dict(steps=st, start=a, cfg=2.5, strength=s, fidelity=1.3) for s in (1.0, 1.5)
                      for a in (0.5, 0.75, 1.0)]
    g["f_distill"] += [dict(steps=st, start=a, cfg=1.0, strength=1.5, fidelity=1.0) for a in (0.5, 0.75, 1.0)]
    # core with its stochastic samplers and a negative prompt, LanPaint with a negative (what a user may try)
    g["f_core"] += [dict(cfg=1.0, steps=st, sampler=sa) for sa in ("euler_ancestral", "dpmpp_sde")]
    g["f_core"] += [dict(cfg=2.0, steps=st, sampler="dpmpp_sde"), dict(cfg=2.0, steps=st, sampler="dpmpp_sde", neg="src_c")]
    g["f_lanpaint"] += [dict(cfg=3.0, steps=st, n=5, neg="src_c")]
    # Dream Mask Inpaint from noise (no inversion; the hole's prompt as DreamSampler's positive, the
    # mask term keeping the rest) with fresh noise (eta) and resampling, and after a plain inversion
    g["f_dreamx"] = [dict(name=recipe_name(r, e), steps=st, preset="restore", strength=1.0, base="tgt",
                          mask_target=False, eta=e, resample=r) for e, r in ((1.0, 0), (1.0, 1), (1.0, 3), (0.5, 0))]
    g["f_dreamx"] += [dict(name=recipe_name(r, 1.0, "target strength 1.25 in the hole, null positive"), steps=st,
                           preset="restore", strength=1.25, eta=1.0, resample=r) for r in (0, 1)]
    g["f_dreamx"] += [dict(name=recipe_name(0, 1.0, "cfg 2 against the source prompt"), steps=st, preset="restore",
                           strength=1.0, base="tgt", mask_target=False, eta=1.0, cfg=2.0, neg="src_c"),
                      dict(name="after a plain inversion (refine 0), paper strength 1", steps=st, preset="paper",
                           strength=1.0, invert=True)]
    # the best of each method on the 32-per-pair grid (chosen after seeing it), on more sources (run with
    # --n 96) and two noise seeds; not in the default families
    best = [dict(of="f_core", cfg=2.0, steps=st), dict(of="f_core", cfg=1.0, steps=st, sampler="dpmpp_sde"),
            dict(of="f_lanpaint", cfg=1.0, steps=st, n=5),
            dict(of="f_dream", preset="paper", steps=st, strength=1.0, refine=FLOW_REFINE, hole="source"),
            dict(of="f_dreamx", name="after a plain inversion (refine 0), paper strength 1", steps=st,
                 preset="paper", strength=1.0, invert=True)]
    best += [dict(of="f_dreamx", name=recipe_name(r, 1.0), steps=st, preset="restore", strength=1.0, base="tgt",
                  mask_target=False, eta=1.0, resample=r) for r in (0, 1)]
    best += [dict(of="f_distill", steps=st, start=0.75, cfg=2.5, strength=1.5, fidelity=1.3)]
    g["f_confirm"] = [dict(b, seed=sd) for b in best for sd in CONFIRM_SEEDS]
    return g


def label(family: str, p: dict) -> str:
    if family.startswith("f_"):
        return flow_label(family, p)
    if family in ("confirm", "seed1", "search2", "confirm3"):
        return label(p["of"], p) + (f" (seed {p['seed']})" if p.get("seed") else "")
    if family == "dream":
        return f"Dream Mask Inpaint {p['preset']} strength {p['strength']:g}" + (
            " grey hole" if p.get("hole") == "grey" else "")
    if family == "dreamx":
        return p["name"]
    if family == "core":
        return f"core noise mask cfg {p['cfg']:g}"
    if family == "diffdiff":
        return f"Differential Diffusion feather {p['feather']} cfg {p['cfg']:g}"
    if family == "lanpaint":
        return f"LanPaint N={p['n']} cfg {p['cfg']:g}" + (f" {p['mode']}" if p.get("mode") else "")
    raise KeyError(family)


def _mask(g):
    """The right-half hole (1 = repaint), the same node bench_quality builds (memo key 'mask')."""
    return g.once("mask", "MaskComposite",
                  destination=[g.once("m0", "SolidMask", value=0.0, width=S.SIZE, height=S.SIZE), 0],
                  source=[g.once("m1", "SolidMask", value=1.0, width=S.SIZE // 2, height=S.SIZE), 0],
                  x=S.SIZE // 2, y=0, operation="add")


def _soft_mask(g, mask, f: int):
    """The hole with a linear ramp over its first f columns (values k / (f + 1), k = 1 ... f), so
    the kept half stays 0: Differential Diffusion's soft edge inside the hole."""
    out = mask
    for k in range(f):
        col = g.once(("ramp", k, f), "SolidMask", value=(k + 1) / (f + 1), width=1, height=S.SIZE)
        out = g.once(("soft", k, f), "MaskComposite", destination=[out, 0], source=[col, 0], x=S.SIZE // 2 + k,
                     y=0, operation="multiply")
    return out


def flow_label(family: str, p: dict) -> str:
    if family == "f_confirm":
        return flow_label(p["of"], p) + f" (seed {p.get('seed', 0)})"
    if family == "f_dreamx":
        return p["name"]
    vs = " vs the source prompt" if p.get("neg") == "src_c" else ""
    if family == "f_core":
        return (f"core noise mask cfg {p['cfg']:g}" + (f" {p['sampler']}" if p.get("sampler", "euler") != "euler" else "")
                + vs)
    if family == "f_lanpaint":
        return label("lanpaint", p) + vs
    if family == "f_dream":
        return label("dream", p) + (f", refine {p['refine']}" if p.get("refine") != FLOW_REFINE else "")
    if family == "f_distill":
        return (f"Dream Distill Edit start {p['start']:g} strength {p['strength']:g} fidelity {p['fidelity']:g}"
                + (f" cfg {p['cfg']:g} vs source" if p["cfg"] != 1 else " cfg 1"))
    raise KeyError(family)


def flow_pair_graph(src: int, tgt: int, n: int):
    """bench_quality's flow graph (ModelSamplingSD3(TestShapesFlowModel, shift 3)) on the inpainting
    split (the shape in the right half)."""
    g, r = Q.flow_pair_graph(src, tgt, n)
    g.nodes[r["x"][0]]["inputs"]["split"] = "inpaint"
    return g, r


def pair_graph(src: int, tgt: int, n: int, flow: bool = False):
    return flow_pair_graph(src, tgt, n) if flow else Q.pair_graph(src, tgt, n, "inpaint")


def build_flow(family: str, p: dict, g, r):
    """One flow setting's nodes (scheduler `simple`); returns the inpainted latent's reference."""
    if family == "f_confirm":
        return build_flow(p["of"], p, g, r)
    mask = _mask(g)
    st, m = p["steps"], r["model"]
    if family == "f_core":
        masked = g.once("noisemask", "SetLatentNoiseMask", samples=r["x"], mask=[mask, 0])
        return [g.add("KSampler", model=m, seed=p.get("seed", 0), steps=st, cfg=p["cfg"],
                      sampler_name=p.get("sampler", "euler"), scheduler=FLOW_SCHED, positive=r["tgt_c"],
                      negative=r[p.get("neg", "null")], latent_image=[masked, 0],
                      denoise=1.0), 0]
    if family == "f_lanpaint":
        masked = g.once("noisemask", "SetLatentNoiseMask", samples=r["x"], mask=[mask, 0])
        return [g.add("TestLanPaintKSampler", model=m, seed=p.get("seed", 0), steps=st, cfg=p["cfg"],
                      sampler_name="euler", scheduler=FLOW_SCHED, positive=r["tgt_c"], negative=r[p.get("neg", "null")],
                      latent_image=[masked, 0], thinking_steps=p["n"], lam=p.get("lam", 5.0),
                      step_size=p.get("step_size", 0.2), beta=1.0, prompt_mode=p.get("mode", "Image First"),
                      early_stop=1), 0]
    if family == "f_dream":                  # as bench_quality's inpaint_dream, on the flow grid with refinement
        source, key = r["x"], "x"
        if p.get("hole") == "grey":          # the official structure: the hole removed (grey) before inversion
            vae, img = Q._pixel_vae(g, r)
            deg = g.once("hole", "DreamDegrade", image=[img, 0], operator="inpainting", scale=4, blur_sigma=3.0,
                         kernel_size=0, motion_angle=0.0, sigma_y=0.0, seed=0, mask=[mask, 0])
            source, key = [g.once("grey", "VAEEncode", pixels=[deg, 2], vae=[vae, 0]), 0], "grey"
        refine = p.get("refine", FLOW_REFINE)
        inv = g.once(("finv", st, refine, key), "DreamDDIMInversion", model=m, conditioning=r["null"],
                     latent_image=source, steps=st, scheduler=FLOW_SCHED, denoise=1.0, refine_steps=refine)
        reg = g.add("DreamMaskInpaint", mask=[mask, 0], strength=p["strength"], preset=p["preset"], feather=0,
                    overlap="average", keep=1.0, target=r["tgt_c"], source=source)
        return [g.add("DreamSampler", model=m, seed=p.get("seed", 0), steps=st, cfg=1.0, scheduler=FLOW_SCHED,
                      positive=r["null"], negative=r["null"], latent_image=[inv, 0], denoise=1.0, eta=0.0,
                      eta_schedule="constant", regularizers=[reg, 0]), 0]
    if family == "f_dreamx":                 # Dream Mask Inpaint from noise or a plain inversion, with eta
        start = r["x"]
        if p.get("invert"):
            start = [g.once(("finv", st, p.get("refine", 0), "x"), "DreamDDIMInversion", model=m,
                            conditioning=r["null"], latent_image=r["x"], steps=st, scheduler=FLOW_SCHED,
                            denoise=1.0, refine_steps=p.get("refine", 0)), 0]
        tgt = dict(target=r["tgt_c"]) if p.get("mask_target", True) else {}
        reg = g.add("DreamMaskInpaint", mask=[mask, 0], strength=p["strength"], preset=p["preset"], feather=0,
                    overlap="average", keep=1.0, source=r["x"], **tgt)
        base = r["tgt_c"] if p.get("base") == "tgt" else r["null"]
        return [g.add("DreamSampler", model=m, seed=p.get("seed", 0), steps=st, cfg=p.get("cfg", 1.0),
                      scheduler=FLOW_SCHED, positive=base, negative=r[p.get("neg", "null")], latent_image=start, denoise=1.0,
                      eta=p.get("eta", 0.0), eta_schedule=p.get("eta_schedule", "constant"),
                      regularizers=[reg, 0], resample=p.get("resample", 0)), 0]
    if family == "f_distill":                # the hole as the mask (1 = may change), negative unconnected
        return [g.add("DreamDistillEdit", model=m, source=r["src_c"], target=r["tgt_c"], latent_image=r["x"],
                      seed=p.get("seed", 0), steps=st, scheduler=FLOW_SCHED, start=p["start"],
                      strength=p["strength"], fidelity=p["fidelity"], cfg=p["cfg"], source_cfg=1.0,
                      mask=[mask, 0]), 0]
    raise KeyError(family)


def build(family: str, p: dict, g, r):
    if family.startswith("f_"):
        return build_flow(family, p, g, r)
    if family in ("confirm", "seed1", "search2", "confirm3"):
        return build(p["of"], p, g, r)
    if family == "dream":
        return Q.build("inpaint_dream", dict(p, hole=p.get("hole") if p.get("hole") == "grey" else None), g, r)
    if family == "core" and p.get("seed", 0):
        masked = g.once("noisemask", "SetLatentNoiseMask", samples=r["x"], mask=[_mask(g), 0])
        return [g.add("KSampler", model=r["model"], seed=p["seed"], steps=p["steps"], cfg=p["cfg"], sampler_name="euler",
                      scheduler=Q.SCHED, positive=r["tgt_c"], negative=r["null"], latent_image=[masked, 0],
                      denoise=1.0), 0]
    if family == "core":
        return Q.build("inpaint_core", p, g, r)
    mask = _mask(g)
    if family == "diffdiff":
        soft = _soft_mask(g, mask, p["feather"])
        model = g.once("dd", "DifferentialDiffusion", model=r["model"], strength=1.0)
        masked = g.once(("ddmask", p["feather"]), "SetLatentNoiseMask", samples=r["x"], mask=[soft, 0])
        return [g.add("KSampler", model=[model, 0], seed=0, steps=p["steps"], cfg=p["cfg"], sampler_name="euler",
                      scheduler=Q.SCHED, positive=r["tgt_c"], negative=r["null"], latent_image=[masked, 0],
                      denoise=1.0), 0]
    if family == "lanpaint":
        masked = g.once("noisemask", "SetLatentNoiseMask", samples=r["x"], mask=[mask, 0])
        return [g.add("TestLanPaintKSampler", model=r["model"], seed=p.get("seed", 0), steps=p["steps"], cfg=p["cfg"],
                      sampler_name="euler", scheduler=Q.SCHED, positive=r["tgt_c"], negative=r["null"],
                      latent_image=[masked, 0], thinking_steps=p["n"], lam=p.get("lam", 5.0),
                      step_size=p.get("step_size", 0.2), beta=1.0, prompt_mode=p.get("mode", "Image First"),
                      early_stop=1), 0]
    if family == "dreamx":
        return build_dreamx(p, g, r, mask)
    raise KeyError(family)


def build_dreamx(p: dict, g, r, mask):
    """New Dream Mask Inpaint configurations: DreamSampler from noise (no inversion) or from the
    inverted source, base prompt / cfg, fresh noise eta, the mask term's preset and strength."""
    start = r["x"]
    if p.get("invert") == "grey":                # the hole removed (grey) before the inversion, as bench_quality
        vae, img = Q._pixel_vae(g, r)
        deg = g.once("hole", "DreamDegrade", image=[img, 0], operator="inpainting", scale=4, blur_sigma=3.0,
                     kernel_size=0, motion_angle=0.0, sigma_y=0.0, seed=0, mask=[mask, 0])
        grey = [g.once("grey", "VAEEncode", pixels=[deg, 2], vae=[vae, 0]), 0]
        start = [Q._inversion(g, r, p["steps"], 0, latent=grey, key="grey"), 0]
    elif p.get("invert"):
        start = [Q._inversion(g, r, p["steps"], 0), 0]
    else:
        start = [g.once("noisemask", "SetLatentNoiseMask", samples=r["x"], mask=[mask, 0]), 0] \
            if p.get("noise_mask") else r["x"]
    reg = g.add("DreamMaskInpaint", mask=[mask, 0], strength=p["strength"], preset=p["preset"], feather=0,
                overlap="average", keep=1.0, target=r["tgt_c"], source=r["x"])
    base = r["tgt_c"] if p.get("base") == "tgt" else r["null"]
    return [g.add("DreamSampler", model=r["model"], seed=p.get("seed", 0), steps=p["steps"], cfg=p.get("cfg", 1.0),
                  scheduler=Q.SCHED, positive=base, negative=r["null"], latent_image=start, denoise=1.0,
                  eta=p.get("eta", 0.0), eta_schedule=p.get("eta_schedule", "constant"), regularizers=[reg, 0],
                  resample=p.get("resample", 0)), 0]


def count_rows(server, family, p, pair, flow=False) -> float:
    """Model rows per inpainted picture: the setting's graph on one picture under a row counter."""
    src, tgt = pair
    g, r = pair_graph(src, tgt, 1, flow)
    tag = f"{family}-{time.time_ns()}"
    r["model"] = [g.add("TestRowCounter", model=r["model"], tag=tag), 0]
    out = build(family, p, g, r)
    g.save([g.add("TestRowCount", samples=out, tag=tag), 0], "rows")
    lat = Q.fetch_latents(server, server.run(g.nodes, timeout=600), g.saves)
    return float(lat["rows"].reshape(-1)[0])


def score(judge, out, sources, src, tgt, truth, keep) -> dict:
    """bench_quality's scores of the whole picture, plus the hole alone: ``success_hole`` is the judge
    on the picture whose kept half is the ground-truth counterfactual's, so what the source left in
    the kept half (on this split sometimes a boundary pixel of the source's shape, which can flip the
    whole-picture judge) does not count; only the hole's content decides."""
    d = Q.score(judge, out, sources, src, tgt, truth, keep)
    hole_only = out * (1.0 - keep) + truth * keep
    with torch.no_grad():
        d["success_hole"] = float((judge(hole_only.clamp(-1, 1)).argmax(1) == tgt).float().mean())
    return d


def run(families, n=32, pairs=Q.PAIRS, extra=None, log=print, server_dir=None, flow=False) -> dict:
    """``flow``: the rectified-flow model (flow_grids' families, f_*); else the eps model."""
    from tools.server import ComfyServer
    torch.set_num_threads(1)
    judge = S.trained_judge(log=log)
    if flow:
        S.trained_flow_unet(log=log)
    else:
        S.trained_unet(log=log)
    acc = S.judge_accuracy(judge)
    G = flow_grids() if flow else grids()
    if extra:
        G.update(extra)
    data = Q.inputs_for(pairs, n)
    keep = torch.zeros(S.SIZE, S.SIZE)
    keep[:, : S.SIZE // 2] = 1
    results, timings = [], {}
    t_all = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        with ComfyServer(Path(server_dir or tmp) / "server", custom_nodes=[Q.NODES, LANPAINT_NODES],
                         env={"OMP_NUM_THREADS": "1"}) as server:
            for fam in families:
                t = time.time()
                settings = G[fam]
                lat = {}
                for pi, (src, tgt) in enumerate(pairs):
                    g, r = pair_graph(src, tgt, n, flow)
                    for si, p in enumerate(settings):
                        g.save(build(fam, p, g, r), f"{fam}-{pi}-{si}")
                    out = Q.fetch_latents(server, server.run(g.nodes, timeout=3600), g.saves)
                    for key, x in out.items():
                        _, a, b = key.rsplit("-", 2)
                        lat[(int(a), int(b))] = x
                for si, p in enumerate(settings):
                    rows = [score(judge, lat[(pi, si)], data[pi]["xi"], src, tgt, data[pi]["truth_i"], keep)
                            for pi, (src, tgt) in enumerate(pairs)]
                    agg = Q.aggregate(rows)
                    agg["model_rows"] = count_rows(server, fam, p, pairs[0], flow)
                    results.append({"family": fam, "params": p, "label": label(fam, p), "n": n, **agg,
                                    "per_pair": rows})
                    if log:
                        log(f"  {label(fam, p)}: success {agg['success']:.3f} kept {agg['psnr_kept']:.1f} dB "
                            f"truth {agg['psnr_truth']:.1f} dB rows {agg['model_rows']:g}")
                timings[fam] = time.time() - t
                if log:
                    log(f"{fam}: {len(settings)} settings in {timings[fam]:.0f} s")
    return {"judge_accuracy": acc, "n": n, "model": "flow" if flow else "eps", "timings": timings, "pairs": [[S.CLASSES[a], S.CLASSES[b]] for a, b in pairs],
            "results": results, "total_s": time.time() - t_all}


def _hole(r) -> str:
    return f"{r['success_hole']:.2f}" if "success_hole" in r else "–"


def table(rows) -> list:
    L = ["| method | success (whole picture) | hole success | retention | kept-half PSNR (dB) | PSNR to truth (dB) "
         "| model rows / inpaint | sources |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['label']} | {r['success']:.2f} | {_hole(r)} | {r['retention']:.2f} | "
                 f"{min(r['psnr_kept'], 100):.1f} | {r['psnr_truth']:.1f} | {r['model_rows']:g} | "
                 f"{r.get('n', 32) * len(r['per_pair'])} |")
    return L


FAMILY_TITLES = {"core": "Core noise-mask inpainting (SetLatentNoiseMask + KSampler euler, target vs null prompt)",
                 "diffdiff": "Core Differential Diffusion (soft hole: a linear ramp over its first columns)",
                 "lanpaint": "LanPaint (test-only node from the paper; lambda 5, step 0.2, beta 1, euler)",
                 "dream": "Dream Mask Inpaint: every preset and strength (null-text inversion + DreamSampler, 20 steps)",
                 "dreamx": "Dream Mask Inpaint: new configurations (issue 26)",
                 "confirm": "Confirmation on more sources (seed 0)",
                 "seed1": "The finalists with another noise seed (seed 1)",
                 "search2": "More Dream candidates on 96 sources per pair, seeds 0 and 1"}


def write_report(res: dict, path: Path, cmd: str):
    """INPAINTING.md: the kept hand-written '## Findings' section, then one table per family."""
    L = ["# Text-guided inpainting on a learned model (issue 26)", "",
         f"Generated by `{cmd}` (bench/bench_inpaint.py; numbers in inpainting.json). Model, sources, hole and judge "
         "as bench/QUALITY.md's inpainting: the shapes eps UNet (tools/shapes.py), held-out 16x16 sources with the "
         "shape in the right half, the right half repainted with the target class's prompt, "
         f"{len(res['pairs'])} class pairs ({', '.join(a + ' -> ' + b for a, b in res['pairs'])}), 32 or 96 "
         "held-out sources per pair (the tables' last column: all pairs together), 20 steps, ddim_uniform, noise "
         "seed 0 unless said, through a real ComfyUI server. **success**: the judge (accuracy on held-out real "
         f"samples {res['judge_accuracy']:.4f}) says the target class on the whole picture; **hole success**: the "
         "judge on the picture whose kept half is the ground truth's (the hole alone decides; '–' where a run "
         "predates it); retention: it still says the source class; kept-half PSNR: the left half vs the source (latent = pixels here, ComfyUI's pixel-space "
         "VAE; 100 = exact); PSNR to truth: vs the ground-truth counterfactual; model rows: batch rows through the "
         "model per inpainted picture, counted by a model wrapper.", ""]
    L += Q.findings(path)
    L += confirm_section(res["results"], family="confirm3", label=lambda p: label(p["of"], p))
    for fam, title in FAMILY_TITLES.items():
        rows = [r for r in res["results"] if r["family"] == fam]
        if rows:
            L += [f"## {title}", ""] + table(rows) + [""]
    path.write_text("\n".join(L))


FLOW_TITLES = {"f_core": "Core noise-mask inpainting (SetLatentNoiseMask + KSampler euler, `simple`, target vs null "
                         "prompt)",
               "f_lanpaint": "LanPaint (test-only node from the paper; lambda 5, step 0.2, beta 1, euler, `simple`)",
               "f_dream": "Dream Mask Inpaint (Dream DDIM Inversion with 3 refinement steps + DreamSampler, null base, "
                          "cfg 1)",
               "f_distill": "Dream Distill Edit with the hole as its mask (source prompt = the source class; negative "
                            "unconnected)",
               "f_dreamx": "Dream Mask Inpaint from noise (DreamSampler eta, resample; no inversion) or after a "
                           "plain inversion",
               "f_confirm": "The best of each method on more sources, noise seeds " + ", ".join(map(str, CONFIRM_SEEDS))}
FLOW_METHODS = {"f_core": "core noise mask", "f_lanpaint": "LanPaint", "f_dream": "Dream Mask Inpaint",
                "f_dreamx": "Dream Mask Inpaint (from noise)", "f_distill": "Dream Distill Edit"}


def best_section(rows) -> list:
    """Per method, its best setting by hole success among those that keep the left half (>= 60 dB)."""
    L = ["## Best setting per method (kept-half PSNR ≥ 60 dB, i.e. kept exactly; by hole success)", "",
         "| method | best setting | success (whole picture) | hole success | retention | kept-half PSNR (dB) | "
         "PSNR to truth (dB) | model rows / inpaint | sources |", "|---|---|---|---|---|---|---|---|---|"]
    for fam, name in FLOW_METHODS.items():
        rs = [r for r in rows if r["family"] == fam and r["psnr_kept"] >= 60]
        if rs:
            b = max(rs, key=lambda r: (r.get("success_hole", 0.0), r["success"], r["psnr_truth"]))
            L.append(f"| {name} | {b['label']} | {b['success']:.2f} | {_hole(b)} | {b['retention']:.2f} | "
                     f"{min(b['psnr_kept'], 100):.1f} | {b['psnr_truth']:.1f} | {b['model_rows']:g} | "
                     f"{b['n'] * len(b['per_pair'])} |")
    return L + [""]


def confirm_section(rows, family="f_confirm", label=None) -> list:
    """The confirmation settings, their seeds pooled (the mean), with success per class pair."""
    label = label or (lambda p: flow_label(p["of"], p))
    groups = {}
    for r in rows:
        if r["family"] == family:
            p = {k: v for k, v in r["params"].items() if k != "seed"}
            groups.setdefault(json.dumps(p, sort_keys=True), []).append(r)
    if not groups:
        return []
    pairs = len(next(iter(groups.values()))[0]["per_pair"])
    seeds = sorted({r["params"].get("seed", 0) for rs in groups.values() for r in rs})
    sl = " / ".join(f"seed {sd}" for sd in seeds)
    L = [f"## Confirmation: the best of each method on more sources, noise seeds {', '.join(map(str, seeds))} pooled",
         "", f"| method | hole success ({sl}) | success, whole picture ({sl}) | hole success per class pair (pooled) "
         "| retention | kept-half PSNR (dB) | PSNR to truth (dB) | model rows / inpaint | pictures |",
         "|---|---|---|---|---|---|---|---|---|"]
    for rs in groups.values():
        rs = sorted(rs, key=lambda r: r["params"].get("seed", 0))
        m = lambda k: sum(r.get(k, float("nan")) for r in rs) / len(rs)
        per = [sum(r["per_pair"][i].get("success_hole", float("nan")) for r in rs) / len(rs) for i in range(pairs)]
        each = lambda k: " / ".join(f"{r.get(k, float('nan')):.3f}" for r in rs)
        L.append(f"| {label(rs[0]['params'])} | **{m('success_hole'):.3f}** ({each('success_hole')}) | "
                 f"**{m('success'):.3f}** ({each('success')}) | {' / '.join(f'{v:.2f}' for v in per)} | "
                 f"{m('retention'):.2f} | {min(m('psnr_kept'), 100):.1f} | {m('psnr_truth'):.1f} | "
                 f"{rs[0]['model_rows']:g} | {sum(r['n'] * pairs for r in rs)} |")
    return L + [""]


def write_flow_report(res: dict, path: Path):
    """INPAINTING_FLOW.md: the kept hand-written '## Findings' section, the best setting per method,
    then one table per family (the eps report INPAINTING.md is not touched).  ``res['runs']``: the
    command lines that made it, with their wall times."""
    runs = res.get("runs") or [{"command": "python -m bench.bench_inpaint --flow", "total_s": res["total_s"]}]
    L = ["# Text-guided inpainting on the learned rectified-flow model (issue 26)", "",
         "Generated by " + ", then ".join(f"`{r['command']}` ({r['total_s']:.0f} s wall)" for r in runs)
         + f"; bench/bench_inpaint.py, numbers in inpainting_flow.json. **Total {sum(r['total_s'] for r in runs):.0f} "
         "s wall** (server start, graphs and scoring; per family: "
         + ", ".join(f"{k} {v:.0f} s" for k, v in res["timings"].items()) + ") on a busy 2-core machine, the "
         "ComfyUI server at one thread. Model: the shapes rectified-flow UNet (tools/shapes.py, velocity target) as "
         "bench/QUALITY.md's flow table runs it: `ModelSamplingSD3(TestShapesFlowModel, shift 3)`, scheduler "
         f"`{FLOW_SCHED}`, {FLOW_STEPS} steps. Task, data and judge as bench/INPAINTING.md (the eps model): held-out "
         "16x16 sources with the shape in the right half, the right half repainted with the target class's prompt, "
         f"{len(res['pairs'])} class pairs ({', '.join(a + ' -> ' + b for a, b in res['pairs'])}), "
         + " or ".join(str(k) for k in sorted({r["n"] for r in res["results"]}))
         + " held-out sources per pair (the tables' last column: all pairs together), noise seed 0 unless said, "
         "through a real ComfyUI server. **success**: the judge (accuracy on held-out real samples "
         f"{res['judge_accuracy']:.4f}) says the target class on the whole picture; **hole success**: the judge on "
         "the picture whose kept half is the ground truth's (the hole alone decides); retention: it still says the "
         "source class; kept-half PSNR: the left half vs the source (latent = pixels, ComfyUI's pixel-space VAE; "
         "100 = exact); PSNR to truth: vs the ground-truth counterfactual; model rows: batch rows through the model "
         "per inpainted picture, counted by a model wrapper (TestRowCounter) on one picture.", ""]
    L += Q.findings(path)
    L += best_section(res["results"]) + confirm_section(res["results"])
    for fam, title in FLOW_TITLES.items():
        rows = [r for r in res["results"] if r["family"] == fam]
        if rows:
            L += [f"## {title}", ""] + table(rows) + [""]
    path.write_text("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="sources per class pair")
    ap.add_argument("--family", action="append")
    ap.add_argument("--json", type=Path, default=None,
                    help="results (default bench/inpainting.json, or bench/inpainting_flow.json with --flow); "
                         "the report is written beside it")
    ap.add_argument("--flow", action="store_true",
                    help="the rectified-flow model (ModelSamplingSD3 shift 3, simple, 28 steps): families f_core, "
                         "f_lanpaint, f_dream, f_dreamx, f_distill; writes INPAINTING_FLOW.md / inpainting_flow.json")
    args = ap.parse_args()
    if args.flow:
        return main_flow(args)
    args.json = args.json or REPO / "bench" / "inpainting.json"
    fams = args.family or ["core", "diffdiff", "lanpaint", "dream"]
    res = run(fams, n=args.n)
    old = json.loads(args.json.read_text()) if args.json.exists() else {"results": []}
    keep = [r for r in old["results"] if r["family"] not in fams]
    res["results"] = keep + res["results"]
    args.json.write_text(json.dumps(res, indent=1))
    write_report(res, args.json.parent / "INPAINTING.md",
                 "python -m bench.bench_inpaint" + "".join(f" --family {f}" for f in fams))
    print("\n".join(table(res["results"])))
    print(f"judge accuracy {res['judge_accuracy']:.4f}; {res['total_s']:.0f} s")


def main_flow(args):
    path = args.json or REPO / "bench" / "inpainting_flow.json"
    fams = args.family or list(FLOW_METHODS)
    res = run(fams, n=args.n, flow=True)
    cmd = "python -m bench.bench_inpaint --flow" + (f" --n {args.n}" if args.n != 32 else "") + \
        "".join(f" --family {f}" for f in args.family or [])
    old = json.loads(path.read_text()) if path.exists() else {"results": [], "timings": {}}
    if args.family:             # merge with the families already there
        res["results"] = [r for r in old["results"] if r["family"] not in fams] + res["results"]
        res["timings"] = {**{k: v for k, v in old.get("timings", {}).items() if k not in fams}, **res["timings"]}
    res["runs"] = (old.get("runs", []) if args.family else []) + [{"command": cmd, "total_s": res["total_s"]}]
    path.write_text(json.dumps(res, indent=1))
    write_flow_report(res, path.parent / "INPAINTING_FLOW.md")
    print("\n".join(table(res["results"])))
    print(f"judge accuracy {res['judge_accuracy']:.4f}; {res['total_s']:.0f} s")


if __name__ == "__main__":
    main()
