"""Editing quality on a learned model, in the papers' format (issue 17): target success (a judge
classifier) against fidelity to the source (PSNR), through a real ComfyUI server and /prompt.

    python -m bench.bench_quality [--quick] [--retrain] [--n 32] [--out bench]
    python -m bench.bench_quality --flow [--quick] [--family F]   # the flow table (issue 23)

Model: tools/shapes.py (class-conditional eps UNet on 16x16 coloured shapes, 9 classes,
trained here; weights committed in bench/weights, ``--retrain`` rebuilds them, ~5 min on one core).
Latent = pixels (3 channels, [-1, 1]; the VAE inputs get ComfyUI's pixel-space VAE). Sources are held-out real samples; every source has
a ground-truth edit (same centre, size, background, target class), reported as PSNR-to-truth.
Methods: DreamSampler CFG Edit (invariant / paper, steps, refine), CycleDiffusion, Cycle-SDE vs
ODE, and core-node baselines SDEdit (KSampler denoise < 1) and the Unsampler recipe (FlipSigmas +
Euler inversion, then the target prompt); inpainting of the right half: Dream Mask Inpaint presets
vs core SetLatentNoiseMask + KSampler; restoration (x4 / x2 super-resolution, Gaussian deblurring):
DreamSampler + Dream Data Consistency vs plain SDEdit (KSampler) of the upsampled / blurred image,
through ComfyUI's own pixel-space VAE (VAELoader "pixel_space": encode / decode are the identity on
[-1, 1] pixels); SDE-Drag of the shape's centre, judged by class and centroid. Writes QUALITY.md,
quality.png, quality_restore.png, quality_grid.png, quality.json.

``--flow`` (issue 23): the rectified-flow shapes model (tools/shapes.py, velocity target) as a ComfyUI
FLOW model through ModelSamplingSD3 shift 3 + `simple`, 28 steps: the peers as test-only nodes
(tests/support/peer_nodes.py: FlowEdit, RF-Inversion, RF-Solver, FireFlow), core Unsampler / SDEdit and
the pack's Dream CFG Edit and Dream Distill Edit, with model rows per edit counted by a
wrapper on the model; rewrites only the flow block of QUALITY.md (and quality_flow.json; ``--family``
merges with the families already there).
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
#: restoration tasks: Dream Degrade / Dream Data Consistency operator widgets (16x16 sources)
RESTORE_TASKS = {"sr4": dict(operator="sr_bicubic", scale=4, blur_sigma=3.0),
                 "sr2": dict(operator="sr_bicubic", scale=2, blur_sigma=3.0),
                 "deblur": dict(operator="deblur_gauss", scale=4, blur_sigma=1.5)}
TASK_NAMES = {"sr4": "x4 SR (bicubic, 4x4 measurement)", "sr2": "x2 SR (bicubic, 8x8 measurement)",
              "deblur": "Gaussian deblurring (sigma 1.5 px)"}
EDIT_FAMILIES = ("cfg_edit", "sdedit", "unsampler", "cyclediffusion", "cycle_sde", "distill_edit")
SIGMA_Y = 0.01                  # measurement noise (the official value), [-1, 1] units
DRAG_PX = 4                     # SDE-Drag: the shape's centre is moved 4 px toward the image's middle


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
            "distill_edit": [dict(steps=8, n_max=5, strength=1.0, prox=1.3, tar_cfg=2.5, neg="src")],
            "inpaint_dream": [dict(preset=p, steps=8) for p in ("paper", "restore", "project")]
                             + [dict(preset="paper", steps=8, hole="grey")],
            "inpaint_core": [dict(cfg=3.0, steps=8)],
            "restore_dc": [dict(task=t, denoise=0.75, cfg=3.0, prompt="src", steps=8) for t in ("sr4", "deblur")],
            "restore_sdedit": [dict(task=t, denoise=0.75, cfg=3.0, prompt="src", steps=8) for t in ("sr4", "deblur")],
            "drag": [dict(t0=0.6, steps=10, cfg=3.0, radius=5, items=1)],
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
    # issue 23's inversion-free edit (Dream Distill Edit) with the flow model's settings, 20 and 28 steps
    g["distill_edit"] = [dict(steps=st, n_max=round(st * f), strength=s, prox=1.0, tar_cfg=1.0, neg="src")
                         for st in (20, 28) for s in (1.25, 1.5, 2.0) for f in (0.3, 0.45, 0.6, 0.75)]
    g["distill_edit"] += [dict(steps=20, n_max=round(20 * f), strength=s, prox=s, tar_cfg=1.0, neg="src")
                          for s in (1.5, 2.0) for f in (0.45, 0.6, 0.75)]
    # the node's defaults (the flow model's best: cfg 2.5 against the source, fidelity 1.3) at eps starts
    g["distill_edit"] += [dict(steps=20, n_max=round(20 * f), strength=1.0, prox=1.3, tar_cfg=c, neg="src")
                          for c in (2.5, 4.0) for f in (0.5, 0.75, 0.9, 1.0)]
    # the source's shape in the hole (inverted with it: an edit inside a mask) ...
    g["inpaint_dream"] = [dict(preset=p, steps=20) for p in ("paper", "restore", "project")]
    g["inpaint_dream"] += [dict(preset="restore", steps=20, strength=v) for v in (2.0, 4.0, 8.0)]
    g["inpaint_dream"] += [dict(preset="paper", steps=20, strength=v) for v in (2.0, 4.0)]
    g["inpaint_dream"] += [dict(preset="project", steps=20, strength=4.0)]
    g["inpaint_dream"] += [dict(preset=p, steps=50, strength=1.0) for p in ("restore", "paper")]
    # ... and the official structure: the hole removed (grey) before the inversion
    g["inpaint_dream"] += [dict(preset=p, steps=20, strength=v, hole="grey") for p in ("restore", "paper")
                           for v in (1.0, 2.0, 4.0)]
    g["inpaint_dream"] += [dict(preset=p, steps=50, strength=1.0, hole="grey") for p in ("restore", "paper")]
    g["inpaint_core"] = [dict(cfg=c, steps=20) for c in (1.0, 3.0, 5.0, 7.5)]
    # restoration: the same start (the upsampled / blurred image noised to `denoise`, seed 0), the same
    # prompt and sampler (DreamSampler's DDIM = KSampler's euler on this eps model); the only difference
    # is the data-consistency term. denoise 0 = the upsampled / blurred input itself.
    prompts = [dict(prompt="null", cfg=1.0), dict(prompt="src", cfg=3.0)]
    levels = (0.15, 0.3, 0.5, 0.75, 1.0)
    g["restore_dc"] = [dict(task=t, denoise=d, steps=20, **q) for t in RESTORE_TASKS for q in prompts for d in levels]
    g["restore_sdedit"] = [dict(task=t, denoise=0.0, steps=20, prompt="null", cfg=1.0) for t in RESTORE_TASKS]
    g["restore_sdedit"] += [dict(task=t, denoise=d, steps=20, **q) for t in RESTORE_TASKS for q in prompts
                            for d in levels]
    # SDE-Drag with the node's defaults (alpha 1.1, beta 0.3, cfg 3 linear ramp, step 2 px) but 20 steps
    g["drag"] = [dict(t0=t, steps=20, cfg=3.0, radius=5, items=8) for t in (0.4, 0.6, 0.8)]
    g["drag"] += [dict(t0=0.6, steps=20, cfg=3.0, radius=3, items=8)]
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
    if family == "distill_edit":
        return f"{flow_curve(family, p)} {p['steps']} st start {p['n_max'] / p['steps']:.2f}"
    if family == "inpaint_dream":
        return (f"Dream Mask Inpaint {p['preset']}" + (f" strength {p['strength']:g}" if "strength" in p else "")
                + (f" {p['steps']} st" if p["steps"] != 20 else "") + (" grey hole" if p.get("hole") == "grey" else ""))
    if family == "inpaint_core":
        return f"core noise mask cfg {p['cfg']:g}"
    if family.startswith("restore_"):
        if p["denoise"] == 0:
            return f"{p['task']} input ({'bicubic upsampling' if p['task'].startswith('sr') else 'the blurred image'})"
        name = "Data Consistency" if family == "restore_dc" else "SDEdit"
        return f"{p['task']} {name} d={p['denoise']:g} {_prompt(p)}"
    if family == "drag":
        return f"SDE-Drag t0={p['t0']:g} radius {p['radius']}"
    raise KeyError(family)


def _prompt(p: dict) -> str:
    return "null prompt" if p["prompt"] == "null" else f"source prompt cfg {p['cfg']:g}"


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
    if family == "distill_edit":
        return f"{flow_curve(family, p)} {p['steps']} st"
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
    g.src, g.n = src, n
    r = {"model": [g.add("TestShapesModel"), 0],
         "null": [g.add("TestShapesPrompt", class_index=-1), 0],
         "src_c": [g.add("TestShapesPrompt", class_index=src), 0],
         "tgt_c": [g.add("TestShapesPrompt", class_index=tgt), 0],
         "x": [g.add("TestShapesImages", split=split, class_index=src, count=n), 0]}
    return g, r


def _inversion(g, r, steps, refine, base="null", latent=None, key="x"):
    return g.once(("inv", steps, refine, base, key), "DreamDDIMInversion", model=r["model"], conditioning=r[base],
                  latent_image=latent or r["x"], steps=steps, scheduler=SCHED, denoise=1.0, refine_steps=refine)


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
    if family == "distill_edit":
        return [distill_edit_node(g, r["model"], r, p["steps"], SCHED, p), 0]
    if family == "cycle_sde":
        return [g.add("DreamCycleSDEEdit", model=r["model"], source=r["src_c"], target=r["tgt_c"],
                      negative=r["null"], latent_image=r["x"], seed=0, steps=p["steps"], scheduler=SCHED,
                      t0=p["t0"], stage2=p["stage2"], cfg=p["cfg"], source_cfg=p["cfg"]), 0]
    mask = g.once("mask", "MaskComposite", destination=[g.once("m0", "SolidMask", value=0.0, width=S.SIZE,
                                                                 height=S.SIZE), 0],
                  source=[g.once("m1", "SolidMask", value=1.0, width=S.SIZE // 2, height=S.SIZE), 0],
                  x=S.SIZE // 2, y=0, operation="add")
    if family == "inpaint_dream":
        source, key = r["x"], "x"
        if p.get("hole") == "grey":            # the official structure: the hole removed (grey) before inversion
            vae, img = _pixel_vae(g, r)
            deg = g.once("hole", "DreamDegrade", image=[img, 0], operator="inpainting", scale=4, blur_sigma=3.0,
                         kernel_size=0, motion_angle=0.0, sigma_y=0.0, seed=0, mask=[mask, 0])
            source, key = [g.once("grey", "VAEEncode", pixels=[deg, 2], vae=[vae, 0]), 0], "grey"
        inv = _inversion(g, r, p["steps"], 0, latent=source, key=key)
        reg = g.add("DreamMaskInpaint", mask=[mask, 0], strength=p.get("strength", 1.0), preset=p["preset"], feather=0,
                    overlap="average", keep=1.0, target=r["tgt_c"], source=source)
        return [_dream_sampler(g, r, [inv, 0], p["steps"], [reg, 0]), 0]
    if family == "inpaint_core":
        masked = g.once("noisemask", "SetLatentNoiseMask", samples=r["x"], mask=[mask, 0])
        return [g.add("KSampler", model=r["model"], seed=0, steps=p["steps"], cfg=p["cfg"], sampler_name="euler",
                      scheduler=SCHED, positive=r["tgt_c"], negative=r["null"], latent_image=[masked, 0],
                      denoise=1.0), 0]
    if family.startswith("restore_"):
        t = RESTORE_TASKS[p["task"]]
        vae, img = _pixel_vae(g, r)
        deg = g.once(("deg", p["task"]), "DreamDegrade", image=[img, 0], kernel_size=0, motion_angle=0.0,
                     sigma_y=SIGMA_Y, seed=0, **t)
        init = g.once(("init", p["task"]), "VAEEncode", pixels=[deg, 2], vae=[vae, 0])
        if p["denoise"] == 0:
            return [init, 0]
        pos = r["src_c"] if p["prompt"] == "src" else r["null"]
        if family == "restore_sdedit":
            return [g.add("KSampler", model=r["model"], seed=0, steps=p["steps"], cfg=p["cfg"], sampler_name="euler",
                          scheduler=SCHED, positive=pos, negative=r["null"], latent_image=[init, 0],
                          denoise=p["denoise"]), 0]
        dc = g.add("DreamDataConsistency", vae=[vae, 0], measurement=[deg, 0], degradation=[deg, 1], kernel_size=0,
                   motion_angle=0.0, strength=p.get("strength", 1.0), sigma_y=SIGMA_Y, mu=1e-4,
                   preset=p.get("preset", "restore"), solver="auto", cg_iters=500, dps=0.0, **t)
        return [g.add("DreamSampler", model=r["model"], seed=0, steps=p["steps"], cfg=p["cfg"], scheduler=SCHED,
                      positive=pos, negative=r["null"], latent_image=[init, 0], denoise=p["denoise"], eta=0.0,
                      eta_schedule="constant", regularizers=[dc, 0]), 0]
    if family == "drag":
        vae, img = _pixel_vae(g, r)
        out = None
        for k, ((sx, sy), (tx, ty)) in enumerate(drag_points(g.src, g.n, p["items"])):
            one = g.once(("one", k), "ImageFromBatch", image=[img, 0], batch_index=k, length=1)
            pts = json.dumps([{"x": sx, "y": sy}, {"x": tx, "y": ty}])
            d = [g.add("DreamSDEDrag", model=r["model"], vae=[vae, 0], image=[one, 0], positive=r["src_c"],
                       negative=r["null"], points=pts, seed=1234, steps=p["steps"], scheduler=SCHED, t0=p["t0"],
                       cfg=p["cfg"], guidance_ramp="linear", alpha=1.1, beta=0.3, radius=p["radius"],
                       step_size=2.0), 1]
            out = d if out is None else [g.add("LatentBatch", samples1=out, samples2=d), 0]
        return out
    raise KeyError(family)


def _pixel_vae(g, r):
    """ComfyUI's own pixel-space VAE (VAELoader 'pixel_space': encode / decode are the identity on
    [-1, 1] latents, IMAGE in [0, 1]) and the sources as an IMAGE."""
    vae = g.once("vae", "VAELoader", vae_name="pixel_space")
    return vae, g.once("img", "VAEDecode", samples=r["x"], vae=[vae, 0])


def drag_points(src: int, n: int, items: int):
    """For the first ``items`` of the n held-out sources: (the shape's centre, the centre moved DRAG_PX
    px toward the middle), in image pixels (the drag node floors them to cells)."""
    p = S.sample_params("heldout", n, src)
    out = []
    for cx, cy in zip(p["cx"][:items], p["cy"][:items]):
        dx = DRAG_PX if cx < S.SIZE / 2 else -DRAG_PX
        out.append(((float(cx), float(cy)), (float(cx) + dx, float(cy))))
    return out


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


def measurement(task: str, x: torch.Tensor):
    """(operator, y) of a restoration task on sources x, as Dream Degrade draws them (seed 0)."""
    from dreamsampler_core.operators import degrade, make_operator
    t = RESTORE_TASKS[task]
    op = make_operator(t["operator"], scale=t["scale"], blur_sigma=t["blur_sigma"])
    return op, degrade(x, op, SIGMA_Y, torch.Generator().manual_seed(0))


def score_restore(judge, out, truth, src, task) -> dict:
    """PSNR to the ground truth (the clean source), the judge's agreement with the source class, and
    the measurement's PSNR (A(out) vs y: how well the result explains the data)."""
    op, y = measurement(task, truth)
    with torch.no_grad():
        pred = judge(out.clamp(-1, 1)).argmax(1)
    return {"psnr_truth": float(S.psnr(S.to_unit(out), S.to_unit(truth)).mean()),
            "agree": float((pred == src).float().mean()),
            "psnr_y": float(S.psnr(S.to_unit(op.A(out.clamp(-1, 1))), S.to_unit(y)).mean()),
            "finite": bool(torch.isfinite(out).all())}


