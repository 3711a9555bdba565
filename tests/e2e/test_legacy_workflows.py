"""Saved workflows of an older pack still load and run on a real server, and give what their regenerated
versions give.

tests/data/legacy_workflows holds text_to_svg and svg_restoration as they shipped with the all-in-one
Dream Score Distill (now deprecated: hidden from node search, kept for saved graphs).  Each is converted
from its UI format with comfy-cli against the live /object_info (as the frontend or a headless client
loads it), queued through /prompt at CI settings, and compared with the shipped workflow of the same name,
which does the same with Dream SVG Generator (+ Dream Distill Data Term) -> DreamSampler Distill: the same
latent bit for bit, the same saved image and SVG drawing."""
import re

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from support.graphs import node_adder
from tools.host import REPO
from tools.workflows import LEGACY_WORKFLOWS

LEGACY = sorted(p.stem for p in LEGACY_WORKFLOWS.glob("*.json"))


def _drawing(svg: bytes) -> bytes:
    """An SVG without core Save SVG's <metadata> block (it holds the executed prompt: the node types)."""
    return re.sub(rb"<metadata>.*?</metadata>\s*", b"", svg, flags=re.S)


def _run(server, tiny_ckpt, path, tmp_path, tag):
    """(latent of the distillation node, {output suffix: [file contents]}) of one workflow file at CI
    settings; also the API prompt's node types."""
    from tools.workflow_specs import test_overrides
    from tools.workflows import prepare_prompt
    ui, prompt = prepare_prompt(server, path, tiny_ckpt.name, fast=True, test_overrides=test_overrides())
    (node,) = [k for k, v in prompt.items() if v["class_type"] in ("DreamScoreDistill", "DreamDistill")]
    add, _ = node_adder(prompt)
    add("SaveLatent", samples=[node, 2], filename_prefix=f"legacy_check/{path.stem}_{tag}")
    files = server.fetch_outputs(server.run(prompt, timeout=900, workflow=ui), tmp_path / tag)
    outputs = {}
    for f in sorted(files):
        if f.suffix == ".latent":
            latent = load_file(str(f))["latent_tensor"]
        elif f.suffix == ".png":
            outputs.setdefault(".png", []).append(Image.open(f).convert("RGB").tobytes())
        elif f.suffix == ".svg":
            outputs.setdefault(".svg", []).append(_drawing(f.read_bytes()))
    return latent, outputs, {v["class_type"] for v in prompt.values()}


def test_the_old_node_is_registered_as_deprecated(server):
    info = server.object_info()
    assert info["DreamScoreDistill"].get("deprecated") is True
    for node in ("DreamDistill", "DreamSDS", "DreamDDS", "DreamSVGGenerator", "DreamImageGenerator",
                 "DreamLatentGenerator", "DreamDistillDataTerm"):
        assert not info[node].get("deprecated"), node


@pytest.mark.parametrize("stem", LEGACY)
def test_a_saved_score_distill_workflow_runs_as_its_regenerated_version(server, tiny_ckpt, tmp_path, stem):
    assert LEGACY == ["svg_restoration", "text_to_svg"]
    old_latent, old_out, old_types = _run(server, tiny_ckpt, LEGACY_WORKFLOWS / f"{stem}.json", tmp_path, "legacy")
    new_latent, new_out, new_types = _run(server, tiny_ckpt, REPO / "example_workflows" / f"{stem}.json", tmp_path,
                                          "new")
    assert "DreamScoreDistill" in old_types and "DreamDistill" not in old_types
    assert "DreamScoreDistill" not in new_types and {"DreamDistill", "DreamSVGGenerator"} <= new_types
    assert torch.isfinite(old_latent).all() and old_latent.abs().max() > 0
    assert torch.equal(old_latent, new_latent), float((old_latent - new_latent).abs().max())
    assert sorted(old_out) == [".png", ".svg"]
    assert old_out == new_out
