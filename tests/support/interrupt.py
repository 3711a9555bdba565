"""/interrupt against each long-running node type of the shipped workflows, through a real server:
start it with many steps, POST /interrupt once it reports progress, count the steps it still made."""
from __future__ import annotations

import json
import threading
import time

from tools.host import REPO

#: long-running node types and the widget that makes them long
LONG_NODES = {"DreamSampler": "steps", "DreamDDIMInversion": "steps", "DreamSDEDrag": "steps",
              "DreamDDPMDecode": "steps", "DreamScoreDistill": "iterations", "DreamDistill": "iterations",
              "DreamSDS": "iterations", "DreamDDS": "iterations", "DreamCSDEdit": "iterations"}


def watch_and_interrupt(server, node_id, result):
    """Watch /ws; when our node reports progress >= 2, POST /interrupt; count the steps it still made."""
    import websocket
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}", timeout=600)
    try:
        while True:
            msg = ws.recv()
            if isinstance(msg, bytes):
                continue
            m = json.loads(msg)
            if m["type"] == "progress" and str(m["data"].get("node")) == node_id:
                if "interrupted_at" in result:
                    result["after"] = result.get("after", 0) + 1
                elif m["data"]["value"] >= 2:
                    result["progress_max"] = m["data"]["max"]
                    result["interrupted_at"] = m["data"]["value"]
                    server.interrupt()
            elif m["type"] in ("execution_interrupted", "execution_error", "execution_success"):
                result["end"] = m["type"]
                return
    finally:
        ws.close()


def long_prompts(server, tiny_ckpt):
    """(name, prompt, node id) for each long-running node type in the shipped workflows."""
    from tools.workflow_specs import test_overrides
    from tools.workflows import prepare_prompt
    seen = {}
    from tools.workflow_specs import sd15_workflows
    for wf in sd15_workflows(REPO / "example_workflows"):
        _, prompt = prepare_prompt(server, wf, tiny_ckpt.name, fast=True, test_overrides=test_overrides())
        for k, v in prompt.items():
            widget = LONG_NODES.get(v["class_type"])
            if widget and v["class_type"] not in seen and widget in v["inputs"]:
                v["inputs"][widget] = 400
                if "seed" in v["inputs"]:
                    v["inputs"]["seed"] = 424242          # never cached
                seen[v["class_type"]] = (wf.stem, prompt, k)
    return seen


def interrupt_each_long_node(server, tiny_ckpt):
    """Every long node type stops within one step of /interrupt, long before its 400 steps."""
    cases = long_prompts(server, tiny_ckpt)
    assert {"DreamSampler", "DreamDDIMInversion"} <= set(cases)
    for cls, (stem, prompt, node_id) in sorted(cases.items()):
        result = {}
        watcher = threading.Thread(target=watch_and_interrupt, args=(server, node_id, result), daemon=True)
        watcher.start()
        time.sleep(0.5)
        status, resp = server.queue(prompt)
        assert status == 200, resp
        entry = server.wait(resp["prompt_id"], timeout=900)
        watcher.join(10)
        assert "interrupted_at" in result, f"{cls} ({stem}) reported no progress"
        assert entry["status"]["status_str"] == "error", f"{cls} ({stem}) was not interrupted"
        kinds = [k for k, _ in entry["status"]["messages"]]
        assert "execution_interrupted" in kinds, (cls, kinds)
        assert result.get("end") == "execution_interrupted", result
        assert result["progress_max"] >= 100
        assert result.get("after", 0) <= 1, f"{cls} made {result['after']} more steps after /interrupt"
