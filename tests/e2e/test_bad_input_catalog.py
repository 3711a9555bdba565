"""A catalog of malformed and hostile inputs sent to the real server as API prompts.

Each must come back as ComfyUI's 400 ``node_errors`` or an ``execution_error`` whose *message text*
(not the error JSON, which carries the class type and input names anyway) names the offending input
and the cause; a few hostile inputs are accepted and must give a bounded, clean result instead.
Every case runs with the server's peak RSS reset, so a memory bomb shows up even when it is freed
again; the server must keep serving (a valid prompt runs at the end) and its RSS after the catalog
stays within a stated bound of its start.  The list with the messages is written to
out/test-artifacts/error_catalog.md (the README's troubleshooting table is built from it)."""
import json
import os
import pickle
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.bad_inputs import LONG_PATH, NO_FILE, SCRIPT_SVG, SVG_CASES, WIDGET_CASES
from tools.bad_inputs import svg_prompt as _svg_prompt
from tools.server import execution_error

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("DREAM_TEST_ARTIFACTS", REPO / "out" / "test-artifacts"))

#: RSS when the type fuzz begins may exceed the RSS at the catalog's start (after every graph ran once)
#: by at most this: the 104 cases before the fuzz switch between graphs with and without the checkpoint
#: (DragBench, SVG), so ComfyUI reloads it several times; measured +249 MB on a fresh-clone CI run
RSS_GROWTH_BOUND_MB = 350
#: RSS after the type fuzz may exceed the RSS at the catalog's start by at most this.  The fuzz runs
#: ~1800 prompts over every shipped SD1.5 graph in turn; ComfyUI reloads the checkpoint after each
#: graph without one (it drops the outputs of nodes absent from the current prompt) and the allocator
#: keeps what it freed: measured +608 / +610 / +639 MB on three runs, while repeating the fuzz of one
#: node four times grew nothing (RSS flat to the MB), so the growth is reload churn, not a leak
FUZZ_RSS_GROWTH_BOUND_MB = 1000
#: no single case may raise the server's peak RSS more than this above its RSS before the case
PEAK_BOUND_MB = 300
#: raw Python / torch text that must never reach a user
RAW_TEXT = ("Traceback", "maximum recursion depth", "codec can't encode", "object is not iterable",
            "setting an array element", "[Errno", "Kernel size", "Expected 3D or 4D", "expected input[",
            "object is not subscriptable", "unsupported operand", "check the learning rate")


def _prompt(server, tiny_ckpt, stem):
    """The API prompt of a shipped workflow, or of a saved legacy one ("legacy/<name>"), at CI settings."""
    from tools.workflow_specs import test_overrides
    from tools.workflows import prepare_prompt, workflow_path
    return prepare_prompt(server, workflow_path(stem), tiny_ckpt.name, fast=True, test_overrides=test_overrides())[1]


def _node_message(resp: dict, node_id: str) -> str:
    """The user-facing text of a node's validation error: our validate_inputs' own string (ComfyUI
    writes it as "<first input> - <string>" into details), or core's "message: details"."""
    errors = resp.get("node_errors", {}).get(node_id, {}).get("errors", [])
    assert errors, f"no validation error for node {node_id}: {json.dumps(resp)[:800]}"
    e = errors[0]
    if e.get("type") == "custom_validation_failed":
        return e.get("details", "").split(" - ", 1)[-1]
    return f"{e.get('message', '')}: {e.get('details', '')}"


def _expect_clear_error(server, prompt, node_id, words, raised_by=None):
    """400, or 200 with node_errors for our node (ComfyUI still runs the prompt's other valid outputs),
    or an execution error raised by that node (or by ``raised_by``, a later node that detects the
    mismatch).  The words are looked up in the message itself."""
    status, resp = server.queue(prompt)
    if status == 400 or node_id in resp.get("node_errors", {}):
        text = _node_message(resp, node_id)
        if status == 200:
            server.wait(resp["prompt_id"], timeout=600)
        status = 400
    else:
        assert status == 200, resp
        entry = server.wait(resp["prompt_id"], timeout=600)
        assert entry["status"]["status_str"] == "error", "the bad input was accepted and ran"
        err = execution_error(entry)
        assert str(err.get("node_id")) == str(raised_by or node_id), f"the error came from another node: {err}"
        assert err.get("exception_type", "").endswith("InputError"), err
        text = err["exception_message"]
    for raw in RAW_TEXT:
        assert raw.lower() not in text.lower(), f"raw Python text in the message: {text[:600]}"
    for w in words:
        assert w.lower() in text.lower(), f"message does not name {w!r}: {text[:600]}"
    return status, text


# ----------------------------------------------------------------------------- memory
def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def _reset_peak(pid: int):
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class _Catalog:
    """The catalog's rows (case, how, message, peak RSS of the case above the RSS before it, MB), the
    RSS at the start and the RSS when the current case began (set by _fresh_peak)."""

    def __init__(self, start_kb: int):
        self.rows = []
        self.start_kb = start_kb
        self.before_fuzz_kb = None          # RSS when the type fuzz began
        self.before_kb = start_kb

    def add(self, server, case, status, text, batched=False):
        """``batched``: one of many prompts queued together (the type fuzz), whose peak is the batch's
        (models of several workflows loaded in turn), not the case's: recorded, not bounded."""
        status = "error" if status == 200 else status
        peak = (_status_kb(server.proc.pid, "VmHWM") - self.before_kb) / 1024
        self.rows.append((case, status, text, None if batched else peak))
        assert batched or peak <= PEAK_BOUND_MB, (f"{case}: the server's peak RSS rose {peak:.0f} MB "
                                                  f"(bound {PEAK_BOUND_MB} MB)")


