"""Regenerate the UI-format workflows in example_workflows/ from tools/workflow_specs/*.py.

Widget order and defaults come from a live ComfyUI's /object_info (the pinned host), so the files
are exactly what the frontend would save.  Run with the host env's python:
    $(bash scripts/setup_host.sh) scripts/build_workflows.py
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))                                       # the tools package

from tools.server import ComfyServer  # noqa: E402
from tools.workflow_specs import all_specs  # noqa: E402
from tools.workflows import build_ui  # noqa: E402


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
