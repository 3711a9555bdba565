"""Regenerate the UI-format workflows in example_workflows/ from scripts/workflow_specs/*.py.

Widget order and defaults come from a live ComfyUI's /object_info (the pinned host), so the files
are exactly what the frontend would save.  Run with the host env's python:
    $(bash scripts/setup_host.sh) scripts/build_workflows.py
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "scripts")]

from support.server import ComfyServer  # noqa: E402
from support.workflows import build_ui  # noqa: E402

import workflow_specs  # noqa: E402


def all_specs() -> dict:
    specs = {}
    for m in pkgutil.iter_modules(workflow_specs.__path__):
        mod = importlib.import_module(f"workflow_specs.{m.name}")
        for stem, wf in getattr(mod, "WORKFLOWS", {}).items():
            if stem in specs:
                raise SystemExit(f"duplicate workflow name {stem}")
            specs[stem] = wf
    return specs


def test_overrides() -> dict:
    out = {}
    for m in pkgutil.iter_modules(workflow_specs.__path__):
        mod = importlib.import_module(f"workflow_specs.{m.name}")
        out.update(getattr(mod, "TEST_OVERRIDES", {}))
    return out


def main():
    with tempfile.TemporaryDirectory() as tmp, ComfyServer(Path(tmp)) as server:
        info = server.object_info()
    for stem, wf in sorted(all_specs().items()):
        ui = build_ui(wf["nodes"], info, extra={"dreamsampler": {"title": wf["title"]}})
        path = REPO / "example_workflows" / f"{stem}.json"
        path.write_text(json.dumps(ui, indent=1) + "\n")
        print("wrote", path.relative_to(REPO))


if __name__ == "__main__":
    main()