@pytest.fixture(scope="module")
def caught(server, tiny_ckpt, fuzz_bases):
    """The catalog, written to error_catalog.md at the end.  Every graph the catalog builds on runs
    once first (each shipped SD1.5 workflow, the DragBench loader, the CycleDiffusion sampler graph), so
    the start RSS is a warm server's: models loaded, and ComfyUI's allocations for each graph made once
    (its RSS does not shrink when a graph's outputs are dropped; repeating the fuzz of a node grows
    nothing, measured)."""
    for prompt in {id(p): p for p, _ in fuzz_bases.values()}.values():
        server.run(prompt, timeout=600)
    server.run(_prompt(server, tiny_ckpt, "real_image_editing"), timeout=600)
    cat = _Catalog(_status_kb(server.proc.pid, "VmRSS"))
    yield cat
    rows = cat.rows
    statuses = [s for _, s, _, _ in rows]
    end_kb = _status_kb(server.proc.pid, "VmRSS")
    summary = (f"bad-input catalog: {len(rows)} cases, {sum(s == 400 for s in statuses)} rejected at validation "
               f"(400), {sum(s == 'error' for s in statuses)} as clear execution errors, "
               f"{sum(s == 'ran' for s in statuses)} accepted with a bounded result; server RSS "
               f"{cat.start_kb / 1024:.0f} MB at the start, {end_kb / 1024:.0f} MB at the end, highest per-case "
               f"peak +{max((p for *_, p in rows if p is not None), default=0):.0f} MB (the type fuzz's cases run in "
               "batches: not per case)")
    print("\n" + summary)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    how = {400: "400 on queue", "error": "execution error", "ran": "runs, bounded"}
    table = [summary, "", "| case | how | peak RSS (above the RSS before the case) | message |", "|---|---|---|---|"]
    table += [f"| {c} | {how[s]} | {'batch' if p is None else f'+{p:.0f} MB'} | "
              f"{t[:300].replace('|', '/').replace(chr(10), ' ')} |" for c, s, t, p in rows]
    (ARTIFACTS / "error_catalog.md").write_text("\n".join(table) + "\n")


@pytest.fixture(autouse=True)
def _fresh_peak(server, caught):
    _reset_peak(server.proc.pid)
    caught.before_kb = _status_kb(server.proc.pid, "VmRSS")
    yield


# ----------------------------------------------------------------------------- widgets
@pytest.mark.parametrize("case,stem,cls,change,words,raiser", [(*c, None)[:6] for c in WIDGET_CASES],
                         ids=[c[0] for c in WIDGET_CASES])
def test_bad_widget_input(server, tiny_ckpt, caught, case, stem, cls, change, words, raiser):
    prompt = _prompt(server, tiny_ckpt, stem)
    node_id = next(k for k, v in prompt.items() if v["class_type"] == cls)
    prompt[node_id]["inputs"].update(change)
    raised_by = next((k for k, v in prompt.items() if v["class_type"] == raiser), None) if raiser else None
    caught.add(server, case, *_expect_clear_error(server, prompt, node_id, words, raised_by))


DISTILL_EDIT_CASES = [
    ("distill-edit-source-cfg-without-negative", {"source_cfg": 2.0}, ["source_cfg", "negative"]),
    ("distill-edit-no-level", {"steps": 1, "start": 0.2}, ["start", "edits no level"]),
    ("distill-edit-mask-all-black", "black", ["mask", "no white"]),
]


@pytest.mark.parametrize("case,change,words", DISTILL_EDIT_CASES, ids=[c[0] for c in DISTILL_EDIT_CASES])
def test_bad_distill_edit_settings(server, caught, fuzz_bases, case, change, words):
    """Dream Distill Edit's own cross-input checks: a source guidance with nothing to guide against, a
    grid with no edited level, a mask that edits nothing."""
    base, node_id = fuzz_bases["DreamDistillEdit"]
    prompt = json.loads(json.dumps(base))
    if change == "black":
        prompt["990"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}}
        prompt[node_id]["inputs"]["mask"] = ["990", 0]
    else:
        prompt[node_id]["inputs"].update(change)
    caught.add(server, case, *_expect_clear_error(server, prompt, node_id, words))


SCORE_DISTILL_CASES = [
    ("sds-min-t-above-max-t", "DreamSDS", {"min_t": 0.9, "max_t": 0.5}, ["min_t", "max_t"]),
    ("dds-zero-max-t", "DreamDDS", {"max_t": 0.0, "min_t": 0.0}, ["max_t", "greater than 0"]),
    ("image-generator-zero-lr", "DreamImageGenerator", {"lr": 0.0}, ["lr", "nothing would change"]),
    ("latent-generator-with-a-data-term", "DreamDDS", "data_term", ["svg", "image", "generator"]),
]


@pytest.mark.parametrize("case,cls,change,words", SCORE_DISTILL_CASES, ids=[c[0] for c in SCORE_DISTILL_CASES])
def test_bad_score_distill_settings(server, caught, fuzz_bases, case, cls, change, words):
    """Dream SDS / DDS and their generators (no shipped workflow holds them): a level range to draw nothing
    from, a generator with nothing to optimize, a data term on a latent (no pixels to compare)."""
    base, node_id = fuzz_bases[cls]
    prompt = json.loads(json.dumps(base))
    if change == "data_term":
        measurement = next(k for k, v in prompt.items() if v["class_type"] == "DreamSVGInit")
        prompt["990"] = {"class_type": "DreamDistillDataTerm", "inputs": {"measurement": [measurement, 1],
                                                                         "data_weight": 1.0}}
        prompt[node_id]["inputs"]["data_term"] = ["990", 0]
    else:
        prompt[node_id]["inputs"].update(change)
    caught.add(server, case, *_expect_clear_error(server, prompt, node_id, words))


