"""/interrupt must stop every long-running node within one step whatever ComfyUI's progress-bar
hook does: newer ComfyUI throttles the hook (at most every 100 ms / 0.5 %), so the nodes check for
interruption themselves before every model call.  Here the server's hook is replaced by one that
reports progress but never raises (tests/support/server_nodes), and the check of
test_server_hardening.py must still hold."""
from pathlib import Path

import pytest

from support.interrupt import interrupt_each_long_node
from tools.server import ComfyServer

NODES = Path(__file__).resolve().parents[1] / "support" / "server_nodes"


@pytest.fixture(scope="module")
def hookless_server(tmp_path_factory, tiny_ckpt):
    from tools.workflows import upload_inputs
    srv = ComfyServer(tmp_path_factory.mktemp("hookless"), checkpoints=[tiny_ckpt], custom_nodes=[NODES])
    srv.start()
    upload_inputs(srv)
    srv.run({"1": {"class_type": "TestProgressHookWithoutInterrupt", "inputs": {}}})
    yield srv
    srv.stop()


def test_interrupt_stops_each_long_node_without_the_progress_hook(hookless_server, tiny_ckpt):
    interrupt_each_long_node(hookless_server, tiny_ckpt)


def _oracle_prompt(node: str, steps: int) -> dict:
    """A model whose layers are not ComfyUI ops (an analytic oracle; a torch.compile'd model is
    another): nothing inside its forward checks /interrupt, only the node can."""
    prompt = {"1": {"class_type": "TestExpansiveFlowOracle", "inputs": {"size": 4, "seed": 1}}}
    if node == "DreamDDIMInversion":
        prompt["2"] = {"class_type": node, "inputs": {"model": ["1", 0], "conditioning": ["1", 1],
                                                      "latent_image": ["1", 2], "steps": steps, "scheduler": "simple",
                                                      "denoise": 1.0, "refine_steps": 0}}
    else:
        prompt["2"] = {"class_type": node, "inputs": {"model": ["1", 0], "seed": 7, "steps": steps, "cfg": 1.0,
                                                      "scheduler": "simple", "positive": ["1", 1], "negative": ["1", 1],
                                                      "latent_image": ["1", 2], "denoise": 1.0, "eta": 0.0,
                                                      "eta_schedule": "constant"}}
    prompt["3"] = {"class_type": "SaveLatent",
                   "inputs": {"samples": ["2", 0], "filename_prefix": "interrupt_probe"}}
    return prompt


@pytest.mark.parametrize("node", ["DreamSampler", "DreamDDIMInversion"])
def test_interrupt_stops_a_model_without_comfy_ops(hookless_server, node):
    import threading
    import time

    from support.interrupt import watch_and_interrupt
    steps = 10000
    result = {}
    watcher = threading.Thread(target=watch_and_interrupt, args=(hookless_server, "2", result), daemon=True)
    watcher.start()
    time.sleep(0.5)
    status, resp = hookless_server.queue(_oracle_prompt(node, steps))
    assert status == 200, resp
    entry = hookless_server.wait(resp["prompt_id"], timeout=600)
    watcher.join(10)
    assert "interrupted_at" in result, result
    kinds = [k for k, _ in entry["status"]["messages"]]
    assert entry["status"]["status_str"] == "error" and "execution_interrupted" in kinds, (node, kinds)
    # stopped right after the interrupt, not at the end of its 10000 steps
    assert result["interrupted_at"] + result.get("after", 0) < steps, result
