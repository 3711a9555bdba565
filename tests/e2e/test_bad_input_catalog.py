"""A catalog of malformed and hostile inputs sent to the real server as API prompts.

Each must come back as ComfyUI's 400 ``node_errors`` or an ``execution_error`` whose message names
the offending input, and the server must keep serving (a valid prompt runs at the end)."""
import json
import os
from pathlib import Path

import pytest

from support.server import execution_error

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("DREAM_TEST_ARTIFACTS", REPO / "out" / "test-artifacts"))
NO_FILE = "(none: use svg_text)"

BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
                  '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&lol2;</text></svg>')
XXE = ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&xxe;</text></svg>')
MANY_PATHS = ('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
              + '<path d="M0 0 L10 0 L10 10 Z"/>' * 20000 + '</svg>')
USE_BOMB = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">'
            '<path id="a" d="M0 0 L1 0 L1 1 Z"/>'
            + "".join(f'<g id="g{i}"><use xlink:href="#{"a" if i == 0 else "g%d" % (i - 1)}"/>'
                      f'<use xlink:href="#{"a" if i == 0 else "g%d" % (i - 1)}"/></g>' for i in range(40))
            + "</svg>")

# (case id, workflow, node class, {input: value}, words the error must contain)
WIDGET_CASES = [
    ("sampler-negative-steps", "real_image_editing", "DreamSampler", {"steps": -3}, ["steps"]),
    ("sampler-zero-steps", "real_image_editing", "DreamSampler", {"steps": 0}, ["steps"]),
    ("sampler-absurd-steps", "real_image_editing", "DreamSampler", {"steps": 10 ** 7}, ["steps"]),
    ("sampler-zero-denoise", "real_image_editing", "DreamSampler", {"denoise": 0.0}, ["denoise"]),
    ("sampler-eta-above-1", "real_image_editing", "DreamSampler", {"eta": 1.5}, ["eta"]),
    ("sampler-negative-cfg", "real_image_editing", "DreamSampler", {"cfg": -1.0}, ["cfg"]),
    ("sampler-eta-wrong-type", "real_image_editing", "DreamSampler", {"eta": "lots"}, ["eta"]),
    ("sampler-unknown-scheduler", "real_image_editing", "DreamSampler", {"scheduler": "bogus"}, ["scheduler"]),
    ("sampler-unknown-eta-schedule", "real_image_editing", "DreamSampler", {"eta_schedule": "x"}, ["eta_schedule"]),
    ("inversion-refine-too-high", "real_image_editing", "DreamDDIMInversion", {"refine_steps": 99}, ["refine_steps"]),
    ("inversion-negative-steps", "real_image_editing", "DreamDDIMInversion", {"steps": -1}, ["steps"]),
    ("inversion-denoise-mismatch", "real_image_editing", "DreamDDIMInversion", {"denoise": 0.4},
     ["denoise", "inversion"]),
    ("edit-start-below-end", "real_image_editing", "DreamCFGEdit", {"start": 0.1, "end": 0.9}, ["start"]),
    ("edit-nan-strength", "real_image_editing", "DreamCFGEdit", {"strength": float("nan")}, ["strength"]),
    ("edit-unknown-schedule", "real_image_editing", "DreamCFGEdit", {"schedule": "fast"}, ["schedule"]),
    ("drag-malformed-json", "sde_drag", "DreamSDEDrag", {"points": "[{\"x\": 1, \"y\": "}, ["points"]),
    ("drag-empty-points", "sde_drag", "DreamSDEDrag", {"points": "[]"}, ["points"]),
    ("drag-odd-point-count", "sde_drag", "DreamSDEDrag", {"points": '[{"x": 5, "y": 5}]'}, ["points"]),
    ("drag-points-outside", "sde_drag", "DreamSDEDrag",
     {"points": '[{"x": 5000, "y": 5}, {"x": 10, "y": 10}]'}, ["points"]),
    ("drag-t0-out-of-range", "sde_drag", "DreamSDEDrag", {"t0": 2.0}, ["t0"]),
    ("degrade-scale-not-dividing", "super_resolution_x4", "DreamDegrade", {"scale": 3}, ["scale"]),
    ("dc-negative-sigma", "super_resolution_x4", "DreamDataConsistency", {"sigma_y": -0.5}, ["sigma_y"]),
    ("mask-unknown-preset", "text_guided_inpainting", "DreamMaskInpaint", {"preset": "magic"}, ["preset"]),
    ("csd-stride-above-window", "csd_panorama_edit", "DreamCSDEdit", {"window": 16, "stride": 48}, ["stride"]),
    ("csd-zero-iterations", "csd_panorama_edit", "DreamCSDEdit", {"iterations": 0}, ["iterations"]),
    ("csd-tmin-above-tmax", "csd_panorama_edit", "DreamCSDEdit", {"t_min": 0.9, "t_max": 0.1}, ["t_min"]),
    ("distill-zero-lrs", "text_to_svg", "DreamScoreDistill",
     {"point_lr": 0.0, "color_lr": 0.0, "width_lr": 0.0}, ["lr"]),
    ("distill-negative-iterations", "text_to_svg", "DreamScoreDistill", {"iterations": -5}, ["iterations"]),
    ("svg-init-absurd-paths", "text_to_svg", "DreamSVGInit", {"num_paths": 10 ** 6}, ["num_paths"]),
    ("cycle-encode-zero-steps", "cyclediffusion_text_edit", "DreamDDPMEncode", {"steps": 0}, ["steps"]),
    ("cycle-encode-eta-zero", "cyclediffusion_text_edit", "DreamDDPMEncode", {"eta": 0.0}, ["eta"]),
    ("cycle-sde-unknown-stage2", "cycle_sde_vs_ode", "DreamCycleSDEEdit", {"stage2": "euler"}, ["stage2"]),
]

