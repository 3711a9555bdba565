"""End to end through a real ComfyUI server (main.py --cpu) with the pack in custom_nodes:
registration, every shipped workflow via /prompt, and clear errors for bad prompts."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.server import execution_error
from tools.workflows import build_ui, load

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))


def our_node_ids():
    import ast
    ids = []
    for py in sorted((REPO / "nodes").glob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "node_id" and isinstance(node.value, ast.Constant):
                ids.append(node.value.value)
    return ids


def test_pack_loads_and_every_node_is_documented(server):
    from tools.server import PACK_DIR_NAME
    bad = [ln for ln in server.log_path.read_text().splitlines()
           if ("IMPORT FAILED" in ln or "Cannot import" in ln) and PACK_DIR_NAME in ln]
    assert not bad, bad
    info = server.object_info()
    ids = our_node_ids()
    assert len(ids) >= 6 and len(set(ids)) == len(ids)
    for nid in ids:
        assert nid in info, f"{nid} not registered; server log:\n{server.log_tail()}"
        node = info[nid]
        assert nid.startswith("Dream")
        assert node["category"].startswith("DreamSampler")
        assert len(node["description"]) > 40, nid
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{nid}.{name} has no tooltip"


def test_shipped_workflows_are_in_sync_with_their_specs(server):
    from tools.workflow_specs import all_specs
    info = server.object_info()
    specs = all_specs()
    assert {p.stem for p in WORKFLOWS} == set(specs)
    for p in WORKFLOWS:
        wf = specs[p.stem]
        assert build_ui(wf["nodes"], info, extra={"dreamsampler": {"title": wf["title"]}}) == load(p), \
            f"{p.name} is stale: run scripts/build_workflows.py"


def test_template_browser_serves_every_workflow_and_its_picture(server):
    """ComfyUI lists example_workflows/ under the pack and serves each file (and its thumbnail) from
    /api/workflow_templates/<pack>/; a second example folder (examples/, example/...) in the pack
    would shadow that route and every template would 404."""
    import urllib.request
    from tools.server import PACK_DIR_NAME
    listed = server.get("/workflow_templates")
    assert sorted(listed.get(PACK_DIR_NAME, [])) == sorted(p.stem for p in WORKFLOWS), listed
    for p in WORKFLOWS:
        base = f"{server.url}/api/workflow_templates/{PACK_DIR_NAME}/{p.stem}"
        with urllib.request.urlopen(base + ".json") as r:
            assert json.loads(r.read()) == load(p)
        with urllib.request.urlopen(base + ".jpg") as r:
            thumb = Image.open(io.BytesIO(r.read()))
            assert thumb.format == "JPEG" and thumb.width >= 600, (p.stem, thumb.size)


def _sd15_workflows():
    from tools.workflow_specs import sd15_workflows
    return sd15_workflows(REPO / "example_workflows")


# (the other families' workflows run on their tiny models: tests/e2e/test_family_matrix.py)
@pytest.mark.parametrize("workflow", _sd15_workflows(), ids=lambda p: p.stem)
def test_workflow_runs_end_to_end(server, tiny_ckpt, workflow, tmp_path, workflow_outputs):
    from tools.workflow_specs import test_overrides
    from tools.workflows import prepare_prompt
    ui, prompt = prepare_prompt(server, workflow, tiny_ckpt.name, fast=True, test_overrides=test_overrides())
    assert any(n["class_type"].startswith("Dream") for n in prompt.values())
    entry = server.run(prompt, timeout=900, workflow=ui)
    files = server.fetch_outputs(entry, tmp_path)
    assert files, f"{workflow.name} wrote no output"
    workflow_outputs[workflow.stem] = {f.name: f.read_bytes() for f in files}
    for f in files:
        if f.suffix == ".png":
            arr = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32)
            assert arr.std() > 0.5, f"{f.name} is a constant image"
        elif f.suffix == ".svg":
            assert b"<svg" in f.read_bytes()[:2000]


def _base_prompt(server, tiny_ckpt):
    from tools.workflows import prepare_prompt
    return prepare_prompt(server, REPO / "example_workflows" / "real_image_editing.json", tiny_ckpt.name, fast=True)[1]


def _node(prompt, cls):
    return next(k for k, v in prompt.items() if v["class_type"] == cls)


def test_bad_widget_value_is_a_400_naming_the_input_and_server_keeps_serving(server, tiny_ckpt):
    prompt = _base_prompt(server, tiny_ckpt)
    prompt[_node(prompt, "DreamSampler")]["inputs"]["steps"] = -3
    status, resp = server.queue(prompt)
    assert status == 400
    errs = resp["node_errors"][_node(prompt, "DreamSampler")]["errors"]
    assert any("steps must be at least 1" in e["details"] for e in errs), errs
    bad_edit = _base_prompt(server, tiny_ckpt)
    k = _node(bad_edit, "DreamCFGEdit")
    bad_edit[k]["inputs"].update(start=0.1, end=0.9)
    status, resp = server.queue(bad_edit)
    assert status == 400 and "start" in json.dumps(resp["node_errors"][k])
    server.run(_base_prompt(server, tiny_ckpt), timeout=600)       # still serving


def test_mismatched_inversion_is_a_clear_execution_error(server, tiny_ckpt):
    prompt = _base_prompt(server, tiny_ckpt)
    prompt[_node(prompt, "DreamDDIMInversion")]["inputs"]["denoise"] = 0.5
    status, resp = server.queue(prompt)
    assert status == 200
    entry = server.wait(resp["prompt_id"], timeout=600)
    assert entry["status"]["status_str"] == "error"
    err = execution_error(entry)
    assert err["node_type"] == "DreamSampler"
    assert "denoise" in err["exception_message"] and "inversion" in err["exception_message"]
    server.run(_base_prompt(server, tiny_ckpt), timeout=600)
