"""Text-guided inpainting and noise masks through a real ComfyUI server, on an exact oracle.

The server gets a test-only node package (tests/support/oracle_nodes) whose MODEL is the exact
posterior mean of a Gaussian mixture: class k ~ N(mean_k, STD^2) per latent value, prompts pick a
class, the null prompt is the prior.  So "the hole takes the target prompt's content" is checkable:
a hole sampled for class k has mean ~ mean_k and std ~ STD.  Prompts go to /prompt in API format;
the results come back as SaveLatent files.

Tolerances (stated once, used by every check below):
* hole mean within HOLE_MEAN_TOL of the target class mean (10 % of the class separation 1.5);
* hole std within HOLE_STD_RATIO of the class std;
* the unmasked region equal to the source within KNOWN_TOL (RMS, latent units; class std 0.3);
* 20, 50 and 200 steps: hole means within STEP_MEAN_TOL of each other, stds within STEP_STD_TOL.
"""
from pathlib import Path

import pytest
import torch

from tools.server import ComfyServer

ORACLE_NODES = Path(__file__).resolve().parents[1] / "support" / "oracle_nodes"
MEANS = (-0.6, 0.9, 2.1)            # class A (the source), B and C (targets): own constants
STD = 0.3
C_, H_, W_ = 4, 8, 8
A, B, C = 0, 1, 2
STEPS = (20, 50, 200)

HOLE_MEAN_TOL = 0.15
HOLE_STD_RATIO = (0.6, 1.3)
KNOWN_TOL = 1e-4
STEP_MEAN_TOL = 0.1
STEP_STD_TOL = 0.1


@pytest.fixture(scope="module")
def oracle_server(tmp_path_factory):
    srv = ComfyServer(tmp_path_factory.mktemp("oracle"), custom_nodes=[ORACLE_NODES])
    srv.start()
    yield srv
    srv.stop()


class Graph:
    """An API-format prompt built node by node; ``add`` returns the node id."""

    def __init__(self, kind="eps"):
        self.nodes = {}
        self.saved = []
        shape = {"means": ", ".join(map(str, MEANS)), "std": STD, "channels": C_, "height": H_, "width": W_}
        self.model = [self.add("OracleTestModel", kind=kind, **shape), 0]
        self.prompt = {k: [self.add("OracleTestPrompt", class_index=k), 0] for k in (-1, A, B, C)}
        self.source = [self.add("OracleTestSample", class_index=A, seed=0, **shape), 0]
        self.scheduler = "ddim_uniform" if kind != "flow" else "simple"

    def add(self, cls, **inputs):
        key = str(len(self.nodes) + 1)
        self.nodes[key] = {"class_type": cls, "inputs": inputs}
        return key

    def mask(self, y, x, h, w):
        """A latent-size MASK, 1 (repaint) on rows y..y+h, columns x..x+w."""
        empty = self.add("SolidMask", value=0.0, width=W_, height=H_)
        rect = self.add("SolidMask", value=1.0, width=w, height=h)
        return [self.add("MaskComposite", destination=[empty, 0], source=[rect, 0], x=x, y=y, operation="add"), 0]

    def invert(self, latent, steps):
        return [self.add("DreamDDIMInversion", model=self.model, conditioning=self.prompt[-1], latent_image=latent,
                         steps=steps, scheduler=self.scheduler, denoise=1.0, refine_steps=2), 0]

    def sample(self, latent, steps, positive=-1, regularizers=None):
        inputs = dict(model=self.model, seed=0, steps=steps, cfg=1.0, scheduler=self.scheduler,
                      positive=self.prompt[positive], negative=self.prompt[-1], latent_image=latent, denoise=1.0,
                      eta=0.0, eta_schedule="constant")
        if regularizers is not None:
            inputs["regularizers"] = regularizers
        return [self.add("DreamSampler", **inputs), 0]

    def save(self, latent, name):
        self.add("SaveLatent", samples=latent, filename_prefix=f"oracle/{name}")
        self.saved.append(name)

    def run(self, server, tmp_path) -> dict:
        """Queue, wait, fetch: {name: latent [1, C, H, W] float64}."""
        import safetensors.torch
        entry = server.run(self.nodes, timeout=900)
        files = server.fetch_outputs(entry, tmp_path)
        out = {}
        for name in self.saved:
            f = next(p for p in files if p.name.startswith(f"{name}_"))
            out[name] = safetensors.torch.load_file(str(f))["latent_tensor"].double()
        return out


def region(y, x, h, w):
    m = torch.zeros(1, C_, H_, W_, dtype=torch.bool)
    m[..., y:y + h, x:x + w] = True
    return m


def stats(latent, where):
    v = latent[where]
    return float(v.mean()), float(v.std())


def rms(a, b, where):
    return float((a - b)[where].pow(2).mean().sqrt())


