"""Render a picture of every shipped workflow as the real ComfyUI frontend shows it.

Writes ``example_workflows/<name>.jpg``: ComfyUI serves them as the thumbnails of our cards in the
template browser (Workflow -> Browse Templates -> comfyui-dreamsampler), and the README shows
them.  Needs Chromium (scripts/setup_browser.sh).  Run with the host env's python:
    $(bash scripts/setup_host.sh | tail -n 1) scripts/workflow_pictures.py [names...]
"""
from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))                                       # the tools package

from tools.browser import FrontendPage, find_chromium  # noqa: E402
from tools.server import ComfyServer  # noqa: E402
from tools.tiny_models import tiny_sd15_checkpoint  # noqa: E402
from tools.workflows import load, upload_inputs  # noqa: E402

# The page is resized to hold the whole graph at 100% zoom; the picture is the canvas without the
# side bar (LEFT), the tab strip and floating run bar (TOP) and the zoom controls (BOTTOM).
LEFT, TOP, BOTTOM, PAD = 60, 90, 70, 30
SETTINGS = {"LiteGraph.Canvas.MinFontSizeForLOD": 1, "LiteGraph.Canvas.LowQualityRenderingZoomThreshold": 0.1,
            "Comfy.Workflow.ShowMissingModelsWarning": False}      # no dialog over the picture
MAX_WIDTH = 2400

FRAME_JS = """({left, top, pad}) => {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const n of app.graph.nodes) {
    const [x, y, w, h] = n.boundingRect;
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + w); y1 = Math.max(y1, y + h);
  }
  app.canvas.ds.scale = 1;
  app.canvas.ds.offset = [left + pad - x0, top + pad - y0];
  app.canvas.setDirty(true, true);
  return { w: Math.ceil(x1 - x0), h: Math.ceil(y1 - y0) };
}"""


def main(argv=None):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    names = set(argv if argv is not None else sys.argv[1:])
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("Chromium not found: run `bash scripts/setup_browser.sh` or set DREAM_CHROMIUM")
    workflows = [p for p in sorted((REPO / "example_workflows").glob("*.json")) if not names or p.stem in names]
    with tempfile.TemporaryDirectory() as tmp, ComfyServer(Path(tmp), checkpoints=[tiny_sd15_checkpoint()]) as server:
        upload_inputs(server)
        with sync_playwright() as pw:
            page = FrontendPage(pw, server, chromium, settings=SETTINGS)
            page.open()
            for wf in workflows:
                page.js("async ({wf, name}) => { await app.loadGraphData(wf, true, true, name); }",
                        {"wf": load(wf), "name": wf.stem})
                # Load Image previews arrive asynchronously
                page.page.wait_for_timeout(800)
                size = page.js(FRAME_JS, {"left": LEFT, "top": TOP, "pad": PAD})
                w, h = size["w"] + 2 * PAD, size["h"] + 2 * PAD
                page.page.set_viewport_size({"width": LEFT + w, "height": TOP + h + BOTTOM})
                page.page.wait_for_timeout(500)
                page.js(FRAME_JS, {"left": LEFT, "top": TOP, "pad": PAD})  # again, after the canvas resized
                page.page.wait_for_timeout(300)
                png = page.page.screenshot(clip={"x": LEFT, "y": TOP, "width": w, "height": h})
                img = Image.open(io.BytesIO(png)).convert("RGB")
                if img.width > MAX_WIDTH:
                    img = img.resize((MAX_WIDTH, round(img.height * MAX_WIDTH / img.width)), Image.LANCZOS)
                out = wf.with_suffix(".jpg")
                img.save(out, quality=82, optimize=True, progressive=True)
                print(f"wrote {out.relative_to(REPO)} ({out.stat().st_size // 1024} KiB)")
            page.close()


if __name__ == "__main__":
    main()
