"""Every model family x every pack feature through the real server (issue 14).

One server serves every family of tests/support/families (tiny architecture-faithful models with
seeded weights).  Each cell builds an API prompt from the family's loaders and the feature's nodes,
runs it through /prompt and checks what could fail: the output latent's shape and format, finiteness,
that the feature changed something, determinism (the same prompt twice, after other cells ran: the
shared model is untouched), and that the conditioning reaches the model (another prompt, and the
family's own conditioning such as Flux guidance or SDXL size conds, changes the output).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support.families import Prompt, all_files, families
from support.graphs import node_adder
from tools.server import ComfyServer

NODES = Path(__file__).resolve().parents[1] / "support" / "server_nodes"
FAMILIES = families()
STEPS = 3
#: max |kept latent - source|: model space and back (process_latent_in / out) in float32
KEPT_ATOL = 1e-5


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory):
    srv = ComfyServer(tmp_path_factory.mktemp("families"), custom_nodes=[NODES], models=all_files())
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def info(matrix_server):
    return matrix_server.object_info()


# ----------------------------------------------------------------------------- features
def _sample(p, r, latent, regularizers=None, positive=None, eta=0.0, **extra):
    if regularizers is not None:
        extra["regularizers"] = regularizers
    return p.add("DreamSampler", model=r.model, seed=0, steps=STEPS, cfg=r.cfg, scheduler="simple",
                 positive=positive or r.negative, negative=r.negative, latent_image=latent, denoise=1.0, eta=eta,
                 eta_schedule="constant", **extra)


def _invert(p, r, refine=0):
    return p.add("DreamDDIMInversion", model=r.model, conditioning=r.negative, latent_image=r.latent, steps=STEPS,
                 scheduler="simple", denoise=1.0, refine_steps=refine)


def f_invert_sample(p, r):
    return _sample(p, r, _invert(p, r, refine=1))


def f_sample(p, r):
    """DreamSampler from noise with the prompt (a KSampler replacement)."""
    return _sample(p, r, r.latent, positive=r.positive)


def f_cfg_edit(p, r):
    edit = p.add("DreamCFGEdit", target=r.positive, strength=0.5, schedule="invariant", start=1.0, end=0.0,
                 source=r.negative)
    return _sample(p, r, _invert(p, r), regularizers=edit)


def f_distill_edit(p, r, mask=None):
    """Dream Distill Edit (issue 23's inversion-free edit): the null prompt as the source, the prompt as
    the target, every level of a STEPS grid; ``mask``: a MASK (white = may change)."""
    extra = {} if mask is None else {"mask": mask}
    return p.add("DreamDistillEdit", model=r.model, source=r.negative, target=r.positive, latent_image=r.latent,
                 seed=0, steps=STEPS, scheduler="simple", start=1.0, strength=1.5, fidelity=1.0, cfg=1.0,
                 source_cfg=1.0, **extra)


def f_distill_edit_mask(p, r):
    return f_distill_edit(p, r, mask=right_half_mask(p, r))


def f_mask_inpaint(p, r):
    mask = p.add("SolidMask", value=1.0, width=r.extra["width"], height=r.extra["height"])
    reg = p.add("DreamMaskInpaint", mask=mask, target=r.positive, strength=1.0, preset="restore")
    return _sample(p, r, _invert(p, r), regularizers=reg)


def f_inpaint_recipe(p, r):
    """The flow models' measured inpainting recipe (bench/INPAINTING_FLOW.md): from the source latent
    with fresh noise (no inversion), the prompt as DreamSampler's positive, eta 1, resample 1, and
    Dream Mask Inpaint (the right half; no target of its own) keeping the rest."""
    reg = p.add("DreamMaskInpaint", mask=right_half_mask(p, r), strength=1.0, preset="paper", keep=1.0,
                source=r.latent)
    return _sample(p, r, r.latent, regularizers=reg, positive=r.positive, eta=1.0, resample=1)


def right_half_mask(p, r):
    """A MASK of the image's size, 1 (repaint) on the right half."""
    w, h = r.extra["width"], r.extra["height"]
    empty = p.add("SolidMask", value=0.0, width=w, height=h)
    half = p.add("SolidMask", value=1.0, width=w // 2, height=h)
    return p.add("MaskComposite", destination=empty, source=half, x=w // 2, y=0, operation="add")


def f_keep_known(p, r):
    """KeepKnown: a noise mask (the right half) on the refined inversion; DreamSampler repaints the
    masked half with the prompt and keeps the rest on the source."""
    masked = p.add("SetLatentNoiseMask", samples=_invert(p, r, refine=1), mask=right_half_mask(p, r))
    return _sample(p, r, masked, positive=r.positive)


def f_data_consistency(p, r):
    deg = p.add("DreamDegrade", image=r.image, operator="sr_bicubic", scale=2, sigma_y=0.0, seed=0)
    reg = p.add("DreamDataConsistency", vae=r.vae, measurement=deg, operator="sr_bicubic", scale=2,
                preset="restore", strength=1.0)
    return _sample(p, r, _invert(p, r), regularizers=reg)


def f_cyclediffusion(p, r):
    enc = p.add("DreamDDPMEncode", model=r.model, source=r.negative, negative=r.negative, latent_image=r.latent,
                seed=0, steps=STEPS, scheduler="simple", strength=0.8, eta=0.3, source_cfg=1.0,
                coupling="posterior")
    return p.add("DreamDDPMDecode", model=r.model, target=r.positive, negative=r.negative, encoded=enc, cfg=r.cfg)


def f_cycle_sde(p, r):
    return p.add("DreamCycleSDEEdit", model=r.model, source=r.negative, target=r.positive, negative=r.negative,
                 latent_image=r.latent, seed=0, steps=STEPS, scheduler="simple", t0=0.7, stage2="cycle_sde",
                 cfg=r.cfg, source_cfg=1.0)


def f_sde_drag(p, r):
    w, h = r.extra["width"], r.extra["height"]
    points = json.dumps([{"x": w // 4, "y": h // 2}, {"x": w // 2, "y": h // 2}])
    node = p.add("DreamSDEDrag", model=r.model, vae=r.vae, image=r.image, positive=r.positive, negative=r.negative,
                 points=points, seed=0, steps=STEPS, scheduler="simple", t0=0.6, cfg=max(r.cfg, 1.0),
                 step_size=float(min(w, 64)))              # the node's largest step: one sub-drag
    return p.out(node, 1)


#: the generator node of each generator input
GENERATORS = {"latent": "DreamLatentGenerator", "svg": "DreamSVGGenerator", "image": "DreamImageGenerator"}


def _distill(p, r, method, inner_steps, fit_space, **generator):
    """A generator node of one input (``latent=`` / ``svg=`` / ``image=``) distilled by ``method``
    (DreamSampler Distill or Dream SDS); its latent output."""
    ((kind, value),) = generator.items()
    grid = {"scheduler": "simple"} if method == "DreamDistill" else {}
    node = p.add(method, model=r.model, positive=r.positive, negative=r.negative, vae=r.vae,
                 generator=p.add(GENERATORS[kind], **{kind: value}), seed=0, iterations=STEPS, inner_steps=inner_steps,
                 cfg=r.cfg, fit_space=fit_space, **grid)
    return p.out(node, 2)


def f_distill_latent(p, r):
    return _distill(p, r, "DreamDistill", 2, "latent", latent=r.latent)


def f_distill_svg(p, r):
    """DreamSampler distillation of random SVG paths (fit in pixels: the render against the decoded target)."""
    svg = p.add("DreamSVGInit", mode="random", width=r.extra["width"], height=r.extra["height"], num_paths=8,
                num_segments=2, seed=0)
    return _distill(p, r, "DreamDistill", 2, "auto", svg=svg)


def f_distill_image(p, r):
    """SDS of an image generator, the gradient through the family's VAE encoder (fit in latent space)."""
    return _distill(p, r, "DreamSDS", 1, "latent", image=r.image)


def f_csd(p, r):
    node = p.add("DreamCSDEdit", model=r.model, vae=r.vae, image=r.image, target=r.positive, negative=r.negative,
                 mode="frames", seed=0, iterations=2, text_cfg=max(r.cfg, 1.0), image_cfg=1.0)
    return p.out(node, 1)


FEATURES = {"sample": f_sample, "invert_sample": f_invert_sample, "cfg_edit": f_cfg_edit,
            "mask_inpaint": f_mask_inpaint, "data_consistency": f_data_consistency,
            "cyclediffusion": f_cyclediffusion, "cycle_sde": f_cycle_sde, "sde_drag": f_sde_drag,
            "distill_latent": f_distill_latent, "distill_svg": f_distill_svg, "distill_image": f_distill_image,
            "csd": f_csd, "keep_known": f_keep_known, "distill_edit": f_distill_edit}
#: features a video family runs (the others are image methods: drag points, CSD windows, SVG)
VIDEO_FEATURES = ("sample", "invert_sample", "cfg_edit", "data_consistency", "cyclediffusion", "cycle_sde",
                  "distill_edit")
#: features only the rows that name them in ``extra_features`` run
EXTRA_FEATURES = ("keep_known",)
#: the cells whose own prompt is the positive (DreamSampler's, CFG Edit's / Mask Inpaint's target); the
#: others read only the null prompt (inversion, the base of DreamSampler)
USES_POSITIVE = ("sample", "cfg_edit", "mask_inpaint", "keep_known", "distill_edit")


def family_features(fam):
    for feat in FEATURES:
        if fam.video and feat not in VIDEO_FEATURES:
            continue
        if feat in fam.skip_features or (feat in EXTRA_FEATURES and feat not in fam.extra_features):
            continue
        yield feat


def cells(only=lambda fam: True):
    for name, fam in FAMILIES.items():
        if only(fam):
            for feat in family_features(fam):
                yield pytest.param(name, feat, id=f"{name}-{feat}")


def run_latent(server, info, fam, build, tmp_path, tag) -> torch.Tensor:
    p = Prompt(info)
    refs = fam.load(p)
    p.save_latent(build(p, refs), f"{fam.name}_{tag}")
    entry = server.run(p.nodes, timeout=600)
    files = [f for f in server.fetch_outputs(entry, tmp_path / tag) if f.suffix == ".latent"]
    assert len(files) == 1, files
    return load_file(str(files[0]))["latent_tensor"]


def source_latent(server, info, fam, tmp_path):
    return run_latent(server, info, fam, lambda p, r: r.latent, tmp_path, "source")


# ----------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize("family,feature", list(cells()))
def test_feature_on_family(matrix_server, info, tmp_path, family, feature):
    fam = FAMILIES[family]
    src = source_latent(matrix_server, info, fam, tmp_path)
    assert tuple(src.shape) == tuple(fam.latent_shape), (src.shape, fam.latent_shape)
    out = run_latent(matrix_server, info, fam, FEATURES[feature], tmp_path, feature)
    assert out.shape == src.shape and out.dtype == src.dtype
    assert torch.isfinite(out).all()
    assert not torch.equal(out, src)                                # the feature did something
    again = run_latent(matrix_server, info, fam, FEATURES[feature], tmp_path, feature + "_again")
    assert torch.equal(out, again)                                  # deterministic; shared model untouched


@pytest.mark.parametrize("family,feature", list(cells(lambda fam: fam.reference)))
def test_reference_latent_passes_through_every_cell(matrix_server, info, tmp_path, family, feature):
    """Instruction-edit rows: the pack's nodes hand the prompts' reference latents on to the model.
    Another reference image in the one prompt the cell's node reads (DreamSampler's positive, CFG
    Edit's / Mask Inpaint's target, the null prompt of the inversion and the sampler's base) changes
    the output; the source latent and every other prompt are the same."""
    from support.families._build import OTHER_REFERENCE, with_reference
    fam = FAMILIES[family]
    which = "positive" if feature in USES_POSITIVE else "negative"

    def swapped(p, r):
        other = with_reference(p, r, OTHER_REFERENCE)
        return FEATURES[feature](p, dataclasses.replace(r, **{which: getattr(other, which)}))
    base = run_latent(matrix_server, info, fam, FEATURES[feature], tmp_path, feature)
    out = run_latent(matrix_server, info, fam, swapped, tmp_path, feature + "_other_reference")
    assert not torch.equal(base, out), f"the {which} prompt's reference latent does not reach the model"


@pytest.mark.parametrize("family", [n for n, f in FAMILIES.items() if "keep_known" in f.extra_features])
def test_keep_known_keeps_the_unmasked_latent(matrix_server, info, tmp_path, family):
    """A noise mask on the right half: the left half of DreamSampler's output is the source latent,
    the right half is repainted."""
    fam = FAMILIES[family]
    src = source_latent(matrix_server, info, fam, tmp_path)
    out = run_latent(matrix_server, info, fam, f_keep_known, tmp_path, "keep_known")
    half = src.shape[-1] // 2
    kept = (out[..., :half] - src[..., :half]).abs().max().item()
    changed = (out[..., half:] - src[..., half:]).abs().max().item()
    print(f"{family}: kept half max |out - src| = {kept:.3g}, repainted half {changed:.3g}")
    assert kept <= KEPT_ATOL, kept
    assert changed > 1e-2, changed


@pytest.mark.parametrize("family", list(FAMILIES))
def test_masked_distill_edit_keeps_the_unmasked_latent_exactly(matrix_server, info, tmp_path, family):
    """Dream Distill Edit with a MASK (the right half) on every family, image and video latents: the
    left half of the output is the source latent (through the model's latent space and back), the
    right half is edited as much as without the mask (how much depends on how much the tiny model's
    output depends on its prompt: 1e-8 on AuraFlow's, 0.98 on Cosmos's)."""
    fam = FAMILIES[family]
    src = source_latent(matrix_server, info, fam, tmp_path)
    out = run_latent(matrix_server, info, fam, f_distill_edit_mask, tmp_path, "distill_edit_mask")
    half = src.shape[-1] // 2
    free = run_latent(matrix_server, info, fam, f_distill_edit, tmp_path, "distill_edit")
    kept = (out[..., :half] - src[..., :half]).abs().max().item()
    changed = (out[..., half:] - src[..., half:]).abs().max().item()
    unmasked = (free[..., half:] - src[..., half:]).abs().max().item()
    print(f"{family}: kept {kept:.3g}, changed {changed:.3g}, unmasked run {unmasked:.3g}")
    assert kept <= KEPT_ATOL, kept
    assert changed > 0 and changed >= 0.5 * unmasked, (changed, unmasked)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_inpainting_recipe_keeps_the_unmasked_latent_and_paints_the_hole(matrix_server, info, tmp_path, family):
    """The from-noise inpainting recipe (eta 1, resample 1, Dream Mask Inpaint keep 1) on every family,
    image and video latents: the left half of the output is the source latent, the right half is
    repainted."""
    fam = FAMILIES[family]
    src = source_latent(matrix_server, info, fam, tmp_path)
    out = run_latent(matrix_server, info, fam, f_inpaint_recipe, tmp_path, "inpaint_recipe")
    half = src.shape[-1] // 2
    kept = (out[..., :half] - src[..., :half]).abs().max().item()
    changed = (out[..., half:] - src[..., half:]).abs().max().item()
    print(f"{family}: kept {kept:.3g}, repainted {changed:.3g}")
    assert kept <= KEPT_ATOL, kept
    assert changed > 1e-2, changed


@pytest.mark.parametrize("family", list(FAMILIES))
def test_conditioning_reaches_the_model(matrix_server, info, tmp_path, family):
    """Another prompt changes DreamSampler's output; so does the family's own conditioning."""
    fam = FAMILIES[family]
    a = run_latent(matrix_server, info, fam, f_sample, tmp_path, "prompt_a")
    b = run_latent(matrix_server, info, fam, lambda p, r: _sample(p, r, r.latent, positive=r.alt_positive),
                   tmp_path, "prompt_b")
    assert not torch.equal(a, b)
    for label, build_a, build_b in (fam.conditioning_checks() if fam.conditioning_checks else ()):
        x = run_latent(matrix_server, info, fam, build_a, tmp_path, f"{label}_a")
        y = run_latent(matrix_server, info, fam, build_b, tmp_path, f"{label}_b")
        assert not torch.equal(x, y), label


# ----------------------------------------------------------------------------- shipped workflows
def _family_workflows():
    from tools.workflow_specs import workflow_families
    return sorted(workflow_families().items())


def _outputs(server, prompt, ui, dest):
    entry = server.run(prompt, timeout=900, workflow=ui)
    files = [f for f in server.fetch_outputs(entry, dest) if not f.name.startswith("ComfyUI_temp")]   # no previews
    assert files, "the workflow saved no output"
    return files


def _frames(path: Path) -> list:
    """The pictures of an output file as uint8 arrays (a video: every frame)."""
    import numpy as np
    from PIL import Image
    if path.suffix == ".png":
        return [np.asarray(Image.open(path).convert("RGB"))]
    import av
    with av.open(str(path)) as f:
        return [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]


@pytest.mark.parametrize("stem,family", _family_workflows(), ids=[s for s, _ in _family_workflows()])
def test_shipped_family_workflow_runs_on_its_tiny_model(matrix_server, tmp_path, stem, family):
    """The shipped workflow (its UI file, converted as a headless client does) runs through /prompt
    with its loaders and text encoders swapped for the family's tiny model (support.families.stand_ins);
    every model file the user's graph loads is named in properties.models with its download source;
    the output is a non-constant picture / video of the working size; the target prompt reaches it."""
    from support.families.stand_ins import OUTPUTS, on_tiny_family
    from tools.workflow_specs import test_overrides
    from tools.workflows import load, prepare_prompt, upload_inputs
    workflow = Path(__file__).resolve().parents[2] / "example_workflows" / f"{stem}.json"
    for node in load(workflow)["nodes"]:
        if node["type"] in OUTPUTS:
            named = {m["name"]: m for m in node["properties"].get("models", [])}
            files = [v for v in node["widgets_values"] if isinstance(v, str) and v.endswith(".safetensors")]
            assert files and all(f in named and named[f]["url"].startswith("https://huggingface.co/")
                                 for f in files), (node["type"], files, named)
    upload_inputs(matrix_server)
    ui, prompt = prepare_prompt(matrix_server, workflow, None, fast=True, test_overrides=test_overrides())
    on_tiny_family(prompt, family)
    frames = [fr for f in _outputs(matrix_server, prompt, ui, tmp_path / "a") for fr in _frames(f)]
    expected = 5 if FAMILIES[family].video else 1                   # the CI frame count (TEST_OVERRIDES)
    assert len(frames) == expected and all(fr.shape == (64, 64, 3) for fr in frames), [fr.shape for fr in frames]
    assert all(fr.std() > 0.5 for fr in frames), "a constant frame"

    targets = [k for k, v in prompt.items()
               if v["class_type"] == "TestFamilyText" and v["_meta"].get("title", "").startswith("Target prompt")]
    assert len(targets) == 1, targets
    prompt[targets[0]]["inputs"]["text"] += ", at night"
    other = [fr for f in _outputs(matrix_server, prompt, ui, tmp_path / "b") for fr in _frames(f)]
    assert any((a != b).any() for a, b in zip(frames, other)), "the target prompt does not reach the output"


def _masked_edits():
    from tools.workflow_specs import workflow_families
    from tools.workflow_specs.families import KEEPS_UNMASKED
    return sorted((stem, workflow_families()[stem], titles) for stem, titles in KEEPS_UNMASKED.items())


@pytest.mark.parametrize("stem,family,titles", _masked_edits(), ids=[s for s, _, _ in _masked_edits()])
def test_shipped_masked_edit_keeps_every_unmasked_pixel(matrix_server, tmp_path, stem, family, titles):
    """The shipped masked instruction edit on its tiny model: outside the composite (grown, blurred)
    mask every pixel of the saved PNG is the working image's own, to the 8-bit value; inside the edit
    mask the picture changed; the latent DreamSampler returns equals the source latent on every latent
    cell the edit mask does not touch (KeepKnown through the noise mask)."""
    import numpy as np
    from support.families.stand_ins import on_tiny_family
    from tools.workflow_specs import test_overrides
    from tools.workflows import prepare_prompt, upload_inputs
    upload_inputs(matrix_server)
    ui, prompt = prepare_prompt(matrix_server, Path(__file__).resolve().parents[2] / "example_workflows"
                                / f"{stem}.json", None, fast=True, test_overrides=test_overrides())
    on_tiny_family(prompt, family)
    add, by_title = node_adder(prompt)

    def save(image, name):
        add("SaveImage", images=image, filename_prefix=f"check/{name}")

    save([by_title[titles["image"]], 0], "source")
    support = add("ThresholdMask", mask=[by_title[titles["composite_mask"]], 0], value=0.0)   # 1 where mask > 0
    save(add("MaskToImage", mask=support), "support")
    save(add("MaskToImage", mask=[by_title[titles["edit_mask"]], 0]), "edit_mask")
    (sampler,) = [k for k, v in prompt.items() if v["class_type"] == "DreamSampler"]
    (encode,) = [k for k, v in prompt.items() if v["class_type"] == "VAEEncode"]
    add("SaveLatent", samples=[sampler, 0], filename_prefix="check/edited")
    add("SaveLatent", samples=[encode, 0], filename_prefix="check/source")
    files = {f.name.rsplit("_", 2)[0] + f.suffix: f for f in _outputs(matrix_server, prompt, ui, tmp_path)}
    (result,) = [f for name, f in files.items() if name.startswith(stem)]
    pic = {k: _frames(files[f"{k}.png"])[0].astype(int) for k in ("source", "support", "edit_mask")}
    out = _frames(result)[0].astype(int)

    outside = (pic["support"] == 0).all(-1)
    assert out.shape == pic["source"].shape == (64, 64, 3)
    assert 0.3 < outside.mean() < 0.95, outside.mean()
    assert (out[outside] == pic["source"][outside]).all(), np.abs(out - pic["source"])[outside].max()
    inside = pic["edit_mask"][..., 0] > 127
    assert inside.sum() > 16 and np.abs(out - pic["source"])[inside].mean() > 2.0

    edited, source = (load_file(str(files[f"{k}.latent"]))["latent_tensor"] for k in ("edited", "source"))
    touched = torch.nn.functional.max_pool2d(torch.from_numpy(pic["edit_mask"][..., 0] > 0).float()[None, None],
                                             64 // edited.shape[-1])
    touched = torch.nn.functional.max_pool2d(touched, 3, stride=1, padding=1)[0, 0] > 0     # the bilinear resize
    assert 0 < touched.float().mean() < 0.75
    assert (edited - source)[..., ~touched].abs().max() <= KEPT_ATOL
    assert (edited - source)[..., touched].abs().max() > 1e-2


def _readme_table_families(heading: str, header_start: str) -> list:
    """The first cells of the table that starts with ``header_start`` under README's ``heading``."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index(heading):]
    table = section[section.index(header_start):].split("\n\n")[0].splitlines()
    return [row.split("|")[1].strip() for row in table[2:]]


def test_readme_family_tables_claim_exactly_the_families_of_the_matrix():
    """No family in the README's tables without its tiny model in the matrix, and every matrix
    family with its row (README 'Model families' and the per-family defaults)."""
    titles = sorted(f.title for f in FAMILIES.values())
    listed = _readme_table_families("### Model families", "| Family | Loaded in the test through")
    assert sorted(listed) == titles, (sorted(set(listed) ^ set(titles)))
    defaults = [t for t in _readme_table_families("### Recommended defaults", "| Family | cfg |")
                if not t.startswith("learned test model")]
    assert sorted(defaults) == titles, (sorted(set(defaults) ^ set(titles)))
    from tools.workflow_specs import workflow_families
    shipped = {FAMILIES[f].title: stem for stem, f in workflow_families().items()}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for title, stem in shipped.items():
        assert f"| {title} |" in readme and f"`{stem}`" in readme, (title, stem)