def centroid_x(x: torch.Tensor, p: dict) -> torch.Tensor:
    """Horizontal centroid (px, pixel centres at i + 0.5 as ``render``) of each picture's shape: pixels
    weighted by how far their colour is from the source's background toward its shape colour (0 below
    25 %, 1 above 75 % of the way)."""
    u = S.to_unit(x)
    bg = torch.as_tensor(np.clip(p["bg"], 0, 1), dtype=u.dtype)[:, :, None, None]
    fg = torch.as_tensor(np.clip(np.array([S.RGB[S.COLOURS[c % 3]] for c in p["cls"]]) + p["jitter"], 0, 1),
                         dtype=u.dtype)[:, :, None, None]
    d = ((u - bg) * (fg - bg)).sum(1) / ((fg - bg) ** 2).sum(1).clamp_min(1e-6)      # projection on bg -> fg
    w = (2 * d - 0.5).clamp(0, 1)
    pos = torch.arange(S.SIZE, dtype=u.dtype) + 0.5
    return (w * pos[None, None, :]).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-6)


def score_drag(judge, out, d: dict, src: int) -> dict:
    """How far the shape moved (centroid, px, signed along the asked direction), how far it ended from
    the asked position, whether it is still the source class, PSNR to the moved ground truth."""
    k = len(out)
    p = {key: v[:k] for key, v in d["p"].items()}
    with torch.no_grad():
        pred = judge(out.clamp(-1, 1)).argmax(1)
    dx = torch.as_tensor(d["dx"][:k], dtype=out.dtype)
    moved = (centroid_x(out, p) - centroid_x(d["x"][:k], p)) * dx.sign()
    return {"moved": float(moved.mean()), "miss": float((moved - dx.abs()).abs().mean()),
            "retention": float((pred == src).float().mean()),
            "psnr_truth": float(S.psnr(S.to_unit(out), S.to_unit(d["moved"][:k])).mean()),
            "psnr_src": float(S.psnr(S.to_unit(out), S.to_unit(d["x"][:k])).mean()),
            "finite": bool(torch.isfinite(out).all())}