HOLE = (0, 0, 4, 4)                  # a quarter of the latent


# ----------------------------------------------------------------------------- noise mask + inversion
def test_noise_mask_through_inversion_keeps_the_source_and_regenerates_the_hole(oracle_server, tmp_path):
    """LATENT with a noise_mask (core Set Latent Noise Mask) -> Dream DDIM Inversion -> DreamSampler
    (positive = class B), the mask set after the inversion, and no inversion (fresh noise): the
    unmasked region ends equal to the source (within the round trip's precision), the hole is
    regenerated as class B."""
    g = Graph()
    mask = g.mask(*HOLE)
    steps = 20
    masked = [g.add("SetLatentNoiseMask", samples=g.source, mask=mask), 0]
    g.save(g.sample(g.invert(masked, steps), steps, positive=B), "before_inversion")
    masked_after = [g.add("SetLatentNoiseMask", samples=g.invert(g.source, steps), mask=mask), 0]
    g.save(g.sample(masked_after, steps, positive=B), "after_inversion")
    g.save(g.sample(masked, steps, positive=B), "no_inversion")          # fresh noise, as KSampler
    g.save(g.sample(g.invert(g.source, steps), steps), "round_trip")
    g.save(g.source, "source")
    out = g.run(oracle_server, tmp_path)
    src, hole = out["source"], region(*HOLE)
    trip = rms(out["round_trip"], src, torch.ones_like(hole))
    measured = {}
    for name in ("before_inversion", "after_inversion", "no_inversion"):
        measured[name] = (rms(out[name], src, ~hole), *stats(out[name], hole))
        print(f"{name}: known-region RMS {measured[name][0]:.3g} (round trip {trip:.3g}); hole mean "
              f"{measured[name][1]:.3f} std {measured[name][2]:.3f}")
    for name, (known, mean, _) in measured.items():
        assert known <= max(2 * trip, KNOWN_TOL), (name, measured, trip)
        assert abs(mean - MEANS[B]) < HOLE_MEAN_TOL, (name, measured)


# ----------------------------------------------------------------------------- Dream Mask Inpaint
@pytest.mark.parametrize("kind,preset", [("eps", "restore"), ("eps", "paper"), ("eps", "project"),
                                         ("flow", "restore")])
def test_mask_inpaint_fills_the_hole_keeps_the_rest_at_any_step_count(oracle_server, tmp_path, kind, preset):
    """Source of class A, target prompt class B, a quarter mask, 'source' connected, keep 1:
    the hole matches class B, the rest equals the source, at 20, 50 and 200 steps alike."""
    g = Graph(kind)
    mask = g.mask(*HOLE)
    regs = [g.add("DreamMaskInpaint", mask=mask, strength=1.0, preset=preset, feather=0, overlap="average",
                  keep=1.0, target=g.prompt[B], source=g.source), 0]
    for n in STEPS:
        g.save(g.sample(g.invert(g.source, n), n, regularizers=regs), f"steps{n}")
    g.save(g.source, "source")
    out = g.run(oracle_server, tmp_path)
    src, hole = out["source"], region(*HOLE)
    measured = {}
    for n in STEPS:
        x = out[f"steps{n}"]
        measured[n] = (*stats(x, hole), rms(x, src, ~hole))
        print(f"{kind}/{preset} {n} steps: hole mean {measured[n][0]:.3f} std {measured[n][1]:.3f}, "
              f"known RMS {measured[n][2]:.3g}")
    for n, (mean, std, known) in measured.items():
        assert abs(mean - MEANS[B]) < HOLE_MEAN_TOL, (n, measured)
        assert HOLE_STD_RATIO[0] * STD < std < HOLE_STD_RATIO[1] * STD, (n, measured)
        assert known < KNOWN_TOL, (n, measured)
    means = [m[0] for m in measured.values()]
    stds = [m[1] for m in measured.values()]
    assert max(means) - min(means) < STEP_MEAN_TOL, measured
    assert max(stds) - min(stds) < STEP_STD_TOL, measured


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_resampled_inpainting_from_noise_fills_the_hole_and_keeps_the_rest(oracle_server, tmp_path, kind):
    """The measured inpainting recipe (bench/INPAINTING_FLOW.md): DreamSampler from the source
    latent with fresh noise (denoise 1, no inversion), the target prompt as its positive, eta 1,
    resample 1, and Dream Mask Inpaint keeping the rest (keep 1, no target of its own): the hole has
    class B's mean, the rest equals the source, at 20 and 50 steps; resample 0 too.  Its spread is
    narrower than the class's (measured 0.16-0.22 against 0.3): eta 1 keeps no memory of the
    trajectory, so each step renoises a posterior mean; the recipe trades diversity for a hole that
    agrees with the prompt and the kept part (the README says so)."""
    g = Graph(kind)
    mask = g.mask(*HOLE)
    regs = [g.add("DreamMaskInpaint", mask=mask, strength=1.0, preset="paper", feather=0, overlap="average",
                  keep=1.0, source=g.source), 0]
    settings = [(20, 1), (50, 1), (20, 0)]
    for n, r in settings:
        node = g.sample(g.source, n, positive=B, regularizers=regs)
        g.nodes[node[0]]["inputs"].update(eta=1.0, resample=r)
        g.save(node, f"steps{n}-r{r}")
    g.save(g.source, "source")
    out = g.run(oracle_server, tmp_path)
    src, hole = out["source"], region(*HOLE)
    for n, r in settings:
        x = out[f"steps{n}-r{r}"]
        mean, std = stats(x, hole)
        known = rms(x, src, ~hole)
        print(f"{kind} {n} steps resample {r}: hole mean {mean:.3f} std {std:.3f}, known RMS {known:.3g}")
        assert abs(mean - MEANS[B]) < HOLE_MEAN_TOL, (n, r, mean)
        assert 0.45 * STD < std < 0.85 * STD, (n, r, std)
        assert known < KNOWN_TOL, (n, r, known)
    assert not torch.equal(out["steps20-r1"], out["steps20-r0"])


