"""Shared fixtures: the real ComfyUI host (in-process and as a server) and tiny models.

Everything runs on the pinned ComfyUI built by scripts/setup_host.sh (or COMFYUI_DIR); a missing
host is an error, never a skip.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

ARTIFACTS = Path(os.environ.get("DREAM_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "out" / "test-artifacts"))


@pytest.fixture
def one_thread():
    """One intra-op thread: small elementwise / per-path work runs fastest that way and is immune
    to a busy shared CPU (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def pack():
    """This repository imported into the in-process ComfyUI as a custom-node package."""
    from tools.host import load_pack
    return load_pack()


@pytest.fixture(scope="session")
def tiny_ckpt(pack):
    from tools.tiny_models import tiny_sd15_checkpoint
    return tiny_sd15_checkpoint()


@pytest.fixture(scope="session")
def sd15(tiny_ckpt):
    """(MODEL, CLIP, VAE) from ComfyUI's own checkpoint loader."""
    import comfy.sd
    with torch.inference_mode():
        out = comfy.sd.load_checkpoint_guess_config(str(tiny_ckpt), output_vae=True, output_clip=True)
    return out[0], out[1], out[2]


@pytest.fixture(scope="session")
def server(tiny_ckpt, tmp_path_factory, request):
    """One real ComfyUI server for the e2e tests; its log is kept under out/test-artifacts on failure."""
    from tools.server import ComfyServer
    work = tmp_path_factory.mktemp("comfy")
    srv = ComfyServer(work, checkpoints=[tiny_ckpt])
    srv.start()
    from tools.workflows import upload_inputs
    upload_inputs(srv)
    yield srv
    srv.stop()
    if request.session.testsfailed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(srv.log_path, ARTIFACTS / "server.log")


@pytest.fixture(scope="session")
def workflow_outputs():
    """stem -> {filename: bytes} of each shipped workflow's outputs on the session server
    (filled by test_workflow_runs_end_to_end, compared with a fresh server for determinism)."""
    return {}