def test_tiny_denoise_from_a_link_is_refused_quickly(server, tiny_ckpt, caught):
    """denoise from a Float primitive is not seen by validate_inputs: execute refuses it before
    building the 10^9-step schedule."""
    prompt = _prompt(server, tiny_ckpt, "real_image_editing")
    node_id = next(k for k, v in prompt.items() if v["class_type"] == "DreamSampler")
    prompt["900"] = {"class_type": "PrimitiveFloat", "inputs": {"value": 1e-9}}
    prompt[node_id]["inputs"].update(denoise=["900", 0], scheduler="normal")     # 'normal' builds level by level
    t = time.time()
    caught.add(server, "sampler-tiny-denoise-linked",
               *_expect_clear_error(server, prompt, node_id, ["denoise", "10000"]))
    assert time.time() - t < 120                # the inversion before it runs; 4e9 levels would take days


def test_one_pixel_image_into_sde_drag(server, tiny_ckpt, caught):
    prompt = _prompt(server, tiny_ckpt, "sde_drag")
    scale = next(k for k, v in prompt.items() if v["class_type"] == "ImageScale")
    prompt[scale]["inputs"].update(width=1, height=1)
    node_id = next(k for k, v in prompt.items() if v["class_type"] == "DreamSDEDrag")
    prompt[node_id]["inputs"]["points"] = '[{"x": 0, "y": 0}, {"x": 0, "y": 0}]'
    caught.add(server, "drag-1x1-image", *_expect_clear_error(server, prompt, node_id, ["image", "1x1", "at least"]))


# ----------------------------------------------------------------------------- latents of another model
def _write_latent(server, name, tensor):
    import safetensors.torch
    # with the version key LoadLatent keeps the values as they are
    safetensors.torch.save_file({"latent_tensor": tensor.contiguous(), "latent_format_version_0": tensor.new_zeros(1)},
                                str(server.workdir / "input" / name))


LATENT_CASES = [
    # (case, latent shape, workflow, node class, latent input, words)
    ("latent-16ch-into-sd15-inversion", (1, 16, 8, 8), "real_image_editing", "DreamDDIMInversion", "latent_image",
     ["latent_image", "16 channels", "4"]),
    ("latent-16ch-into-cycle-encode", (1, 16, 8, 8), "cyclediffusion_text_edit", "DreamDDPMEncode", "latent_image",
     ["latent_image", "16 channels"]),
    ("latent-5d-into-inversion", (1, 4, 2, 8, 8), "real_image_editing", "DreamDDIMInversion", "latent_image",
     ["latent_image", "5-D"]),
    ("latent-5d-into-cycle-sde", (1, 4, 2, 8, 8), "cycle_sde_vs_ode", "DreamCycleSDEEdit", "latent_image",
     ["latent_image", "5-D"]),
]


@pytest.mark.parametrize("case,shape,stem,cls,inp,words", LATENT_CASES, ids=[c[0] for c in LATENT_CASES])
def test_latent_of_another_model(server, tiny_ckpt, caught, case, shape, stem, cls, inp, words):
    import torch
    name = f"{case}.latent"
    _write_latent(server, name, torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    prompt = _prompt(server, tiny_ckpt, stem)
    node_id = next(k for k, v in prompt.items() if v["class_type"] == cls)
    prompt["901"] = {"class_type": "LoadLatent", "inputs": {"latent": name}}
    prompt[node_id]["inputs"][inp] = ["901", 0]
    caught.add(server, case, *_expect_clear_error(server, prompt, node_id, words))


# ----------------------------------------------------------------------------- SVG
def test_one_pixel_image_into_svg_tracing(server, tiny_ckpt, caught):
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}},
              "2": {"class_type": "DreamSVGInit", "inputs": {
                  "mode": "image", "width": 64, "height": 64, "num_paths": 8, "num_segments": 4, "radius": 0.0,
                  "stroke_width": 0.0, "num_colors": 4, "trace": "kmeans", "seed": 0, "batch_size": 1,
                  "image": ["1", 0]}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 1]}}}
    status, resp = server.queue(prompt)
    assert status == 200, resp
    entry = server.wait(resp["prompt_id"], timeout=600)
    if entry["status"]["status_str"] == "success":          # a bounded, valid result is fine too
        caught.add(server, "svg-init-1x1-image", "ran", "traced a 1x1 image into a valid scene")
    else:
        err = execution_error(entry)
        assert str(err.get("node_id")) == "2" and err.get("exception_type", "").endswith("InputError"), err
        assert "image" in err["exception_message"]
        caught.add(server, "svg-init-1x1-image", "error", err["exception_message"])




@pytest.mark.parametrize("case,text,words", SVG_CASES, ids=[c[0] for c in SVG_CASES])
def test_hostile_svg_is_rejected(server, caught, case, text, words):
    caught.add(server, case, *_expect_clear_error(server, _svg_prompt(text), "1", words))


def test_huge_single_path_is_refused_before_parsing(server, caught):
    t = time.time()
    res = _expect_clear_error(server, _svg_prompt(LONG_PATH), "1", ["svg_text", "segments"])
    elapsed = time.time() - t
    caught.add(server, "svg-5mb-single-path", *res)
    assert elapsed < 5.0, f"refused only after {elapsed:.1f}s"


