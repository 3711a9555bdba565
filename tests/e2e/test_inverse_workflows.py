"""The shipped inpainting / restoration workflows through a real ComfyUI server (tiny model, CI
fast settings), and bad inputs answered with clear errors while the server keeps serving."""
from pathlib import Path

import pytest

from build_workflows import test_overrides as workflow_overrides
from run_workflow import prepare_prompt
from support.server import execution_error
from support.workflows import set_widget

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = {
    "text_guided_inpainting": "inpaint_",
    "text_guided_inpainting_two_masks": "inpaint_two_masks_",
    "super_resolution_x4": "sr_x4_",
    "gaussian_deblurring": "deblur_gauss_",
}


def _prompt(server, tiny_ckpt, stem):
    return prepare_prompt(server, REPO / "workflows" / f"{stem}.json", tiny_ckpt.name, fast=True,
                          test_overrides=workflow_overrides())


@pytest.mark.parametrize("stem", list(WORKFLOWS))
def test_workflow_runs_end_to_end(server, tiny_ckpt, tmp_path, stem):
    ui, prompt = _prompt(server, tiny_ckpt, stem)
    entry = server.run(prompt, timeout=900, workflow=ui)
    files = server.fetch_outputs(entry, tmp_path)
    assert any(f.name.startswith(WORKFLOWS[stem]) for f in files), files


def _error(server, prompt) -> str:
    status, resp = server.queue(prompt)
    assert status == 200, resp
    entry = server.wait(resp["prompt_id"], timeout=600)
    assert entry["status"]["status_str"] == "error"
    return execution_error(entry).get("exception_message", "")


def test_bad_inputs_are_clear_errors_and_server_keeps_running(server, tiny_ckpt):
    _, sr = _prompt(server, tiny_ckpt, "super_resolution_x4")
    set_widget(sr, "ImageScale", "width", 62)
    set_widget(sr, "ImageScale", "height", 62)
    assert "multiples of 4" in _error(server, sr)

    _, inpaint = _prompt(server, tiny_ckpt, "text_guided_inpainting")
    set_widget(inpaint, "SolidMask", "value", 0.0)                   # the rectangle too: an empty mask
    assert "all zero" in _error(server, inpaint)

    _, sr = _prompt(server, tiny_ckpt, "super_resolution_x4")
    set_widget(sr, "DreamDataConsistency", "scale", 3)
    set_widget(sr, "DreamDataConsistency", "operator", "sr_avgpool")
    status, resp = server.queue(sr)                                  # refused by validate_inputs
    assert status == 400 and "scale must be one of" in str(resp["node_errors"])

    assert "devices" in server.get("/system_stats")                  # still serving
