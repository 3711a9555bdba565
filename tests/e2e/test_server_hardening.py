"""Trust in a user's ComfyUI: no leaked model patches, determinism across servers, bounded memory,
/interrupt stops our long-running nodes promptly.  Runs after test_server.py on the same server."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import io as _io

from support.interrupt import interrupt_each_long_node
from tools.server import ComfyServer

REPO = Path(__file__).resolve().parents[2]

def core_ksampler_prompt(ckpt_name, seed=11):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": 4, "cfg": 5.0,
                                                 "sampler_name": "euler", "scheduler": "normal", "positive": ["2", 0],
                                                 "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "core_ksampler"}},
    }


def pixels(data: bytes):
    return np.asarray(Image.open(_io.BytesIO(data)).convert("RGB"))


def without_metadata(data: bytes) -> bytes:
    """Core SaveSVGNode embeds the executed prompt in <metadata>; it carries server state (e.g. the
    'is_changed' cache keys a --cache-none server omits), so compare the drawing only."""
    import re
    return re.sub(rb"<metadata>.*?</metadata>\s*", b"", data, flags=re.S)


def only_output(server, entry, tmp_path):
    files = server.fetch_outputs(entry, tmp_path)
    assert len(files) == 1
    return files[0].read_bytes()


@pytest.fixture(scope="module")
def fresh_server(tiny_ckpt, tmp_path_factory):
    """A second, fresh server that caches nothing: the reference for model safety and determinism."""
    srv = ComfyServer(tmp_path_factory.mktemp("fresh"), checkpoints=[tiny_ckpt], extra_args=["--cache-none"])
    srv.start()
    from tools.workflows import upload_inputs
    upload_inputs(srv)
    yield srv
    srv.stop()


def test_shared_model_is_untouched_after_every_workflow(server, fresh_server, tiny_ckpt, workflow_outputs, tmp_path):
    """After all shipped workflows ran in the session server (test_server.py), a plain core KSampler
    on the same cached MODEL gives bit-identical output to a fresh server."""
    assert workflow_outputs, "the workflow tests must run first in this session"
    prompt = core_ksampler_prompt(tiny_ckpt.name)
    a = only_output(server, server.run(prompt), tmp_path / "a")
    b = only_output(fresh_server, fresh_server.run(prompt), tmp_path / "b")
    assert np.array_equal(pixels(a), pixels(b))


def test_every_workflow_is_deterministic_across_servers(fresh_server, tiny_ckpt, workflow_outputs, tmp_path):
    from tools.workflow_specs import test_overrides
    from tools.workflows import prepare_prompt
    assert workflow_outputs
    for stem, outputs in sorted(workflow_outputs.items()):
        ui, prompt = prepare_prompt(fresh_server, REPO / "example_workflows" / f"{stem}.json", tiny_ckpt.name, fast=True,
                                    test_overrides=test_overrides())
        files = fresh_server.fetch_outputs(fresh_server.run(prompt, timeout=900), tmp_path / stem)
        got = {f.name: f.read_bytes() for f in files}
        assert len(got) == len(outputs), stem
        for (na, a), (nb, b) in zip(sorted(outputs.items()), sorted(got.items())):
            if na.endswith(".png"):
                assert np.array_equal(pixels(a), pixels(b)), f"{stem}/{na} differs between runs"
            else:
                assert without_metadata(a) == without_metadata(b), f"{stem}/{na} differs between runs"


def _rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_memory_is_bounded_over_50_executions(server, tiny_ckpt):
    from tools.workflows import prepare_prompt
    _, prompt = prepare_prompt(server, REPO / "example_workflows" / "real_image_editing.json", tiny_ckpt.name, fast=True)
    sampler = next(k for k, v in prompt.items() if v["class_type"] == "DreamSampler")
    for k, v in prompt.items():
        if v["class_type"] == "SaveImage":
            v["class_type"] = "PreviewImage"
            v["inputs"].pop("filename_prefix", None)
    rss = []
    for i in range(50):
        prompt[sampler]["inputs"]["seed"] = 1000 + i        # new seed: the sampler really re-runs
        prompt[sampler]["inputs"]["eta"] = 0.3
        server.run(prompt, timeout=300)
        rss.append(_rss_kb(server.proc.pid))
    warm = rss[9]
    growth = (max(rss[10:]) - warm) / warm
    assert growth < 0.05, f"RSS grew {growth:.1%} after warm-up: {rss}"


def test_interrupt_stops_each_long_running_node_within_a_step(server, tiny_ckpt):
    interrupt_each_long_node(server, tiny_ckpt)
    server.run(core_ksampler_prompt(tiny_ckpt.name, seed=5))      # the next prompt runs
