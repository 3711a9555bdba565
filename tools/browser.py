"""The real ComfyUI frontend (the ``comfyui-frontend-package`` the host serves) in headless Chromium.

Driven with Playwright's Python API against Debian's ``/usr/bin/chromium`` (no browser download):
``scripts/setup_browser.sh`` installs the browser, ``tests/requirements.txt`` the driver.
Chromium is started with the flags this closed-network machine needs (no background networking,
no component updates), a fresh profile and a fixed viewport, so screenshots are comparable.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions",
]
VIEWPORT = {"width": 1600, "height": 1000}
# settings written through the server before the page opens: no first-run template dialog, no
# minimap or debug overlay over the screenshots
SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "Comfy.Graph.CanvasInfo": False,
    "Comfy.Workflow.ShowMissingModelsWarning": True,
    "Comfy.VueNodes.Enabled": False,  # the classic LiteGraph canvas (the default)
}
# localStorage keys set before the app starts: the "Introducing Nodes 2.0" banner stays dismissed
LOCAL_STORAGE = {"vueNodesBannerDismissed": "true"}


def find_chromium() -> str | None:
    env = os.environ.get("DREAM_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class FrontendPage:
    """One browser page on a running ComfyServer, with the console and page errors recorded."""

    def __init__(self, playwright, server, chromium: str, viewport: dict | None = None, settings: dict | None = None):
        self.server = server
        for key, value in {**SETTINGS, **(settings or {})}.items():
            server.request("POST", f"/settings/{key}", value)
        self.browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport=viewport or VIEWPORT)
        init = "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in LOCAL_STORAGE.items())
        self.page.add_init_script(init)
        self.console: list[str] = []
        self.page_errors: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def open(self, timeout_s: float = 120):
        t0 = time.time()
        self.page.goto(self.server.url, wait_until="domcontentloaded")
        # the app is ready when the node definitions from /object_info are registered, ours included
        self.page.wait_for_function(
            "() => window.app && window.app.graph && window.LiteGraph && "
            "'DreamSampler' in window.LiteGraph.registered_node_types",
            timeout=timeout_s * 1000,
        )
        return time.time() - t0

    def js(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def errors_mentioning(self, *needles: str) -> list[str]:
        msgs = self.page_errors + [m for m in self.console if m.startswith(("error", "warning"))]
        return [m for m in msgs if any(n.lower() in m.lower() for n in needles)]

    def fit_view(self):
        self.js("() => app.extensionManager.command.execute('Comfy.Canvas.FitView')")
        self.page.wait_for_timeout(300)

    def screenshot(self, path: Path, **kw):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), **kw)
        return path

    def close(self):
        self.browser.close()