def inputs_for(pairs, n):
    out = []
    for src, tgt in pairs:
        x, _, p = S.dataset("heldout", n, src)
        xi, _, pi = S.dataset("inpaint", n, src, right_half=True)
        dx = np.where(p["cx"] < S.SIZE / 2, DRAG_PX, -DRAG_PX).astype(float)
        out.append({"x": x, "truth": S.counterfactual(p, tgt), "xi": xi, "truth_i": S.counterfactual(pi, tgt),
                    "p": p, "dx": dx, "moved": S.render(dict(p, cx=p["cx"] + dx))})
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
                        if fam.startswith("restore_"):
                            rows.append(score_restore(judge, lat[(pi, si)], d["x"], src, p["task"]))
                        elif fam == "drag":
                            rows.append(score_drag(judge, lat[(pi, si)], d, src))
                        else:
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
    items = max([q["items"] for q in G.get("drag", [])] or [4])
    with torch.no_grad():                   # SDE-Drag's references: no drag (the source), the moved picture
        drag_ref = {k: aggregate([score_drag(judge, data[pi][key][:items], data[pi], src)
                                  for pi, (src, _) in enumerate(pairs)])
                    for k, key in (("source", "x"), ("truth", "moved"))}
    return {"judge_accuracy": acc, "drag_reference": drag_ref, "sample_accuracy": sample_acc, "results": list(results.values()),
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
    edits = [r for r in rows if r["family"] in EDIT_FAMILIES and not r["params"].get("recon")]
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
        if r["family"] not in EDIT_FAMILIES:
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
    L += restore_section(rows) + drag_section(rows, res.get("drag_reference"))
    L += ["", "## Timings", "", "| family | seconds (all pairs) |", "|---|---|"]
    L += [f"| {k} | {v:.1f} |" for k, v in res["timings"].items()]
    L += ["", "![success vs fidelity](quality.png)", ""]
    if any(r["family"].startswith("restore_") for r in rows):
        L += ["![restoration: PSNR to the truth and class agreement vs denoise](quality_restore.png)", ""]
    L += ["![before / after](quality_grid.png)", ""]
    L += flow_block(out / "QUALITY.md")
    (out / "QUALITY.md").write_text("\n".join(L))
    clean = {k: v for k, v in res.items() if not k.startswith("_")}
    (out / "quality.json").write_text(json.dumps(clean, indent=1, default=float))
    plot(res, curves, fids, out / "quality.png")
    plot_restore(rows, out / "quality_restore.png")
    picture_grid(res, curves, fids, out / "quality_grid.png")


def restore_section(rows) -> list:
    """Restoration table: per task, prompt and denoise, Data Consistency next to SDEdit (same start)."""
    rs = [r for r in rows if r["family"].startswith("restore_")]
    if not rs:
        return []
    cell = lambda r: f"{r['psnr_truth']:.1f} / {r['agree']:.2f} / {r['psnr_y']:.1f}" if r else "—"
    L = ["", "## Restoration: Dream Data Consistency vs SDEdit of the upsampled / blurred image", "",
         f"The clean held-out sources are the ground truth; measurement y = A(x) + {SIGMA_Y} n (Dream Degrade, "
         "seed 0), the start is Dream Degrade's `initial` (bicubic upsampling of y / the blurred image), noised "
         "to `denoise` with seed 0; both methods then run the same sampler and prompt (DreamSampler's DDIM = "
         "KSampler's euler on this eps model), the only difference being Dream Data Consistency (strength 1, "
         "`restore`, sigma_y 0.01, mu 1e-4). The VAE is ComfyUI's own pixel-space VAE (`VAELoader` "
         "`pixel_space`: encode / decode are the identity). Each cell: **PSNR to the truth (dB) / the judge "
         "agrees with the source class / PSNR of A(result) to y (dB; the measurement noise alone is 46 dB)**; "
         "'source cfg 3' = the source class as the prompt, cfg 3 against the null prompt.", "",
         "| task | input (denoise 0) | denoise | DC, null prompt | SDEdit, null prompt | DC, source cfg 3 | "
         "SDEdit, source cfg 3 |", "|---|---|---|---|---|---|---|"]
    index = {(r["family"], r["params"]["task"], r["params"]["prompt"], r["params"]["denoise"]): r for r in rs}
    for task in RESTORE_TASKS:
        inp = index.get(("restore_sdedit", task, "null", 0.0))
        levels = sorted({r["params"]["denoise"] for r in rs if r["params"]["task"] == task and r["params"]["denoise"]})
        for i, d in enumerate(levels):
            cells = [cell(index.get((f, task, q, d))) for q in ("null", "src") for f in ("restore_dc", "restore_sdedit")]
            L.append(f"| {TASK_NAMES[task] if i == 0 else ''} | {cell(inp) if i == 0 else ''} | {d:g} | "
                     + " | ".join(cells) + " |")
    return L


def drag_section(rows, ref) -> list:
    rs = [r for r in rows if r["family"] == "drag"]
    if not rs:
        return []
    L = ["", f"## SDE-Drag: the shape's centre dragged {DRAG_PX} px toward the middle", "",
         f"Per held-out source one Dream SDE-Drag node (points: the shape's centre and {DRAG_PX} px beside it; "
         "prompt: the source class, cfg 3 linear ramp, alpha 1.1, beta 0.3, sub-drags of 2 px, seed 1234), "
         f"{rs[0]['params']['items']} sources per class. *Moved*: the shape's centroid shift along the drag (px); "
         "*miss*: its distance from the asked position (DragBench's mean distance, on the centroid); *still the "
         "source class*: the judge; PSNR to the moved ground truth (the same picture drawn at the new centre) "
         "and to the source.", "",
         f"| setting | moved (of {DRAG_PX} px) | miss (px) | still the source class | PSNR to the moved truth | "
         "PSNR to the source |", "|---|---|---|---|---|---|"]
    row = lambda name, r: (f"| {name} | {r['moved']:.2f} | {r['miss']:.2f} | {r['retention']:.2f} | "
                           f"{r['psnr_truth']:.1f} | {r['psnr_src']:.1f} |")
    if ref:
        L += [row("no drag (the source)", ref["source"]), row("ground truth (moved picture)", ref["truth"])]
    L += [row(f"{r['label']}, {r['params']['steps']} steps", r) for r in rs]
    return L


def plot_restore(rows, path):
    rs = [r for r in rows if r["family"].startswith("restore_")]
    if not rs:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = [t for t in RESTORE_TASKS if any(r["params"]["task"] == t for r in rs)]
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6.5), squeeze=False)
    for j, task in enumerate(tasks):
        inp = [r for r in rs if r["params"]["task"] == task and r["params"]["denoise"] == 0]
        for fam, style in (("restore_dc", "-o"), ("restore_sdedit", "--s")):
            for q, colour in (("null", "tab:blue"), ("src", "tab:red")):
                pts = sorted((r["params"]["denoise"], r["psnr_truth"], r["agree"]) for r in rs
                             if r["family"] == fam and r["params"]["task"] == task and r["params"]["prompt"] == q
                             and r["params"]["denoise"] > 0)
                if not pts:
                    continue
                name = f"{'Data Consistency' if fam == 'restore_dc' else 'SDEdit'}, " \
                       f"{'null prompt' if q == 'null' else 'source prompt cfg 3'}"
                for i in (0, 1):
                    axes[i][j].plot([p[0] for p in pts], [p[1 + i] for p in pts], style, ms=4, color=colour,
                                    label=name)
        for i, key in enumerate(("psnr_truth", "agree")):
            if inp:
                axes[i][j].axhline(inp[0][key], color="k", lw=1, ls=":", label="the input (upsampled / blurred)")
            axes[i][j].set_xlabel("denoise")
            axes[i][j].grid(alpha=0.3)
        axes[0][j].set_title(TASK_NAMES[task], fontsize=9)
        axes[0][j].set_ylabel("PSNR to the truth (dB)")
        axes[1][j].set_ylabel("judge agrees with the source class")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