def test_render_scale_is_bounded_by_the_canvas_area(server, caught):
    text = ('<svg xmlns="http://www.w3.org/2000/svg" width="600" height="600"><rect width="600" height="600" '
            'fill="red"/></svg>')
    caught.add(server, "svg-render-scale-area",
               *_expect_clear_error(server, _svg_prompt(text, scale=8.0), "2", ["scale", "4800x4800", "Mpx"]))


def test_svg_init_batch_is_refused_by_its_memory_estimate(server, caught):
    prompt = {"1": {"class_type": "DreamSVGInit", "inputs": {
        "mode": "random", "width": 4096, "height": 4096, "num_paths": 1, "num_segments": 4, "radius": 0.0,
        "stroke_width": 0.0, "num_colors": 8, "trace": "kmeans", "seed": 0, "batch_size": 16}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 1]}}}
    caught.add(server, "svg-init-batch-memory", *_expect_clear_error(server, prompt, "1", ["batch_size", "GiB"]))


def test_path_traversal_svg_file_is_refused(server, caught):
    prompt = {"1": {"class_type": "DreamLoadSVG", "inputs": {"svg_file": "../../../etc/passwd", "svg_text": ""}},
              "2": {"class_type": "DreamSVGRender", "inputs": {"svg": ["1", 0], "scale": 1.0}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    caught.add(server, "svg-path-traversal",
               *_expect_clear_error(server, prompt, "1", ["svg_file", "not inside ComfyUI's input folder"]))


def test_script_in_svg_never_reaches_a_saved_file(server, caught, tmp_path):
    """A <script> (and an escaped ']]>' in text) in svg_text: Load SVG keeps only the shapes; what
    Dream SVG to File hands to core Save SVG has neither, and the saved file is well-formed XML."""
    prompt = {"1": {"class_type": "DreamLoadSVG", "inputs": {"svg_file": NO_FILE, "svg_text": SCRIPT_SVG}},
              "2": {"class_type": "DreamSVGToFile", "inputs": {"svg": ["1", 0], "precision": 3}},
              "3": {"class_type": "SaveSVGNode", "inputs": {"svg": ["2", 0], "filename_prefix": "catalog/script"}},
              "4": {"class_type": "SaveSVGNode", "inputs": {"svg": ["1", 2], "filename_prefix": "catalog/script_load"}}}
    files = server.fetch_outputs(server.run(prompt, timeout=600), tmp_path)
    assert len(files) == 2
    for f in files:
        text = f.read_text()
        root = ET.fromstring(text)                          # well-formed: the metadata block is intact
        tags = {el.tag.rsplit("}", 1)[-1] for el in root.iter()}
        assert "script" not in tags and "path" in tags, tags
        drawing = text.split("</metadata>", 1)[-1]
        assert "<script" not in drawing and "]]>" not in drawing
    caught.add(server, "svg-script-saved", "ran", "the saved SVGs hold the shapes only: no <script>, no ']]>' "
                                                  "outside the metadata block, well-formed XML")


# ----------------------------------------------------------------------------- DragBench items
def _png(path: Path, w=16, h=16, mode="RGB"):
    Image.new(mode, (w, h), 128).save(path)


def _item(root: Path, name: str, files: dict) -> str:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for fname, content in files.items():
        if content == "png":
            _png(d / fname)
        elif isinstance(content, bytes):
            (d / fname).write_bytes(content)
        else:
            (d / fname).write_text(content)
    return name


class _Reduce:
    """Pickles as ``fn(*args)`` (a hand-made hostile pickle)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _reconstruct():
    import numpy.core.multiarray as ma
    return ma._reconstruct


def _pkl(points, mask=None, protocol=2, prompt="a cat"):
    return pickle.dumps({"prompt": prompt, "points": points, "mask": mask}, protocol=protocol)


GOOD_JSON = json.dumps({"source": [[3, 4]], "target": [[8, 9]], "prompt": "a cat"})


def _dragbench_cases():
    r = _reconstruct()
    return [
        # (case, files, words)
        ("dragbench-pkl-bytes-bomb", {"original_image.png": "png",
                                     "meta_data.pkl": _pkl(_Reduce(bytes, (400_000_000,)), protocol=4)},
         ["meta_data.pkl", "bytes"]),
        ("dragbench-pkl-ndarray-bomb", {"original_image.png": "png",
                                       "meta_data.pkl": _pkl(_Reduce(np.ndarray, ((2_000_000, 2),)))},
         ["meta_data.pkl", "numpy.ndarray"]),
        ("dragbench-pkl-uninitialised-array", {"original_image.png": "png",
                                              "meta_data.pkl": _pkl(_Reduce(r, (np.ndarray, (64, 2), b"f")))},
         ["meta_data.pkl", "array"]),
        ("dragbench-pkl-reconstruct-bomb", {"original_image.png": "png",
                                           "meta_data.pkl": _pkl(_Reduce(r, (np.ndarray, (4_000_000,), b"b")))},
         ["meta_data.pkl", "array"]),
        ("dragbench-pkl-os-system", {"original_image.png": "png",
                                    "meta_data.pkl": _pkl(_Reduce(os.system, ("echo pwned",)))},
         ["meta_data.pkl", "system"]),
        ("dragbench-pkl-points-int", {"original_image.png": "png", "meta_data.pkl": _pkl(5)},
         ["meta_data.pkl", "points", "list"]),
        ("dragbench-pkl-ragged-mask", {"original_image.png": "png",
                                      "meta_data.pkl": _pkl([[1, 2], [3, 4]], mask=[[1, 2], [3]])},
         ["meta_data.pkl", "mask"]),
        ("dragbench-pkl-too-many-points", {"original_image.png": "png",
                                          "meta_data.pkl": _pkl([[1, 2]] * 100_000, protocol=4)},
         ["meta_data.pkl", "points", "at most"]),
        ("dragbench-pkl-file-too-big", {"original_image.png": "png", "meta_data.pkl": b"\x80\x04" + b"\0" * (17 << 20)},
         ["meta_data.pkl", "MB"]),
        ("dragbench-pkl-wrong-dtype", {"original_image.png": "png",
                                      "meta_data.pkl": _pkl([[1, 2], [3, 4]], mask=np.array([["a"]], dtype=object))},
         ["meta_data.pkl", "dtype"]),
        ("dragbench-json-deep", {"origin_image.png": "png", "prompt.json":
                                 '{"source": ' + "[" * 100_000 + "]" * 100_000 + ', "target": [], "prompt": "x"}'},
         ["prompt.json", "nested"]),
        ("dragbench-json-source-int", {"origin_image.png": "png",
                                       "prompt.json": '{"source": 5, "target": 5, "prompt": "x"}'},
         ["prompt.json", "source", "list"]),
        ("dragbench-json-prompt-not-text", {"origin_image.png": "png", "prompt.json":
                                            '{"source": [[1, 1]], "target": [[2, 2]], "prompt": [[[1]]]}'},
         ["prompt.json", "prompt", "text"]),
        ("dragbench-json-too-big", {"origin_image.png": "png", "prompt.json": " " * (2 << 20) + GOOD_JSON},
         ["prompt.json", "MB"]),
    ]


DRAGBENCH_CASES = _dragbench_cases()


@pytest.fixture(scope="module")
def dragbench_root(server):
    root = server.workdir / "input" / "dragbench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _dragbench_prompt(folder: str):
    return {"1": {"class_type": "DreamDragBenchLoader", "inputs": {"item_folder": folder}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


@pytest.mark.parametrize("case,files,words", DRAGBENCH_CASES, ids=[c[0] for c in DRAGBENCH_CASES])
def test_hostile_dragbench_item(server, caught, dragbench_root, case, files, words):
    name = _item(dragbench_root, case, files)
    caught.add(server, case, *_expect_clear_error(server, _dragbench_prompt(f"dragbench/{name}"), "1", words))


def test_dragbench_image_bomb(server, caught, dragbench_root):
    """A 100 Mpx PNG of a few kB (under PIL's own bomb limit): refused from its header."""
    d = dragbench_root / "image-bomb"
    d.mkdir(exist_ok=True)
    Image.new("1", (10000, 10000)).save(d / "origin_image.png")
    (d / "prompt.json").write_text(GOOD_JSON)
    caught.add(server, "dragbench-image-bomb",
               *_expect_clear_error(server, _dragbench_prompt("dragbench/image-bomb"), "1",
                                    ["origin_image.png", "10000x10000", "limit"]))


def test_dragbench_item_is_confined_to_the_input_folder(server, caught, dragbench_root):
    """An item outside ComfyUI's input folder is refused at queue time with Load SVG's message, and
    whether the outside folder exists does not change the message."""
    outside = server.workdir / "outside_item"
    _item(server.workdir, "outside_item", {"origin_image.png": "png", "prompt.json": GOOD_JSON})
    texts = {}
    for case, folder in (("dragbench-absolute-path", str(outside)),
                         ("dragbench-absolute-missing", str(server.workdir / "no_such_item")),
                         ("dragbench-traversal", "../outside_item"),
                         ("dragbench-traversal-missing", "../no_such_item")):
        status, text = _expect_clear_error(server, _dragbench_prompt(folder), "1",
                                           ["item_folder", "not inside ComfyUI's input folder"])
        assert status == 400
        caught.add(server, case, status, text)
        texts[case] = text.replace(folder, "<name>")
    assert len(set(texts.values())) == 1, texts
    missing = _expect_clear_error(server, _dragbench_prompt("dragbench/no_such_item"), "1",
                                  ["item_folder", "not a folder in ComfyUI's input folder"])
    caught.add(server, "dragbench-missing-inside", *missing)


def test_dragbench_unusable_names(server, caught):
    caught.add(server, "dragbench-name-too-long",
               *_expect_clear_error(server, _dragbench_prompt("a" * 5000), "1", ["item_folder", "too long"]))
    caught.add(server, "dragbench-name-lone-surrogate",
               *_expect_clear_error(server, _dragbench_prompt("dragbench/\ud800item"), "1", ["item_folder", "surrogate"]))


def test_valid_dragbench_items_still_load(server, caught, dragbench_root):
    """Both published formats, including a protocol-2 numpy pickle (what DragBench ships)."""
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 1
    pts = [np.array([3, 4]), np.array([8, 9])]
    _item(dragbench_root, "valid-json", {"origin_image.png": "png", "prompt.json": GOOD_JSON})
    _item(dragbench_root, "valid-pkl", {"original_image.png": "png", "meta_data.pkl": _pkl(pts, mask)})
    for name in ("valid-json", "valid-pkl"):
        prompt = _dragbench_prompt(f"dragbench/{name}")
        entry = server.run(prompt, timeout=600)
        assert entry["status"]["status_str"] == "success"
    caught.add(server, "dragbench-valid-items", "ran", "prompt.json and a numpy meta_data.pkl item load")


# ----------------------------------------------------------------------------- graph-sized costs (issue 28)
def _steps2(server, caught, prompt):
    """``prompt`` at 2 steps, run once first: its checkpoint is loaded again whenever an earlier case's
    graph did not hold it (ComfyUI drops the outputs of nodes absent from the current prompt), which is
    ComfyUI's memory, not the case's: the case's peak is counted from after this run."""
    for node in prompt.values():
        if node["class_type"] in ("DreamSampler", "DreamDDIMInversion"):
            node["inputs"]["steps"] = 2
    server.run(prompt, timeout=600)
    _reset_peak(server.proc.pid)
    caught.before_kb = _status_kb(server.proc.pid, "VmRSS")
    return prompt


def test_regularizers_past_the_limit_are_refused(server, tiny_ckpt, caught):
    """129 chained Dream CFG Edits: the 129th is refused, naming the limit (each distinct prompt in a
    chain is one more model row; the memory per regularizer is measured in test_graph_costs.py)."""
    from support.graphs import chained_edits
    prompt, last = chained_edits(_steps2(server, caught, _prompt(server, tiny_ckpt, "real_image_editing")), 129,
                                 "over")
    caught.add(server, "regularizers-past-the-limit",
               *_expect_clear_error(server, prompt, last, ["regularizers", "most one sampler takes is 128"]))


@pytest.mark.parametrize("where", ["before", "after", "custom"])
def test_nan_noise_mask_is_refused_naming_the_mask(server, tiny_ckpt, caught, where):
    """SolidMask(NaN) -> SetLatentNoiseMask (core's min / max check passes NaN) before the inversion,
    after it, or into SamplerCustomAdvanced with the Dream sampler: refused, naming the mask.  (Core's
    mask nodes clamp to 0..1; the range half of the check is tested in tests/core/test_masks.py.)"""
    from support.graphs import noise_mask_prompt
    prompt, node_id, name = noise_mask_prompt(_steps2(server, caught, _prompt(server, tiny_ckpt,
                                                                               "real_image_editing")),
                                              float("nan"), where)
    words = ["noise_mask", name, "NaN"]
    case = f"noise-mask-nan-{where}"
    if where != "custom":
        caught.add(server, case, *_expect_clear_error(server, prompt, node_id, words))
        return
    # raised by the Dream sampler inside core's SamplerCustomAdvanced (core reports that node)
    status, resp = server.queue(prompt)
    assert status == 200, resp
    entry = server.wait(resp["prompt_id"], timeout=600)
    assert entry["status"]["status_str"] == "error", "an unusable noise mask was accepted"
    err = execution_error(entry)
    assert str(err["node_id"]) == node_id and err["exception_type"].endswith("MaskError"), err
    text = err["exception_message"]
    assert all(w.lower() in text.lower() for w in words) and "Traceback" not in text, text
    caught.add(server, case, 200, text)


def test_gradient_step_that_cannot_fit_is_refused_before_the_run(server, tiny_ckpt, caught):
    """Dream Data Consistency with dps > 0 on a latent whose gradient step cannot fit in memory (an
    8192 x 8192 image; the same holds for a long video latent): the sampler refuses before any model
    call, with the estimate and what to change."""
    prompt = _prompt(server, tiny_ckpt, "super_resolution_x4")
    dc = next(k for k, v in prompt.items() if v["class_type"] == "DreamDataConsistency")
    smp = next(k for k, v in prompt.items() if v["class_type"] == "DreamSampler")
    prompt[dc]["inputs"]["dps"] = 1.0
    prompt["850"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 8192, "height": 8192, "batch_size": 1}}
    prompt[smp]["inputs"]["latent_image"] = ["850", 0]
    prompt[smp]["inputs"]["denoise"] = 1.0
    caught.add(server, "dps-gradient-step-too-large",
               *_expect_clear_error(server, prompt, smp, ["dps", "GiB", "free", "smaller image or fewer frames"]))


# ----------------------------------------------------------------------------- type fuzz of every input
#: (case suffix, JSON value) sent in place of one input; a kind is skipped for inputs of that kind
FUZZ_VALUES = [("text", "abc"), ("integer", 7), ("number", 0.5), ("true", True), ("null", None),
               ("list", [1, 2, 3]), ("empty-list", []), ("object", {"a": 1}), ("nan", float("nan")),
               ("inf", float("inf")), ("long-text", "x" * 100_000)]
#: kinds not sent, per input type: the input's own kind (a number for a number is a range question,
#: above), and what ComfyUI converts to the input's type before any node sees it - true for a number
#: (int(True) = 1: the node gets the number 1) and anything but a list for true/false (bool(x)).  A
#: null for an optional input means "not connected" and is not sent either.
SKIPPED_KINDS = {"INT": {"integer", "number", "true"}, "FLOAT": {"integer", "number", "true"}, "STRING": {"text"},
                 "BOOLEAN": {k for k, _ in FUZZ_VALUES} - {"list", "empty-list"}}
#: kinds ComfyUI converts to text (str(x)) before any node sees them: those may run, as for core's nodes
CONVERTED = {"STRING": {k for k, _ in FUZZ_VALUES}}
#: Python exception text that must never be the answer to a wrong type (issue 27)
FUZZ_RAW_TEXT = RAW_TEXT + ("not supported between", "object has no attribute", "unhashable", "NoneType",
                            "Exception when validating", "has no len()", "argument must be")


def _fuzz_bases(server, tiny_ckpt, item_folder):
    """class_type -> (API prompt that runs, node id of that class) for every pack node: the first
    SD1.5 shipped workflow holding it (CI settings), plus hand-built graphs for those that no SD1.5
    shipped workflow uses (DragBench, the CycleDiffusion sampler, Distill Edit, SDS / DDS and the image
    and latent generators, and the deprecated Dream Score Distill in a saved legacy workflow)."""
    from tools.workflow_specs import sd15_workflows
    bases = {}
    for path in sd15_workflows(REPO / "example_workflows"):
        prompt = _prompt(server, tiny_ckpt, path.stem)
        for node_id, node in prompt.items():
            bases.setdefault(node["class_type"], (prompt, node_id))
    bases["DreamDragBenchLoader"] = (_dragbench_prompt(item_folder), "1")
    prompt = json.loads(json.dumps(bases["DreamDDPMEncode"][0]))
    enc = next(k for k, v in prompt.items() if v["class_type"] == "DreamDDPMEncode")
    dec = next(k for k, v in prompt.items() if v["class_type"] == "DreamDDPMDecode")
    vae_decode = next(k for k, v in prompt.items() if v["class_type"] == "VAEDecode")
    d = prompt[dec]["inputs"]
    e = prompt[enc]["inputs"]
    prompt.update({
        "900": {"class_type": "DreamCycleDiffusionSampler", "inputs": {"encoded": [enc, 0]}},
        "901": {"class_type": "CFGGuider", "inputs": {"model": d["model"], "positive": d["target"],
                                                      "negative": d["negative"], "cfg": d["cfg"]}},
        "902": {"class_type": "BasicScheduler", "inputs": {"model": e["model"], "scheduler": e["scheduler"],
                                                           "steps": e["steps"], "denoise": e["strength"]}},
        "903": {"class_type": "DisableNoise", "inputs": {}},
        "904": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["903", 0], "guider": ["901", 0],
                                                                  "sampler": ["900", 0], "sigmas": ["902", 0],
                                                                  "latent_image": [enc, 0]}}})
    prompt[vae_decode]["inputs"]["samples"] = ["904", 0]
    bases["DreamCycleDiffusionSampler"] = (prompt, "900")
    # Dream Distill Edit ships in the flow families' workflows only: on the SD1.5 editing graph, in place
    # of its inversion + DreamSampler (the same prompts, model and latent)
    prompt = _prompt(server, tiny_ckpt, "real_image_editing")
    edit = next(v["inputs"] for v in prompt.values() if v["class_type"] == "DreamCFGEdit")
    inv = next(v["inputs"] for v in prompt.values() if v["class_type"] == "DreamDDIMInversion")
    vae_decode = next(k for k, v in prompt.items() if v["class_type"] == "VAEDecode")
    prompt["910"] = {"class_type": "DreamDistillEdit", "inputs": {
        "model": inv["model"], "source": edit.get("source", inv["conditioning"]), "target": edit["target"],
        "latent_image": inv["latent_image"], "seed": 0, "steps": 4, "scheduler": inv["scheduler"], "start": 0.5,
        "strength": 1.0, "fidelity": 1.3, "cfg": 2.5, "source_cfg": 1.0}}
    prompt[vae_decode]["inputs"]["samples"] = ["910", 0]
    bases["DreamDistillEdit"] = (prompt, "910")
    # the deprecated Dream Score Distill: a text_to_svg saved before the split (tests/data/legacy_workflows)
    prompt = _prompt(server, tiny_ckpt, "legacy/text_to_svg")
    bases["DreamScoreDistill"] = (prompt, next(k for k, v in prompt.items() if v["class_type"] == "DreamScoreDistill"))
    # Dream SDS of an image generator and Dream DDS of a latent generator, on text_to_svg's prompts
    text_to_svg = _prompt(server, tiny_ckpt, "text_to_svg")
    init = next(k for k, v in text_to_svg.items() if v["class_type"] == "DreamSVGInit")
    prompt = _random_level_prompt(text_to_svg, "DreamSDS", "DreamImageGenerator", {"image": [init, 1]})
    bases["DreamSDS"], bases["DreamImageGenerator"] = (prompt, "921"), (prompt, "920")
    prompt = _random_level_prompt(text_to_svg, "DreamDDS", "DreamLatentGenerator", {"latent": ["922", 0]}, {
        "922": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}})
    bases["DreamDDS"], bases["DreamLatentGenerator"] = (prompt, "921"), (prompt, "920")
    return bases