SVG_CASES = [
    ("svg-billion-laughs", BILLION_LAUGHS), ("svg-external-entity", XXE), ("svg-huge-path-count", MANY_PATHS),
    ("svg-use-bomb", USE_BOMB), ("svg-truncated", '<svg xmlns="http://www.w3.org/2000/svg" width="64"><path d="M0 0 L'),
    ("svg-not-svg", "<html><body>hello</body></html>"), ("svg-empty", ""),
]


def _prompt(server, tiny_ckpt, stem):
    from build_workflows import test_overrides
    from run_workflow import prepare_prompt
    return prepare_prompt(server, REPO / "workflows" / f"{stem}.json", tiny_ckpt.name, fast=True,
                          test_overrides=test_overrides())[1]


def _expect_clear_error(server, prompt, node_id, words):
    """400, or 200 with node_errors for our node (ComfyUI still runs the prompt's other valid outputs),
    or an execution error raised by a Dream node."""
    status, resp = server.queue(prompt)
    if status == 400 or node_id in resp.get("node_errors", {}):
        text = json.dumps(resp.get("node_errors", {}).get(node_id, resp))
        if status == 200:
            server.wait(resp["prompt_id"], timeout=600)
            status = 400
    else:
        assert status == 200, resp
        entry = server.wait(resp["prompt_id"], timeout=600)
        assert entry["status"]["status_str"] == "error", "the bad input was accepted and ran"
        err = execution_error(entry)
        assert err.get("node_type", "").startswith("Dream"), err
        text = err["exception_message"]
        assert "Traceback" not in text
    for w in words:
        assert w.lower() in text.lower(), f"error does not name {w!r}: {text[:600]}"
    return status, text


def _message(text: str) -> str:
    """The user-facing sentence of a node error / execution error (for the catalog listing)."""
    try:
        data = json.loads(text)
        errs = data.get("errors") or data.get("error", {})
        if isinstance(errs, list) and errs:
            e = errs[0]
            return f"{e.get('message', '')}: {e.get('details', '')}".strip(": ")
        if isinstance(errs, dict):
            return f"{errs.get('message', '')}: {errs.get('details', '')}".strip(": ")
    except (json.JSONDecodeError, AttributeError):
        pass
    return text


@pytest.fixture(scope="module")
def caught(server):
    """(case, status, message) of every catalog entry; listed in out/test-artifacts/error_catalog.md
    (the README's troubleshooting table is built from it)."""
    seen = []
    yield seen
    statuses = [s for _, s, _ in seen]
    print(f"\nbad-input catalog: {len(seen)} cases, {sum(s == 400 for s in statuses)} rejected at validation "
          f"(400), {sum(s != 400 for s in statuses)} as clear execution errors")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    rows = ["| case | how | message |", "|---|---|---|"]
    rows += [f"| {c} | {'400 on queue' if s == 400 else 'execution error'} | "
             f"{_message(t)[:300].replace('|', '/').replace(chr(10), ' ')} |" for c, s, t in seen]
    (ARTIFACTS / "error_catalog.md").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("case,stem,cls,change,words", WIDGET_CASES, ids=[c[0] for c in WIDGET_CASES])
def test_bad_widget_input(server, tiny_ckpt, caught, case, stem, cls, change, words):
    prompt = _prompt(server, tiny_ckpt, stem)
    node_id = next(k for k, v in prompt.items() if v["class_type"] == cls)
    prompt[node_id]["inputs"].update(change)
    caught.append((case, *_expect_clear_error(server, prompt, node_id, words)))


@pytest.mark.parametrize("case,text", SVG_CASES, ids=[c[0] for c in SVG_CASES])
def test_hostile_svg_is_rejected(server, caught, case, text):
    prompt = {"1": {"class_type": "DreamLoadSVG", "inputs": {"svg_file": NO_FILE, "svg_text": text}},
              "2": {"class_type": "DreamSVGRender", "inputs": {"svg": ["1", 0], "scale": 1.0}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    caught.append((case, *_expect_clear_error(server, prompt, "1", ["svg"])))


def test_path_traversal_svg_file_is_refused(server, caught):
    prompt = {"1": {"class_type": "DreamLoadSVG", "inputs": {"svg_file": "../../../etc/passwd", "svg_text": ""}},
              "2": {"class_type": "DreamSVGRender", "inputs": {"svg": ["1", 0], "scale": 1.0}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    caught.append(("svg-path-traversal", *_expect_clear_error(server, prompt, "1", ["svg_file"])))


def test_server_still_serves_after_the_catalog(server, tiny_ckpt, caught):
    assert len(caught) >= 30, f"catalog too small ({len(caught)})"
    server.run(_prompt(server, tiny_ckpt, "real_image_editing"), timeout=600)