def _shown_inpaint(p: dict) -> bool:
    """The inpainting settings in the picture grid: each preset at strength 1 (20 steps), and `paper`
    at strength 2 on the grey hole."""
    s = p.get("strength", 1.0)
    return p["steps"] == 20 and (s == 1.0 or (s == 2.0 and p["preset"] == "paper" and p.get("hole") == "grey"))


def picture_grid(res, curves, fids, path, per_pair=4, zoom=4):
    """Rows: the first sources of each pair; columns: source, ground truth, each editing method at its
    best point at the first stated fidelity; per restoration task the input and the best Data
    Consistency / SDEdit result (by PSNR to the truth); the dragged ground truth and SDE-Drag; then the
    inpainting source, core noise-mask inpainting and Dream Mask Inpaint's presets."""
    from PIL import Image, ImageDraw
    cols = [("source", "x"), ("ground truth", "truth")]
    for name, rs in curves.items():
        if name.startswith("CFG Edit") and ("refine" in name or "50 st" in name):
            continue
        b = best_at(rs, fids[0])
        if b is not None:
            cols.append((f"{b['label']} ({b['psnr_src']:.0f} dB)", b))
    rows = res["results"]
    for task in RESTORE_TASKS:
        rs = [r for r in rows if r["family"].startswith("restore_") and r["params"]["task"] == task]
        for pick in ([r for r in rs if r["params"]["denoise"] == 0],
                     [r for r in rs if r["family"] == "restore_dc"],
                     [r for r in rs if r["family"] == "restore_sdedit" and r["params"]["denoise"] > 0]):
            if pick:
                b = max(pick, key=lambda r: r["psnr_truth"])
                cols.append((f"{b['label']} ({b['psnr_truth']:.0f} dB)", b))
    drags = [r for r in rows if r["family"] == "drag" and r["params"]["radius"] == 5 and r["params"]["t0"] <= 0.6]
    if drags:
        cols.append(("drag: moved truth", "moved"))
        cols += [(f"{r['label']} ({r['moved']:.1f} px)", r) for r in drags]
    cols.append(("inpaint source", "xi"))
    cols += [(r["label"], r) for r in rows if r["family"] == "inpaint_core" and r["params"]["cfg"] == 3.0]
    cols += [(r["label"], r) for r in rows if r["family"] == "inpaint_dream" and _shown_inpaint(r["params"])]
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
                xs = res["_data"][pi][r] if isinstance(r, str) else \
                    res["_latents"][(r["family"], index[r["family"]].index(r), pi)]
                if k >= len(xs):
                    continue
                x = xs[k]
                arr = (S.to_unit(x).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                im.paste(Image.fromarray(arr).resize((tile, tile), Image.NEAREST),
                         (x0, head + (pi * per_pair + k) * tile))
    im.save(path)


# ----------------------------------------------------------------------------- the flow model (issue 23)
FLOW_STEPS = 28                 # the recipe: ModelSamplingSD3 shift 3, `simple`, 28 steps
FLOW_SCHED = "simple"
FLOWEDIT_ROWS = 33              # the FlowEdit budget: n_max 0.4 * 28 = 11 levels x 3 rows
FLOW_FAMILIES = ("flowedit", "rf_inversion", "rf_solver", "fireflow", "f_unsampler", "f_sdedit", "f_cfg_edit",
                 "f_cfg_partial", "distill_edit", "f_recon")
FLOW_BEGIN, FLOW_END = "<!-- flow table: bench_quality.py --flow writes it -->", "<!-- /flow table -->"


def flow_grids(quick: bool) -> dict:
    """family -> settings on the rectified-flow shapes model; ``steps``: the grid's step count (a
    partial method runs the last ``round(steps * denoise)`` levels of it)."""
    if quick:
        st = 8
        return {"flowedit": [dict(steps=st, n_max=4, tar_cfg=2.5)],
                "rf_inversion": [dict(steps=st, gamma=0.5, eta=0.9, stop=2, cfg=2.5)],
                "rf_solver": [dict(steps=st, denoise=0.6, cfg=2.5)],
                "fireflow": [dict(steps=st, denoise=0.6, cfg=2.5)],
                "f_unsampler": [dict(steps=st, denoise=0.6, cfg=2.5)],
                "f_sdedit": [dict(steps=st, denoise=0.6, cfg=2.5)],
                "f_cfg_edit": [dict(steps=st, strength=0.2, refine=0), dict(steps=st, strength=0.2, refine=0, source=True)],
                "f_cfg_partial": [dict(steps=st, denoise=0.6, strength=0.2, refine=0)],
                "distill_edit": [dict(steps=st, n_max=4, strength=1.0, prox=1.3, tar_cfg=2.5, neg="src")],
                "f_recon": [dict(steps=st, method="dream", refine=1), dict(steps=st, method="fireflow")]}
    st = FLOW_STEPS
    dens = (0.3, 0.4, 0.5, 0.6, 0.7, 0.85)
    g = {"flowedit": [dict(steps=st, n_max=n, tar_cfg=c) for c in (1.5, 2.5, 4.0) for n in (4, 6, 8, 11, 14, 17, 21)]}
    g["flowedit"] += [dict(steps=st, n_max=n, tar_cfg=c) for c in (5.5, 8.0) for n in (6, 8, 11, 14, 17, 21, 24, 28)]
    g["flowedit"] += [dict(steps=st, n_max=n, tar_cfg=5.5, src_cfg=1.5) for n in (8, 11, 14, 17, 21, 24)]
    g["rf_inversion"] = [dict(steps=st, gamma=0.5, eta=e, stop=k, cfg=c) for c in (1.5, 3.0) for k in (4, 8, 14)
                         for e in (0.5, 0.7, 0.9, 1.0)]
    # at FlowEdit's budget: an 11-step grid (11 null + 22 target rows = 33)
    g["rf_inversion"] += [dict(steps=11, gamma=0.5, eta=e, stop=k, cfg=1.5) for k in (2, 4, 6) for e in (0.5, 0.9)]
    for fam in ("rf_solver", "fireflow", "f_unsampler", "f_sdedit"):
        g[fam] = [dict(steps=st, denoise=d, cfg=c) for c in (1.5, 3.0) for d in dens]
    g["rf_solver"] += [dict(steps=st, denoise=1.0, cfg=c) for c in (1.5, 3.0)]
    g["fireflow"] += [dict(steps=st, denoise=1.0, cfg=c) for c in (1.5, 3.0)]
    strengths = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5)
    g["f_cfg_edit"] = [dict(steps=st, strength=s, refine=r) for r in (0, 3) for s in strengths]
    g["f_cfg_edit"] += [dict(steps=st, strength=s, refine=0, source=True) for s in strengths]
    g["f_cfg_partial"] = [dict(steps=st, denoise=d, strength=s, refine=0) for d in (0.5, 0.7)
                          for s in (0.1, 0.2, 0.35, 0.5, 0.75, 1.0)]
    # issue 23's answer, the shipped Dream Distill Edit (the source as the target's reference, cfg 1:
    # 2 rows per level; strength = fidelity = 1 with the null reference and cfg > 1 is FlowEdit)
    g["distill_edit"] = [dict(steps=st, n_max=n, strength=s, prox=1.0, tar_cfg=1.0, neg="src")
                         for s in (1.15, 1.25, 1.35, 1.5, 2.0) for n in (11, 16, 21)]
    g["distill_edit"] += [dict(steps=st, n_max=n, strength=s, prox=s, tar_cfg=1.0, neg="src")
                          for s in (1.5, 2.0) for n in (16, 21)]
    g["distill_edit"] += [dict(steps=st, n_max=16, strength=2.5, prox=2.0, tar_cfg=1.0, neg="src"),
                          dict(steps=st, n_max=21, strength=1.25, prox=1.0, tar_cfg=1.5, neg="null")]
    # the target guided against the source prompt (cfg on the prompt difference at the same latent),
    # strength 1, a fidelity above 1: the node's defaults (n_max 14, cfg 2.5, fidelity 1.3) and around
    g["distill_edit"] += [dict(steps=st, n_max=n, strength=1.0, prox=m, tar_cfg=c, neg="src")
                          for c, m in ((1.5, 1.0), (1.5, 1.3), (2.0, 1.0), (2.0, 1.3), (2.0, 1.6), (2.5, 1.3),
                                       (2.5, 1.6), (3.0, 2.0)) for n in (11, 14, 17, 21)]
    # reconstruction (null prompt both ways): the pack's inversion with refinement vs second-order solvers
    g["f_recon"] = [dict(steps=st, method="dream", refine=r) for r in (0, 1, 2, 3)]
    g["f_recon"] += [dict(steps=st, method=m) for m in ("euler", "fireflow", "rf_solver")]
    return g