def _random_level_prompt(text_to_svg: dict, method: str, generator: str, generator_inputs: dict, extra=None) -> dict:
    """text_to_svg with its SVG generator and DreamSampler Distill replaced by ``generator`` (node 920) and
    ``method`` (Dream SDS or DDS, node 921, the negative prompt as DDS's source) whose image is saved."""
    p = json.loads(json.dumps(text_to_svg))
    distill = next(v["inputs"] for v in p.values() if v["class_type"] == "DreamDistill")
    for k in [k for k, v in p.items() if v["class_type"] in ("DreamDistill", "DreamSVGGenerator", "SaveSVGNode")]:
        del p[k]
    p.update(extra or {})
    p["920"] = {"class_type": generator, "inputs": dict(generator_inputs, lr=0.01)}
    source = {"source": distill["negative"]} if method == "DreamDDS" else {}
    p["921"] = {"class_type": method, "inputs": {
        **{k: distill[k] for k in ("model", "positive", "negative", "vae")}, **source, "generator": ["920", 0],
        "seed": 0, "iterations": 3, "inner_steps": 1, "cfg": 7.5, "max_t": 0.98, "min_t": 0.02, "fit_space": "auto",
        "weighting": "tweedie"}}
    save = next(k for k, v in p.items() if v["class_type"] == "SaveImage")
    p[save]["inputs"]["images"] = ["921", 1]
    return p


