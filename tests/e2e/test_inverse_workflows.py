"""Bad inputs to the shipped inpainting / restoration workflows through a real ComfyUI server: clear
errors, and the server keeps serving (tests/e2e/test_server.py runs every workflow end to end)."""
from pathlib import Path

from tools.server import execution_error
from tools.workflow_specs import test_overrides as workflow_overrides
from tools.workflows import prepare_prompt, set_widget

REPO = Path(__file__).resolve().parents[2]


def _prompt(server, tiny_ckpt, stem):
    return prepare_prompt(server, REPO / "example_workflows" / f"{stem}.json", tiny_ckpt.name, fast=True,
                          test_overrides=workflow_overrides())


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
    status, resp = server.queue(sr)              # validate_inputs refuses the sampling branch (the preview may run)
    assert "scale must be one of (2, 4, 8)" in str(resp["node_errors"]), resp
    if status == 200:
        server.wait(resp["prompt_id"], timeout=600)

    assert "devices" in server.get("/system_stats")                  # still serving