def flow_curve(family: str, p: dict) -> str:
    if family == "flowedit":
        return f"FlowEdit tar cfg {p['tar_cfg']:g}" + (f" src cfg {p['src_cfg']:g}" if "src_cfg" in p else "")
    if family == "rf_inversion":
        return f"RF-Inversion cfg {p['cfg']:g} eta stop {p['stop']}" + (f" {p['steps']} st" if p["steps"] != FLOW_STEPS
                                                                        else "")
    if family in ("rf_solver", "fireflow", "f_unsampler", "f_sdedit"):
        name = {"rf_solver": "RF-Solver", "fireflow": "FireFlow", "f_unsampler": "Unsampler (core)",
                "f_sdedit": "SDEdit (core)"}[family]
        return f"{name} cfg {p['cfg']:g}"
    if family == "f_cfg_edit":
        return f"Dream CFG Edit invariant {'source' if p.get('source') else 'null'} refine {p['refine']}"
    if family == "f_cfg_partial":
        return f"Dream CFG Edit invariant null, partial inversion d={p['denoise']:g}"
    if family == "f_recon":
        return (f"reconstruction: Dream DDIM Inversion refine {p['refine']} + DreamSampler" if p["method"] == "dream"
                else f"reconstruction: {p['method']} inversion + sampling (test-only node)")
    if family == "distill_edit":
        return (f"Dream Distill Edit strength {p['strength']:g} fidelity {p['prox']:g}"
                + (f" cfg {p['tar_cfg']:g} vs {'null' if p['neg'] == 'null' else 'source'}" if p["tar_cfg"] != 1 else ""))
    raise KeyError(family)


