"""The pack in the real ComfyUI frontend, in headless Chromium, against the session's real server.

* every file in ``example_workflows/`` loads through the UI with no missing node, no node error, every
  widget value where the file put it, and the API prompt the page would queue equal to the one
  the e2e tests run (so what users queue is what CI ran);
* one workflow is queued from the page's Run button and its output image appears on the canvas;
* the template browser lists every example workflow under the pack with its thumbnail, and
  picking one loads it;
* the SDE-Drag point editor draws the input image and turns real clicks into points;
* the node help panel shows the pack's help page (web/docs/<node_id>.md).

Every test runs on two frontends against the pinned server: the one ComfyUI 0.3.75 pins
(``comfyui-frontend-package`` in the venv) and the newest one (``tools.host.NEWEST_FRONTEND``,
served with ``--front-end-root``).

Screenshots go to ``out/test-artifacts/browser/``.  Needs Chromium (``scripts/setup_browser.sh``
installs Debian's); without it these tests fail with that hint, unless DREAM_SKIP_BROWSER=1.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tools.browser import FrontendPage, find_chromium
from tools.workflows import load, to_api

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
SHOTS = Path(os.environ.get("DREAM_TEST_ARTIFACTS", REPO / "out" / "test-artifacts")) / "browser"
PACK_MODULE = "comfyui-dreamsampler"  # the folder name the server was given (tools.server)

LOAD_JS = """
async ({wf, name}) => {
  const missing = wf.nodes.filter((n) => !(n.type in LiteGraph.registered_node_types)).map((n) => n.type);
  const dialogs = [];
  const saved = [app.showMissingNodesError, app.showMissingModelsError];
  app.showMissingNodesError = (types) => dialogs.push({ nodes: types });
  app.showMissingModelsError = (models) =>
    dialogs.push({ models: models.map((m) => ({ name: m.name, url: m.url, directory: m.directory })) });
  try {
    await app.loadGraphData(wf, true, true, name);
  } finally {
    [app.showMissingNodesError, app.showMissingModelsError] = saved;
  }
  // frontend 1.5x lists missing models in the workflow's pending warnings (its Issues tab)
  const pending = app.extensionManager.workflow?.activeWorkflow?.pendingWarnings;
  const candidates = (pending?.missingModelCandidates ?? []).filter((m) => m.isMissing);
  if (candidates.length) dialogs.push({ models: candidates.map((m) => ({ name: m.name, url: m.url, directory: m.directory })) });
  for (const t of pending?.missingNodeTypes ?? []) dialogs.push({ nodes: [t] });
  const graph = app.graph.serialize();
  const { output } = await app.graphToPrompt();
  return {
    missing,
    dialogs,
    errored: app.graph.nodes.filter((n) => n.has_errors).map((n) => `${n.id}:${n.type}`),
    nodes: graph.nodes.map((n) => ({ id: n.id, type: n.type, widgets_values: n.widgets_values ?? null })),
    output,
  };
}
"""


@pytest.fixture(scope="module", params=["pinned", "newest"])
def frontend_server(request, server, tiny_ckpt, tmp_path_factory):
    """The session server (pinned frontend), or a second server on the same host serving the
    newest frontend."""
    if request.param == "pinned":
        yield server
        return
    from tools.host import newest_frontend_root
    from tools.server import ComfyServer
    from tools.workflows import upload_inputs
    srv = ComfyServer(tmp_path_factory.mktemp("comfy-newest-frontend"), checkpoints=[tiny_ckpt],
                      extra_args=["--front-end-root", str(newest_frontend_root())])
    srv.start()
    upload_inputs(srv)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def frontend(frontend_server):
    server = frontend_server
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("DREAM_SKIP_BROWSER") == "1":
            pytest.skip("DREAM_SKIP_BROWSER=1: real-browser tests skipped on request")
        pytest.fail("Chromium not found: run `bash scripts/setup_browser.sh` (Debian: apt-get install chromium), "
                    "or point DREAM_CHROMIUM at a Chromium/Chrome binary; DREAM_SKIP_BROWSER=1 skips these tests")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        page = FrontendPage(pw, server, chromium)
        page.open()
        page.version = page.js("() => window.__COMFYUI_FRONTEND_VERSION__")
        yield page
        page.close()
    ours = page.errors_mentioning("dream", PACK_MODULE)
    assert not ours, f"errors from the pack in the browser console: {ours}"


@pytest.fixture(params=["litegraph", "vue"], ids=["classic-canvas", "nodes-2.0"])
def renderer(request, frontend):
    """The classic LiteGraph canvas (default) and the opt-in "Nodes 2.0" Vue renderer."""
    set_vue = "async (on) => { await app.extensionManager.setting.set('Comfy.VueNodes.Enabled', on); }"
    frontend.js(set_vue, request.param == "vue")
    yield request.param
    frontend.js(set_vue, False)


def load_in_page(frontend, ui: dict, name: str) -> dict:
    return frontend.js(LOAD_JS, {"wf": ui, "name": name})


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_loads_in_the_frontend_exactly_as_shipped(frontend, workflow, renderer):
    server = frontend.server
    ui = load(workflow)
    res = load_in_page(frontend, ui, workflow.stem)
    assert res["missing"] == [], f"node types unknown to the frontend: {res['missing']}"
    assert [d for d in res["dialogs"] if "nodes" in d] == [], res["dialogs"]
    # newer frontends (1.5x) also outline a loader whose model file the server lacks (the test
    # server has only the tiny checkpoint); nothing else may be flagged
    missing_model = {f"{n['id']}:{n['type']}" for n in ui["nodes"] if n.get("properties", {}).get("models")}
    errored = [e for e in res["errored"] if e not in missing_model]
    assert errored == [], f"nodes flagged with errors after loading: {errored}"
    # a model the server does not have is offered for download, from the node's properties.models
    # (the test server only has the tiny checkpoint)
    wanted = sorted({(m["name"], m["url"], m["directory"]) for n in ui["nodes"]
                     for m in n.get("properties", {}).get("models", [])})
    offered = sorted({(m["name"], m["url"], m["directory"]) for d in res["dialogs"] for m in d.get("models", [])})
    assert offered == wanted, (offered, wanted)
    if any(n["type"] == "CheckpointLoaderSimple" for n in ui["nodes"]):
        assert wanted and all(u.startswith("https://huggingface.co/") for _, u, _ in wanted)

    # every widget value is where the file put it (a widget the frontend does not know, or a
    # reordered one, shifts the values); our point editor canvas is never serialized
    loaded = {n["id"]: n for n in res["nodes"]}
    for node in ui["nodes"]:
        got = loaded[node["id"]]
        assert got["type"] == node["type"]
        # (1.5x leaves widgets_values out of a node without widgets, 1.3x writes [])
        assert (got["widgets_values"] or []) == (node.get("widgets_values") or []), \
            f"{workflow.name} node {node['id']} ({node['type']})"

    # the prompt the page would queue is the one CI runs through /prompt
    ours = to_api(ui, server.object_info())
    page = res["output"]
    assert set(page) == set(ours), (sorted(page), sorted(ours))
    for k, v in ours.items():
        assert page[k]["class_type"] == v["class_type"]
        assert page[k]["inputs"] == v["inputs"], f"{workflow.name} node {k} ({v['class_type']})"

    frontend.fit_view()
    frontend.screenshot(SHOTS / f"{workflow.stem}_{renderer}_{frontend.version}.png")


def test_queue_from_the_page_runs_and_shows_the_output_image(frontend, tiny_ckpt):
    server = frontend.server
    from tools.workflow_specs import test_overrides
    from tools.workflows import FAST, FAST_CAPS
    stem = "real_image_editing"
    load_in_page(frontend, load(REPO / "example_workflows" / f"{stem}.json"), stem)
    fast = {k: dict(v) for k, v in FAST.items()}
    for cls, widgets in test_overrides().get(stem, {}).items():
        fast.setdefault(cls, {}).update(widgets)
    changed = frontend.js("""({ckpt, fast, caps}) => {
      let changed = 0;
      for (const n of app.graph.nodes) for (const w of n.widgets ?? []) {
        let v = w.value;
        if (n.type === 'CheckpointLoaderSimple' && w.name === 'ckpt_name') v = ckpt;
        if (fast[n.type] && w.name in fast[n.type]) v = fast[n.type][w.name];
        if (w.name in caps && typeof v === 'number' && v > caps[w.name]) v = caps[w.name];
        if (v !== w.value) { w.value = v; w.callback?.(v); changed++; }
      }
      return changed;
    }""", {"ckpt": tiny_ckpt.name, "fast": fast, "caps": FAST_CAPS})
    assert changed >= 2
    before = set(server.get("/history"))
    frontend.js("""() => {
      window.__dreamRun = [];
      for (const ev of ['execution_error', 'execution_interrupted', 'execution_success'])
        app.api.addEventListener(ev, (e) => window.__dreamRun.push({ type: ev, detail: e.detail }));
    }""")

    frontend.fit_view()  # the canvas loads a node's output image when it draws the node
    frontend.page.locator('[data-testid="queue-button"]').first.click()
    frontend.page.wait_for_function("""() => {
      if (window.__dreamRun.some((e) => e.type !== 'execution_success')) return true;
      const n = app.graph.nodes.find((n) => n.type === 'SaveImage');
      const img = n?.imgs?.[0];
      return !!(img && img.complete && img.naturalWidth > 0);
    }""", timeout=300_000)
    events = frontend.js("() => window.__dreamRun")
    assert not [e for e in events if e["type"] != "execution_success"], events
    shown = frontend.js("""() => {
      const img = app.graph.nodes.find((n) => n.type === 'SaveImage').imgs[0];
      return { src: img.src, w: img.naturalWidth, h: img.naturalHeight };
    }""")
    new = [v for k, v in server.get("/history").items() if k not in before]
    assert len(new) == 1 and new[0]["status"]["status_str"] == "success", new
    files = [im["filename"] for out in new[0]["outputs"].values() for im in out.get("images", [])]
    assert files and any(f in shown["src"] for f in files), (files, shown)
    assert shown["w"] == shown["h"] == 64  # the fast size the page set
    frontend.screenshot(SHOTS / f"queued_from_page_{frontend.version}.png")


def test_template_browser_lists_every_example_with_its_thumbnail(frontend):
    page = frontend.page
    listed = frontend.js("() => app.api.getWorkflowTemplates()")
    assert sorted(listed.get(PACK_MODULE, [])) == sorted(p.stem for p in WORKFLOWS), listed

    frontend.js("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    dialog = page.get_by_role("dialog").first  # a PrimeVue dialog up to frontend 1.3x, its own in 1.5x
    dialog.get_by_text(PACK_MODULE, exact=True).first.click()
    # each card shows its thumbnail, the shipped example_workflows/<name>.jpg (lazy: loaded when in view)
    missing = []
    for p in WORKFLOWS:
        card = dialog.locator(f'[data-testid="template-workflow-{p.stem}"]')
        card.wait_for(state="visible", timeout=30_000)
        card.scroll_into_view_if_needed()
        try:
            page.wait_for_function("""(name) => {
              const img = document.querySelector(`[data-testid="template-workflow-${name}"] img`);
              return !!(img && img.complete && img.naturalWidth >= 600);
            }""", arg=p.stem, timeout=15_000)
        except Exception:  # noqa: BLE001 - collected and reported together below
            missing.append(p.stem)
    frontend.screenshot(SHOTS / f"template_browser_{frontend.version}.png")
    assert not missing, f"cards without their thumbnail: {missing}"

    dialog.locator('[data-testid="template-workflow-sde_drag"]').click()
    page.wait_for_function("() => app.graph.nodes.some((n) => n.type === 'DreamSDEDrag')", timeout=30_000)
    types = frontend.js("() => app.graph.nodes.map((n) => n.type)")
    assert sorted(types) == sorted(n["type"] for n in load(REPO / "example_workflows" / "sde_drag.json")["nodes"])


def test_sde_drag_point_editor_draws_the_image_and_turns_clicks_into_points(frontend, renderer):
    page = frontend.page
    page.keyboard.press("Escape")  # no dialog left open over the canvas
    load_in_page(frontend, load(REPO / "example_workflows" / "sde_drag.json"), "sde_drag")
    # the editor shows the image of the Load Image node feeding the drag (after its preview loads)
    page.wait_for_function("""() => {
      const src = app.graph.nodes.find((n) => n.type === 'LoadImage');
      return !!src?.imgs?.[0]?.naturalWidth;
    }""", timeout=30_000)
    box = frontend.js("""() => {
      // a non-square resize between Load Image and the drag: points are pixels of *its* output
      const scale = app.graph.nodes.find((n) => n.type === 'ImageScale');
      for (const [k, v] of [['width', 384], ['height', 256]]) {
        const w = scale.widgets.find((w) => w.name === k); w.value = v; w.callback?.(v);
      }
      const node = app.graph.nodes.find((n) => n.type === 'DreamSDEDrag');
      const text = node.widgets.find((w) => w.name === 'points');
      text.value = '[]'; text.callback?.(text.value);
      app.canvas.ds.scale = 1;
      app.canvas.centerOnNode(node);
      app.canvas.setDirty(true, true);
      const editor = node.widgets.find((w) => w.name === 'points_editor');
      return editor ? { present: true } : { present: false };
    }""")
    assert box["present"], "the DreamSDEDrag node has no point editor widget"
    # the editor picks the image and the new size up by itself (no hover, no run)
    page.wait_for_function("""() => {
      const node = app.graph.nodes.find((n) => n.type === 'DreamSDEDrag');
      const s = node.dreamPointsEditor.space();
      return s && s.w === 384 && s.h === 256;
    }""", timeout=10_000)
    # bring the editor itself to the middle of the page (the node can be taller than the page)
    frontend.js("""() => {
      const r = app.graph.nodes.find((n) => n.type === 'DreamSDEDrag').dreamPointsEditor.canvas.getBoundingClientRect();
      const s = app.canvas.ds.scale;
      app.canvas.ds.offset[0] -= (r.x + r.width / 2 - window.innerWidth / 2) / s;
      app.canvas.ds.offset[1] -= (r.y + r.height / 2 - window.innerHeight / 2) / s;
      app.canvas.setDirty(true, true);
    }""")
    page.wait_for_timeout(500)
    rect = frontend.js("""() => {
      const node = app.graph.nodes.find((n) => n.type === 'DreamSDEDrag');
      const el = node.dreamPointsEditor.canvas;
      const r = el.getBoundingClientRect();
      const ctx = el.getContext('2d');
      const d = ctx.getImageData(0, 0, el.width, el.height).data;
      let painted = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) painted++;
      const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
      return { x: r.x, y: r.y, w: r.width, h: r.height, visible: el.checkVisibility?.() ?? true, onTop: top === el,
               painted: painted / (el.width * el.height), space: node.dreamPointsEditor.space() };
    }""")
    assert rect["visible"] and rect["onTop"] and rect["w"] > 100 and 100 < rect["h"] < 600, rect
    # the image covers the editor but for letterbox bars (the hint text alone paints ~1%)
    assert rect["painted"] > 0.4, f"the editor did not draw the input image: {rect}"
    assert rect["space"] == {"w": 384, "h": 256}, rect

    def points():
        return json.loads(frontend.js("""() => app.graph.nodes.find((n) => n.type === 'DreamSDEDrag')
                                          .widgets.find((w) => w.name === 'points').value"""))

    cy = rect["y"] + rect["h"] * 0.5
    page.mouse.click(rect["x"] + rect["w"] * 0.4, cy)            # source
    assert points() == []                                        # waits for its target
    page.mouse.click(rect["x"] + rect["w"] * 0.6, cy)            # target
    pts = points()
    assert len(pts) == 2, pts
    (a, b) = pts
    assert 0 <= a["x"] < b["x"] < 384 and 0 <= a["y"] < 256 and abs(a["y"] - b["y"]) <= 1, pts
    # clicks 20% of the editor's width apart on a fitted 384-px-wide image: about 0.2 * 384 * (w / fitted w)
    assert b["x"] - a["x"] >= 0.2 * 384 * 0.9, pts
    frontend.screenshot(SHOTS / f"sde_drag_point_editor_{renderer}_{frontend.version}.png")
    # the points are what the page queues
    out = frontend.js("async () => (await app.graphToPrompt()).output")
    drag = next(v for v in out.values() if v["class_type"] == "DreamSDEDrag")
    assert json.loads(drag["inputs"]["points"]) == pts
    page.mouse.click(rect["x"] + rect["w"] * 0.5, cy, button="right")  # right click removes the pair
    assert points() == []


@pytest.mark.parametrize("node_type", ["DreamSampler", "DreamCFGEdit"])
def test_node_help_panel_shows_the_packs_help_page(frontend, node_type):
    """Select a node, press the selection toolbox's info button: the help panel renders
    web/docs/<node_id>.md (fetched from /extensions/<pack>/docs/)."""
    page = frontend.page
    page.keyboard.press("Escape")
    load_in_page(frontend, load(REPO / "example_workflows" / "real_image_editing.json"), "real_image_editing")
    frontend.js("""(type) => {
      const n = app.graph.nodes.find((n) => n.type === type);
      app.canvas.ds.scale = 1; app.canvas.centerOnNode(n); app.canvas.selectNode(n); app.canvas.setDirty(true, true);
    }""", node_type)
    button = page.locator('[data-testid="info-button"]').first
    button.wait_for(state="visible", timeout=15_000)
    button.click()
    doc = (REPO / "web" / "docs" / f"{node_type}.md").read_text()
    description = doc.split("\n\n")[2]           # the node's description paragraph
    first_words = " ".join(description.split()[:8])
    page.get_by_text(first_words, exact=False).first.wait_for(state="visible", timeout=15_000)
    shown = page.inner_text("body")
    assert "Example workflows" in shown and "real_image_editing" in shown
    frontend.screenshot(SHOTS / f"help_panel_{node_type}_{frontend.version}.png")
    page.keyboard.press("Escape")
