"""UI-format workflows: build them from a compact spec, and convert them to API prompts.

The shipped files in ``example_workflows/`` are UI format (what users load and the frontend saves);
``to_api`` converts with comfy-cli's converter against a live ``/object_info`` exactly as a
headless client would; ``prepare_prompt`` does that on a running server (``tools.server``), with
the small CI settings when asked (scripts/run_workflow.py and the e2e tests).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from .host import REPO

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _is_widget(spec) -> bool:
    t = spec[0]
    return isinstance(t, list) or t in WIDGET_TYPES


def _ordered_inputs(info: dict):
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items()}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            yield name, info["input"][section][name]


NODE_W, COL_GAP, ROW_GAP, X0, Y0 = 320, 60, 50, 40, 40
# Where the frontend's "missing models" dialog offers to download a model a workflow names (the
# same entries as ComfyUI's own templates: node properties.models).
HF = "https://huggingface.co"
MODEL_SOURCES = {
    "v1-5-pruned-emaonly-fp16.safetensors": {
        "url": f"{HF}/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"
               "?download=true",
        "directory": "checkpoints"},
    "sd_xl_base_1.0.safetensors": {
        "url": f"{HF}/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
        "directory": "checkpoints"},
    "sd3.5_large_fp8_scaled.safetensors": {
        "url": f"{HF}/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/sd3.5_large_fp8_scaled.safetensors",
        "directory": "checkpoints"},
    # Flux.1-dev: the model repository is gated (accept the licence on Hugging Face first)
    "flux1-dev.safetensors": {
        "url": f"{HF}/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors",
        "directory": "diffusion_models"},
    "clip_l.safetensors": {
        "url": f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
        "directory": "text_encoders"},
    "t5xxl_fp16.safetensors": {
        "url": f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
        "directory": "text_encoders"},
    "ae.safetensors": {
        "url": f"{HF}/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors",
        "directory": "vae"},
    "qwen_image_fp8_e4m3fn.safetensors": {
        "url": f"{HF}/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/diffusion_models/"
               "qwen_image_fp8_e4m3fn.safetensors",
        "directory": "diffusion_models"},
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": {
        "url": f"{HF}/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/text_encoders/"
               "qwen_2.5_vl_7b_fp8_scaled.safetensors",
        "directory": "text_encoders"},
    "qwen_image_vae.safetensors": {
        "url": f"{HF}/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/vae/qwen_image_vae.safetensors",
        "directory": "vae"},
    "qwen_image_edit_2509_fp8_e4m3fn.safetensors": {
        "url": f"{HF}/Comfy-Org/Qwen-Image-Edit_ComfyUI/resolve/main/split_files/diffusion_models/"
               "qwen_image_edit_2509_fp8_e4m3fn.safetensors",
        "directory": "diffusion_models"},
    "wan2.1_t2v_1.3B_fp16.safetensors": {
        "url": f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/diffusion_models/"
               "wan2.1_t2v_1.3B_fp16.safetensors",
        "directory": "diffusion_models"},
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": {
        "url": f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/"
               "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "directory": "text_encoders"},
    "wan_2.1_vae.safetensors": {
        "url": f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/vae/wan_2.1_vae.safetensors",
        "directory": "vae"},
}


def _estimated_height(n: dict, info: dict) -> int:
    """About the height the LiteGraph frontend gives the node: title, slot rows, widget rows,
    multiline text boxes, an image preview (Load Image) and our point editor."""
    links = n.get("links", {})
    n_in, h = 0, 0
    for name, ispec in _ordered_inputs(info):
        if not _is_widget(ispec) or name in links:
            n_in += 1
            continue
        opts = ispec[1] if len(ispec) > 1 else {}
        h += 100 if opts.get("multiline") else 24
        h += 24 if opts.get("control_after_generate") else 0
        h += 24 + 240 if opts.get("image_upload") or opts.get("video_upload") else 0
    h += 30 + 20 * max(n_in, len(info["output"])) + 10
    if n["type"] == "DreamSDEDrag":
        h += 240
    return h


def _layout(spec: list[dict], heights: dict) -> dict:
    """Left-to-right layered layout: a node's column is its longest link path from a source;
    nodes stack in spec order inside a column."""
    by_id = {n["id"]: n for n in spec}
    depth: dict[int, int] = {}

    def d(nid, seen=()):
        if nid not in depth:
            if nid in seen:
                raise ValueError(f"link cycle through node {nid}")
            srcs = [src for src, _ in by_id[nid].get("links", {}).values()]
            depth[nid] = 1 + max((d(s, seen + (nid,)) for s in srcs), default=-1)
        return depth[nid]

    y_next: dict[int, int] = {}
    pos = {}
    for n in spec:
        col = d(n["id"])
        y = y_next.get(col, Y0)
        pos[n["id"]] = [X0 + col * (NODE_W + COL_GAP), y]
        y_next[col] = y + heights[n["id"]] + ROW_GAP
    return pos


def _properties(node_type: str, widgets: list) -> dict:
    props = {"Node name for S&R": node_type}
    models = [{"name": v, **MODEL_SOURCES[v]} for v in widgets if isinstance(v, str) and v in MODEL_SOURCES]
    if models:
        props["models"] = models
    return props


def build_ui(spec: list[dict], object_info: dict, extra: dict | None = None) -> dict:
    """spec: [{"id": int, "type": class, "widgets": {name: value}, "links": {input: (src_id, slot)},
    "title"?: str, "pos"?: [x, y]}]  ->  litegraph 0.4 UI workflow."""
    nodes, links = [], []
    by_id = {n["id"]: n for n in spec}
    out_links: dict[tuple[int, int], list[int]] = {}
    link_id = 0
    pending = []
    for n in spec:
        for inp, (src, slot) in n.get("links", {}).items():
            link_id += 1
            pending.append((link_id, src, slot, n["id"], inp))
            out_links.setdefault((src, slot), []).append(link_id)
    heights = {n["id"]: _estimated_height(n, object_info[n["type"]]) for n in spec}
    layout = _layout(spec, heights)
    for order, n in enumerate(spec):
        info = object_info[n["type"]]
        inputs, widgets = [], []
        for name, ispec in _ordered_inputs(info):
            linked = name in n.get("links", {})
            if _is_widget(ispec):
                opts = ispec[1] if len(ispec) > 1 else {}
                if name in n.get("widgets", {}):
                    val = n["widgets"][name]
                else:
                    val = opts.get("default")
                    if val is None and isinstance(ispec[0], list):
                        val = ispec[0][0]
                    if val is None and ispec[0] == "COMBO":
                        val = (opts.get("options") or [None])[0]
                widgets.append(val)
                if opts.get("control_after_generate"):
                    widgets.append("fixed")
                if opts.get("image_upload") or opts.get("video_upload"):
                    widgets.append("image")  # the frontend's upload button serializes as "image"
                if linked:
                    inputs.append({"name": name, "type": ispec[0] if isinstance(ispec[0], str) else "COMBO",
                                   "widget": {"name": name}, "link": None})
            elif linked or name in info["input"].get("required", {}):
                inputs.append({"name": name, "type": ispec[0], "link": None})
        outputs = []
        for slot, (otype, oname) in enumerate(zip(info["output"], info.get("output_name") or info["output"])):
            outputs.append({"name": oname, "type": otype, "links": out_links.get((n["id"], slot), []),
                            "slot_index": slot})
        nodes.append({"id": n["id"], "type": n["type"], "pos": n.get("pos", layout[n["id"]]),
                      "size": [NODE_W, heights[n["id"]]], "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                      "properties": _properties(n["type"], widgets), "widgets_values": widgets,
                      **({"title": n["title"]} if "title" in n else {})})
    idx = {n["id"]: n for n in nodes}
    for lid, src, slot, dst, inp in pending:
        dnode = idx[dst]
        entry = next((i for i in dnode["inputs"] if i["name"] == inp), None)
        if entry is None:
            raise KeyError(f"{by_id[dst]['type']} has no input {inp!r}")
        entry["link"] = lid
        links.append([lid, src, slot, dst, dnode["inputs"].index(entry), idx[src]["outputs"][slot]["type"]])
    return {"last_node_id": max(idx), "last_link_id": link_id, "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 1, "offset": [0, 0]}, **(extra or {})}, "version": 0.4}


def to_api(ui: dict, object_info: dict) -> dict:
    from comfy_cli.workflow_to_api import convert_ui_to_api
    return convert_ui_to_api(copy.deepcopy(ui), object_info)


#: UI workflows as an older version of the pack shipped them (nodes since deprecated): they must still load and
#: run (tests/e2e/test_legacy_workflows.py; the bad-input catalog's cases of the deprecated nodes)
LEGACY_WORKFLOWS = REPO / "tests" / "data" / "legacy_workflows"


def workflow_path(stem: str) -> Path:
    """The workflow file of ``stem``: ``example_workflows/<stem>.json``, or for ``legacy/<name>`` the saved
    legacy workflow ``tests/data/legacy_workflows/<name>.json`` (its CI settings are <name>'s)."""
    if stem.startswith("legacy/"):
        return LEGACY_WORKFLOWS / f"{stem.split('/', 1)[1]}.json"
    return REPO / "example_workflows" / f"{stem}.json"


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def nodes_of_type(prompt: dict, class_type: str) -> list[str]:
    return [k for k, v in prompt.items() if v["class_type"] == class_type]


def set_widget(prompt: dict, class_type: str, name: str, value, title: str | None = None):
    """Override a widget value in every node of a type (optionally only with a given title)."""
    hit = False
    for k in nodes_of_type(prompt, class_type):
        if title is None or prompt[k].get("_meta", {}).get("title") == title:
            prompt[k]["inputs"][name] = value
            hit = True
    return hit


FAST = {  # generic small settings for CI on the tiny model
    "ImageScale": {"width": 64, "height": 64},
    "EmptyLatentImage": {"width": 64, "height": 64},
}
FAST_CAPS = {"steps": 4, "iterations": 6, "num_steps": 4}


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(prompt: dict, overrides: dict):
    for cls, widgets in overrides.items():
        for name, value in widgets.items():
            set_widget(prompt, cls, name, value)


def make_fast(prompt: dict, extra: dict | None = None):
    apply_overrides(prompt, FAST)
    for node in prompt.values():
        for name, cap in FAST_CAPS.items():
            v = node["inputs"].get(name)
            if isinstance(v, int) and not isinstance(v, bool) and v > cap:
                node["inputs"][name] = cap
    apply_overrides(prompt, extra or {})


def prepare_prompt(server, workflow: Path, ckpt_name: str | None, fast: bool, sets=(),
                   test_overrides: dict | None = None):
    """(UI workflow, API prompt) of a workflow file against a running server: ``ckpt_name`` into
    every CheckpointLoaderSimple; ``fast``: the CI settings (FAST, FAST_CAPS, then the workflow's
    entry of ``test_overrides``); ``sets``: "Class.widget=value" overrides (JSON values)."""
    ui = load(workflow)
    prompt = to_api(ui, server.object_info())
    if ckpt_name:
        for k in nodes_of_type(prompt, "CheckpointLoaderSimple"):
            prompt[k]["inputs"]["ckpt_name"] = ckpt_name
    if fast:
        make_fast(prompt, (test_overrides or {}).get(workflow.stem))
    for s in sets:
        key, _, val = s.partition("=")
        cls, _, name = key.partition(".")
        if not set_widget(prompt, cls, name, parse_value(val)):
            raise SystemExit(f"--set {s}: no {cls} node in {workflow.name}")
    return ui, prompt


def upload_inputs(server, images=()):
    """Upload the shipped example inputs (images, the example video), and each "NAME=PATH" of
    ``images``, to a running server."""
    for p in sorted((REPO / "example_workflows" / "inputs").glob("*")):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".mp4"):
            server.upload_image(p)
    for spec in images:
        name, _, path = spec.partition("=")
        server.upload_image(Path(path), name)