def flow_label(family: str, p: dict) -> str:
    knob = {"flowedit": lambda: f"n_max {p['n_max']}", "distill_edit": lambda: f"n_max {p['n_max']}",
            "rf_inversion": lambda: f"eta {p['eta']:g}",
            "f_cfg_edit": lambda: f"s={p['strength']:g}",
            "f_cfg_partial": lambda: f"s={p['strength']:g}", "f_recon": lambda: "null prompt"}.get(family, lambda: f"d={p['denoise']:g}")()
    return f"{flow_curve(family, p)} {knob}"


def flow_pair_graph(src: int, tgt: int, n: int, count_key: str | None = None):
    g = Graph()
    g.src, g.n = src, n
    model = [g.add("ModelSamplingSD3", model=[g.add("TestShapesFlowModel"), 0], shift=3.0), 0]
    if count_key is not None:
        model = [g.add("TestCountRows", model=model, key=count_key), 0]
    r = {"model": model,
         "null": [g.add("TestShapesPrompt", class_index=-1), 0],
         "src_c": [g.add("TestShapesPrompt", class_index=src), 0],
         "tgt_c": [g.add("TestShapesPrompt", class_index=tgt), 0],
         "x": [g.add("TestShapesImages", split="heldout", class_index=src, count=n), 0]}
    return g, r


def _part(p: dict) -> int:
    """Steps of a partial method: the last round(steps * denoise) levels of the steps-level grid."""
    return max(1, round(p["steps"] * p.get("denoise", 1.0)))


def flow_build(family: str, p: dict, g: Graph, r: dict):
    """Add the nodes of one flow setting; returns the edited latent's reference."""
    st, m = p["steps"], r["model"]
    sig = lambda k, d: [g.once(("fsig", k, d), "BasicScheduler", model=m, scheduler=FLOW_SCHED, steps=k,
                               denoise=d), 0]
    if family == "flowedit":
        return [g.add("TestFlowEdit", model=m, source=r["src_c"], target=r["tgt_c"], negative=r["null"],
                      latent_image=r["x"], sigmas=sig(st, 1.0), n_max=p["n_max"], n_min=0, n_avg=1,
                      source_cfg=p.get("src_cfg", 1.0), target_cfg=p["tar_cfg"], seed=p.get("seed", 0)), 0]
    if family == "f_recon":
        if p["method"] == "dream":
            inv = g.add("DreamDDIMInversion", model=m, conditioning=r["null"], latent_image=r["x"], steps=st,
                        scheduler=FLOW_SCHED, denoise=1.0, refine_steps=p["refine"])
            return [g.add("DreamSampler", model=m, seed=0, steps=st, cfg=1.0, scheduler=FLOW_SCHED, positive=r["null"],
                          negative=r["null"], latent_image=[inv, 0], denoise=1.0, eta=0.0, eta_schedule="constant"), 0]
        return [g.add("TestRFSolverEdit", model=m, null=r["null"], target=r["null"], negative=r["null"],
                      latent_image=r["x"], sigmas=sig(st, 1.0), solver=p["method"], cfg=1.0), 0]
    if family == "distill_edit":
        return [distill_edit_node(g, m, r, st, FLOW_SCHED, p), 0]
    if family == "rf_inversion":
        return [g.add("TestRFInversion", model=m, null=r["null"], target=r["tgt_c"], negative=r["null"],
                      latent_image=r["x"], sigmas=sig(st, 1.0), gamma=p["gamma"], eta=p["eta"], eta_start=0,
                      eta_stop=p["stop"], cfg=p["cfg"], seed=0), 0]
    k, d = _part(p), p.get("denoise", 1.0)
    if family in ("rf_solver", "fireflow"):
        return [g.add("TestRFSolverEdit", model=m, null=r["null"], target=r["tgt_c"], negative=r["null"],
                      latent_image=r["x"], sigmas=sig(k, d), solver=family, cfg=p["cfg"]), 0]
    if family == "f_sdedit":
        return [g.add("KSampler", model=m, seed=0, steps=k, cfg=p["cfg"], sampler_name="euler", scheduler=FLOW_SCHED,
                      positive=r["tgt_c"], negative=r["null"], latent_image=r["x"], denoise=d), 0]
    if family == "f_unsampler":
        noise = g.once("noise", "DisableNoise")
        euler = g.once("euler", "KSamplerSelect", sampler_name="euler")
        flip = g.once(("fflip", k, d), "FlipSigmas", sigmas=sig(k, d))
        base = g.once("fbasic", "BasicGuider", model=m, conditioning=r["null"])
        inv = g.once(("funinv", k, d), "SamplerCustomAdvanced", noise=[noise, 0], guider=[base, 0],
                     sampler=[euler, 0], sigmas=[flip, 0], latent_image=r["x"])
        guide = g.add("CFGGuider", model=m, positive=r["tgt_c"], negative=r["null"], cfg=p["cfg"])
        return [g.add("SamplerCustomAdvanced", noise=[noise, 0], guider=[guide, 0], sampler=[euler, 0],
                      sigmas=sig(k, d), latent_image=[inv, 0]), 0]
    if family in ("f_cfg_edit", "f_cfg_partial"):
        inv = g.once(("finv", k, d, p["refine"]), "DreamDDIMInversion", model=m, conditioning=r["null"],
                     latent_image=r["x"], steps=k, scheduler=FLOW_SCHED, denoise=d, refine_steps=p["refine"])
        extra = {"source": r["src_c"]} if p.get("source") else {}
        reg = g.add("DreamCFGEdit", target=r["tgt_c"], strength=p["strength"], schedule="invariant", start=1.0,
                    end=0.0, **extra)
        return [g.add("DreamSampler", model=m, seed=0, steps=k, cfg=1.0, scheduler=FLOW_SCHED, positive=r["null"],
                      negative=r["null"], latent_image=[inv, 0], denoise=d, eta=0.0, eta_schedule="constant",
                      regularizers=[reg, 0]), 0]
    raise KeyError(family)