def test_two_masks_each_take_their_own_prompt(oracle_server, tmp_path):
    """Two holes, one prompt each (as the text_guided_inpainting_two_masks workflow): each hole
    matches its own class, the rest equals the source; swapping the prompts swaps the holes."""
    g = Graph()
    r1, r2 = (0, 0, 4, 4), (5, 3, 3, 5)
    m1, m2 = g.mask(*r1), g.mask(*r2)
    inv = g.invert(g.source, 30)
    for name, (t1, t2) in {"bc": (B, C), "cb": (C, B)}.items():
        regs = [g.add("DreamMaskInpaint", mask=m1, strength=1.0, preset="restore", feather=0, overlap="average",
                      keep=1.0, target=g.prompt[t1], source=g.source, mask_2=m2, target_2=g.prompt[t2]), 0]
        g.save(g.sample(inv, 30, regularizers=regs), name)
    g.save(g.source, "source")
    out = g.run(oracle_server, tmp_path)
    h1, h2 = region(*r1), region(*r2)
    for name, (t1, t2) in {"bc": (B, C), "cb": (C, B)}.items():
        x = out[name]
        (m_1, _), (m_2, _) = stats(x, h1), stats(x, h2)
        known = rms(x, out["source"], ~(h1 | h2))
        print(f"two masks {name}: hole 1 mean {m_1:.3f}, hole 2 mean {m_2:.3f}, known RMS {known:.3g}")
        assert abs(m_1 - MEANS[t1]) < HOLE_MEAN_TOL and abs(m_2 - MEANS[t2]) < HOLE_MEAN_TOL, (name, m_1, m_2)
        assert known < KNOWN_TOL, (name, known)


# ----------------------------------------------------------------------------- the inversion-free edit in a mask
@pytest.mark.parametrize("kind", ["flow", "eps"])
def test_distill_edit_inside_a_mask_keeps_the_rest_exactly_and_moves_the_hole(oracle_server, tmp_path, kind):
    """Dream Distill Edit (issue 23) with a MASK, class A -> class B, on the exact oracle through the
    server: outside the mask the latent is the source's bit for bit.  Its FlowEdit form (strength =
    fidelity = 1, cfg 1, every level) lands the hole on class B's mean; the node's defaults (cfg 2.5
    against the source, fidelity 1.3) extrapolate past it, as CFG does on an exact posterior (the
    learned model needs that push: bench/QUALITY.md)."""
    g = Graph(kind)
    mask = g.mask(*HOLE)
    g.save(g.source, "source")
    for name, cfg, fidelity in (("flowedit_form", 1.0, 1.0), ("defaults", 2.5, 1.3)):
        edited = [g.add("DreamDistillEdit", model=g.model, source=g.prompt[A], target=g.prompt[B],
                        latent_image=g.source, seed=0, steps=20, scheduler=g.scheduler, start=1.0, strength=1.0,
                        fidelity=fidelity, cfg=cfg, source_cfg=1.0, mask=mask), 0]
        g.save(edited, name)
    out = g.run(oracle_server, tmp_path)
    hole = region(*HOLE)
    before = stats(out["source"], hole)[0]
    means = {}
    for name in ("flowedit_form", "defaults"):
        assert torch.equal(out[name][~hole], out["source"][~hole]), name
        means[name] = stats(out[name], hole)[0]
    print(f"{kind}: hole mean {before:.3f} -> {means} (class A {MEANS[A]}, class B {MEANS[B]})")
    assert abs(means["flowedit_form"] - MEANS[B]) < HOLE_MEAN_TOL, means
    assert means["defaults"] > MEANS[B], means