def _error_texts(errors) -> list:
    return [f"{e.get('message', '')}: {e.get('details', '')}" for e in errors]


def _fuzz_pack_nodes() -> dict:
    """node id -> the pack's node class"""
    from tools.host import load_pack
    return {cls.GET_SCHEMA().node_id: cls for cls in load_pack().NODE_LIST}


@pytest.fixture(scope="module")
def fuzz_bases(server, tiny_ckpt, dragbench_root):
    _item(dragbench_root, "fuzz-item", {"origin_image.png": "png", "prompt.json": GOOD_JSON})
    return _fuzz_bases(server, tiny_ckpt, "dragbench/fuzz-item")


@pytest.mark.parametrize("cls", sorted(_fuzz_pack_nodes()))
def test_every_input_refuses_every_wrong_json_type(server, caught, fuzz_bases, cls):
    """Issue 27: each input of the node, in turn, replaced by every JSON kind it is not (all other inputs
    valid), posted as an API prompt.  Each is refused at queue time with a message naming the input, or
    stops at execution with the node's InputError naming the input, or - only where ComfyUI itself
    converts the value to the input's type (anything to text or true/false, true to 1) - runs; never a
    Python exception's text.  The prompts of one node are queued together and waited for at the end."""
    assert cls in fuzz_bases, f"no base graph for {cls}: add it to a shipped workflow or to _fuzz_bases"
    if caught.before_fuzz_kb is None:
        caught.before_fuzz_kb = _status_kb(server.proc.pid, "VmRSS")
    base, node_id = fuzz_bases[cls]
    required = server.object_info()[cls]["input"].get("required", {})
    declared = dict(required, **server.object_info()[cls]["input"].get("optional", {}))
    free = getattr(_fuzz_pack_nodes()[cls], "FREE_COMBOS", ())       # a file name the node checks itself
    queued = []
    for name, spec in declared.items():
        kind = "STRING" if name in free else "COMBO" if isinstance(spec[0], list) else spec[0]
        for label, value in FUZZ_VALUES:
            if label in SKIPPED_KINDS.get(kind, ()) or (label == "null" and name not in required):
                continue
            case = f"fuzz-{cls}-{name}-{label}"
            prompt = json.loads(json.dumps(base))
            prompt[node_id]["inputs"][name] = value
            status, resp = server.queue(prompt)
            errors = resp.get("node_errors", {}).get(node_id, {}).get("errors", [])
            if status == 400 or errors:
                assert errors, f"{case}: refused, but not at {cls}: {json.dumps(resp)[:600]}"
                # core's own conversion error ("Failed to convert an input value to a FLOAT value: strength,
                # None, float() argument must be ... 'NoneType'") quotes Python; the pack's message beside it
                # must not, and one of them must name the input
                ours = _error_texts(e for e in errors if e.get("type") != "invalid_input_type")
                for raw in FUZZ_RAW_TEXT:
                    assert all(raw.lower() not in t.lower() for t in ours), f"{case}: raw Python text: {ours}"
                texts = ours or _error_texts(errors)
                assert name in texts[0], f"{case}: the message does not name {name!r}: {texts[0][:300]}"
                if status == 200:
                    queued.append((case, name, kind, label, resp["prompt_id"], True))
                caught.add(server, case, 400, texts[0], batched=True)
            else:
                assert status == 200, f"{case}: {resp}"
                queued.append((case, name, kind, label, resp["prompt_id"], False))
    for case, name, kind, label, prompt_id, refused in queued:
        entry = server.wait(prompt_id, timeout=600)
        if refused:
            continue
        if entry["status"]["status_str"] == "success":
            assert label in CONVERTED.get(kind, ()), f"{case}: the wrong type ran"
            caught.add(server, case, "ran", f"ComfyUI converts {label} for a {kind} input; the node ran", batched=True)
            continue
        err = execution_error(entry)
        text = err.get("exception_message", "")
        if str(err.get("node_id")) != str(node_id):
            # a value ComfyUI converted (true -> 1) that this node accepts and a later pack node refuses
            assert label in CONVERTED.get(kind, ()), f"{case}: the error came from another node: {text[:300]}"
            name = ""
        assert err.get("exception_type", "").endswith("InputError"), f"{case}: {err.get('exception_type')}: {text}"
        for raw in FUZZ_RAW_TEXT:
            assert raw.lower() not in text.lower(), f"{case}: raw Python text: {text[:400]}"
        assert name in text, f"{case}: the message does not name {name!r}: {text[:300]}"
        caught.add(server, case, 200, text, batched=True)
    assert server.get("/system_stats") is not None
    # ComfyUI keeps every prompt (and each error's inputs) in its history until a client clears it: the
    # catalog's memory bound is about what the pack keeps, so the fuzz's thousands of prompts are cleared
    status, _ = server.request("POST", "/history", {"clear": True})
    assert status == 200


def test_server_still_serves_after_the_catalog(server, tiny_ckpt, caught):
    assert len(caught.rows) >= 90, f"catalog too small ({len(caught.rows)})"
    readme = (REPO / "README.md").read_text()
    assert f"{len(caught.rows)} malformed and hostile" in readme, "update the README's troubleshooting table"
    server.run(_prompt(server, tiny_ckpt, "real_image_editing"), timeout=600)


def test_server_memory_is_bounded_after_the_catalog(server, caught):
    assert caught.before_fuzz_kb is not None, "the type fuzz did not run"
    growth = (caught.before_fuzz_kb - caught.start_kb) / 1024
    assert growth <= RSS_GROWTH_BOUND_MB, (f"server RSS grew {growth:.0f} MB over the catalog before the type fuzz "
                                           f"(start {caught.start_kb / 1024:.0f} MB, bound {RSS_GROWTH_BOUND_MB} MB)")
    growth = (_status_kb(server.proc.pid, "VmRSS") - caught.start_kb) / 1024
    assert growth <= FUZZ_RSS_GROWTH_BOUND_MB, (f"server RSS grew {growth:.0f} MB over the whole catalog (bound "
                                                f"{FUZZ_RSS_GROWTH_BOUND_MB} MB)")