def distill_edit_inputs(p: dict) -> dict:
    """Dream Distill Edit's widgets for a setting: the last ``n_max`` levels of a ``steps`` grid; the
    target guided against the null prompt (neg null: ``negative`` is the null prompt, returned as
    True) or the source prompt (neg src: no negative)."""
    return {"seed": p.get("seed", 0), "steps": p["steps"], "start": p["n_max"] / p["steps"],
            "strength": p["strength"], "fidelity": p["prox"], "cfg": p["tar_cfg"], "source_cfg": 1.0,
            **({"negative": True} if p["neg"] == "null" else {})}


def distill_edit_node(g: Graph, model, r: dict, steps: int, scheduler: str, p: dict) -> str:
    """Dream Distill Edit (the shipped node) for a setting (``distill_edit_inputs``)."""
    w = distill_edit_inputs(dict(p, steps=steps))
    if w.pop("negative", False):
        w["negative"] = r["null"]
    return g.add("DreamDistillEdit", model=model, source=r["src_c"], target=r["tgt_c"], latent_image=r["x"],
                 scheduler=scheduler, **w)


def flow_rows(server, family: str, settings: list) -> list:
    """Model rows per edit of each setting: one source through a row-counting clone of the model
    (tests/support/peer_nodes: TestCountRows / TestReportRows), one prompt per setting."""
    out = []
    for si, p in enumerate(settings):
        key = f"rows-{family}-{si}-{time.time_ns()}"
        g, r = flow_pair_graph(*PAIRS[0], 1, count_key=key)
        rep = g.add("TestReportRows", latent=flow_build(family, p, g, r), key=key)
        entry = server.run(g.nodes, timeout=600)
        out.append(int(entry["outputs"][rep]["rows"][0]))
    return out


def run_flow_benchmark(quick=False, n=32, pairs=PAIRS, log=print, families=None, server_dir=None) -> dict:
    """The flow table: the peers (test-only nodes) and the pack's edits on the rectified-flow shapes
    model through ModelSamplingSD3 shift 3 + `simple`, scored by the same judge on the same pairs."""
    from tools.server import ComfyServer
    judge = S.trained_judge(log=log)
    S.trained_flow_unet(log=log)
    acc = S.judge_accuracy(judge)
    G = flow_grids(quick)
    families = families or list(G)
    data = inputs_for(pairs, n)
    t_all = time.time()
    results, timings, latents = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        with ComfyServer(Path(server_dir or tmp) / "server", custom_nodes=[NODES], env={"OMP_NUM_THREADS": "1"}) as server:
            t = time.time()
            per, steps = (4, 8) if quick else (32, FLOW_STEPS)
            sample_acc = {}
            for cfg in ((3.0,) if quick else (1.0, 3.0)):
                g = Graph()
                model = [g.add("ModelSamplingSD3", model=[g.add("TestShapesFlowModel"), 0], shift=3.0), 0]
                null = [g.add("TestShapesPrompt", class_index=-1), 0]
                empty = [g.add("TestShapesImages", split="judge_test", class_index=0, count=per), 0]   # its shape
                for c in range(S.K):
                    pos = [g.add("TestShapesPrompt", class_index=c), 0]
                    g.save([g.add("KSampler", model=model, seed=c, steps=steps, cfg=cfg, sampler_name="euler",
                                  scheduler=FLOW_SCHED, positive=pos, negative=null, latent_image=empty,
                                  denoise=1.0), 0], f"gen-{c}")
                lat = fetch_latents(server, server.run(g.nodes, timeout=1800), g.saves)
                x = torch.cat([lat[f"gen-{c}"] for c in range(S.K)])
                y = torch.arange(S.K).repeat_interleave(per)
                with torch.no_grad():
                    pred = judge(x.clamp(-1, 1)).argmax(1)
                sample_acc[cfg] = {"overall": float((pred == y).float().mean()),
                                   "per_class": [float((pred[y == c] == c).float().mean()) for c in range(S.K)],
                                   "finite": bool(torch.isfinite(x).all()), "shape": list(x.shape)}
            if log:
                log(f"flow model samples judged as their prompt: "
                    f"{ {k: round(v['overall'], 3) for k, v in sample_acc.items()} } ({time.time() - t:.1f} s)")
            for fam in families:
                t = time.time()
                res = {}
                for pi, (src, tgt) in enumerate(pairs):
                    g, r = flow_pair_graph(src, tgt, n)
                    for si, p in enumerate(G[fam]):
                        g.save(flow_build(fam, p, g, r), f"{fam}-{pi}-{si}")
                    for key, x in fetch_latents(server, server.run(g.nodes, timeout=1800), g.saves).items():
                        _, a, b = key.rsplit("-", 2)
                        res[(int(a), int(b))] = x
                rows_per_edit = flow_rows(server, fam, G[fam])
                timings[fam] = time.time() - t
                if log:
                    log(f"  {fam}: {len(G[fam])} settings x {len(pairs)} pairs in {timings[fam]:.1f} s")
                for si, p in enumerate(G[fam]):
                    per_pair = []
                    for pi, (src, tgt) in enumerate(pairs):
                        d = data[pi]
                        per_pair.append(score(judge, res[(pi, si)], d["x"], src, tgt, d["truth"]))
                        latents[(fam, si, pi)] = res[(pi, si)][:4]
                    results[(fam, si)] = {"family": fam, "params": p, "label": flow_label(fam, p),
                                          "curve": flow_curve(fam, p), "rows": rows_per_edit[si],
                                          "per_pair": per_pair, **aggregate(per_pair)}
    with torch.no_grad():
        refs = [{"truth": score(judge, data[pi]["truth"], data[pi]["x"], s, t, data[pi]["truth"])}
                for pi, (s, t) in enumerate(pairs)]
    return {"judge_accuracy": acc, "sample_accuracy": sample_acc, "results": list(results.values()),
            "reference": {"truth": aggregate([r["truth"] for r in refs])}, "timings": timings,
            "total_s": time.time() - t_all, "n": n, "pairs": [[S.CLASSES[a], S.CLASSES[b]] for a, b in pairs],
            "_latents": latents}


def flow_section(res: dict, cmd: str) -> list:
    """The flow table (markdown lines, between FLOW_BEGIN / FLOW_END)."""
    rows = res["results"]
    truth = res["reference"]["truth"]["psnr_src"]
    fids = [12, 14, 16] + [f for f in (round(truth), round(truth) + 2, round(truth) + 4) if f not in (12, 14, 16)]
    curves, recon = {}, [r for r in rows if r["family"] == "f_recon"]
    for r in rows:
        if r["family"] != "f_recon":
            curves.setdefault(r["curve"], []).append(r)
    L = [FLOW_BEGIN, f"## Editing on the rectified-flow model (issue 23; `{cmd}`)", "",
         f"Model: the same UNet trained here on the velocity v = ε − x0 (x_t = (1 − t) x0 + t ε), wrapped as a "
         f"ComfyUI FLOW `BaseModel` and run through core `ModelSamplingSD3` shift 3 + the `simple` scheduler, "
         f"{FLOW_STEPS} steps. The same judge, pairs and {res['n']} held-out sources per pair as above; "
         f"total {res['total_s']:.0f} s.", "",
         f"* **Judge** accuracy on held-out real samples: **{res['judge_accuracy']:.3f}**.",
         "* **Model samples** judged as their prompt (KSampler euler, simple, shift 3): " + ", ".join(
             f"cfg {c:g}: **{v['overall']:.3f}** (per class {min(v['per_class']):.2f}–{max(v['per_class']):.2f})"
             for c, v in res["sample_accuracy"].items()),
         f"* **Ground-truth edit**: PSNR to the source {truth:.1f} dB.",
         "* **Rows** = batch rows through the model per edited image, counted by a wrapper on the model "
         "(one source through the server per setting). FlowEdit: source cfg 1, n_avg 1; RF-Inversion: γ 0.5, η "
         "over reverse steps [0, stop); partial methods run the last round(28·d) levels of the 28-step grid.", "",
         "### Success at equal fidelity (interpolated along each curve; rows per edit at that point)", "",
         "| method | " + " | ".join(f"PSNR = {f} dB" for f in fids) + " |", "|---|" + "---|" * len(fids)]
    for name, rs in curves.items():
        cells = []
        for f in fids:
            pts = sorted((r["psnr_src"], r["success"], r["rows"]) for r in rs)
            v = success_at([(a, b) for a, b, _ in pts], f)
            if v is None:
                cells.append("—")
                continue
            near = [c for a, _, c in pts if a >= f][:1] + [c for a, _, c in pts if a < f][-1:]
            cells.append(f"{v:.2f} ({'–'.join(str(c) for c in sorted(set(near)))} rows)")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    names = {"flowedit": "FlowEdit", "rf_inversion": "RF-Inversion", "rf_solver": "RF-Solver", "fireflow": "FireFlow",
             "f_unsampler": "Unsampler (core)", "f_sdedit": "SDEdit (core)", "f_cfg_edit": "Dream CFG Edit (inversion)",
             "f_cfg_partial": "Dream CFG Edit (partial inversion)", "distill_edit": "Dream Distill Edit"}
    for cap, title in ((None, "any rows"), (FLOWEDIT_ROWS, f"at most {FLOWEDIT_ROWS} rows per edit (FlowEdit's ~33)")):
        L += ["", f"### Best success per method at PSNR ≥ f, over all its settings, {title}", "",
              "| method | " + " | ".join(f"PSNR ≥ {f} dB" for f in fids) + " |", "|---|" + "---|" * len(fids)]
        for fam, name in names.items():
            rs = [r for r in rows if r["family"] == fam and (cap is None or r["rows"] <= cap)]
            if not rs:
                continue
            cells = []
            for f in fids:
                b = best_at(rs, f)
                cells.append(f"{b['success']:.2f} ({b['psnr_src']:.1f} dB, {b['rows']} rows)" if b else "—")
            L.append(f"| {name} | " + " | ".join(cells) + " |")
    if recon:
        L += ["", "### Reconstruction (null prompt both ways, 28 steps)", "", "| method | PSNR to the source | rows |",
              "|---|---|---|"]
        L += [f"| {r['label'].replace(' null prompt', '')} | {r['psnr_src']:.1f} | {r['rows']} |" for r in recon]
    L += ["", "### Every setting", "", "| setting | success | per pair | retention | PSNR src | PSNR truth | rows | finite |",
          "|---|---|---|---|---|---|---|---|"]
    pairs = lambda r: " / ".join(f"{q['success']:.2f}" for q in r["per_pair"])
    L += [f"| {r['label']} | {r['success']:.2f} | {pairs(r)} | {r['retention']:.2f} | {r['psnr_src']:.1f} | {r['psnr_truth']:.1f} "
          f"| {r['rows']} | {'yes' if r['finite'] else '**no**'} |" for r in rows]
    L += ["", FLOW_END]
    return L


def write_flow_report(res: dict, out: Path, cmd: str):
    """Replace (or append) the flow block of QUALITY.md; the eps report and findings stay."""
    path, old = out / "QUALITY.md", out / "quality_flow.json"
    ran = {r["family"] for r in res["results"]}
    if old.exists() and ran != set(FLOW_FAMILIES):             # --family: keep the other families' rows
        prev = json.loads(old.read_text())
        keep = [r for r in prev["results"] if r["family"] not in ran]
        res = dict(res, results=keep + res["results"],
                   timings={**{k: v for k, v in prev["timings"].items() if k not in ran}, **res["timings"]})
        order = {f: i for i, f in enumerate(FLOW_FAMILIES)}
        res["results"].sort(key=lambda r: order[r["family"]])
        cmd = "python -m bench.bench_quality --flow (families run separately)"
    text = path.read_text() if path.exists() else ""
    block = "\n".join(flow_section(res, cmd))
    if FLOW_BEGIN in text and FLOW_END in text:
        a, b = text.index(FLOW_BEGIN), text.index(FLOW_END) + len(FLOW_END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    clean = {k: v for k, v in res.items() if not k.startswith("_")}
    (out / "quality_flow.json").write_text(json.dumps(clean, indent=1, default=float))


def flow_block(path: Path) -> list:
    """The flow block of an existing report (kept when the eps report is rewritten)."""
    if not path.exists():
        return []
    text = path.read_text()
    if FLOW_BEGIN not in text or FLOW_END not in text:
        return []
    return text[text.index(FLOW_BEGIN):text.index(FLOW_END) + len(FLOW_END)].splitlines() + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny grid (the CI test's size)")
    ap.add_argument("--retrain", action="store_true", help="retrain the model and the judge (bench/weights)")
    ap.add_argument("--n", type=int, default=32, help="held-out sources per class pair")
    ap.add_argument("--out", type=Path, default=REPO / "bench")
    ap.add_argument("--family", action="append", help="only these method families (default: all)")
    ap.add_argument("--flow", action="store_true",
                    help="the rectified-flow model's table (issue 23): peers and the pack's edits; rewrites only "
                         "the flow block of QUALITY.md")
    args = ap.parse_args()
    if args.flow:
        res = run_flow_benchmark(quick=args.quick, n=args.n, families=args.family)
        cmd = "python -m bench.bench_quality --flow" + (" --quick" if args.quick else "") + \
            (f" --n {args.n}" if args.n != 32 else "")
        write_flow_report(res, args.out, cmd)
        print(f"wrote the flow table to {args.out / 'QUALITY.md'} ({res['total_s']:.0f} s)")
        return
    if args.retrain:
        S.trained_judge(retrain=True)
        S.trained_unet(retrain=True)
        S.trained_flow_unet(retrain=True)
    res = run_benchmark(quick=args.quick, n=args.n, families=args.family)
    cmd = "python -m bench.bench_quality" + (" --quick" if args.quick else "") + (f" --n {args.n}" if args.n != 32 else "")
    write_report(res, args.out, cmd)
    print(f"wrote {args.out / 'QUALITY.md'} ({res['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
