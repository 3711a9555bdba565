"""Issue 14 through a real server: a model patched to behave like a prediction type of newer ComfyUI
(test-only node TestModelSamplingBehaviour, tests/support/server_nodes) reaches the pack's nodes the
way a user's model does.  Image-to-image models (their noise scaling returns the input latent) were
accepted as flow before and ran the wrong math silently; v-prediction on raw DDPM inputs was refused.
Now the first are refused with a message naming the type and the others run."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tools.server import ComfyServer, execution_error

NODES = Path(__file__).resolve().parents[1] / "support" / "server_nodes"


@pytest.fixture(scope="module")
def probe_server(tiny_ckpt, tmp_path_factory):
    srv = ComfyServer(tmp_path_factory.mktemp("probe"), checkpoints=[tiny_ckpt], custom_nodes=[NODES])
    srv.start()
    yield srv
    srv.stop()


def edit_prompt(ckpt: str, behaviour: str, prefix: str) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "TestModelSamplingBehaviour", "inputs": {"model": ["1", 0], "behaviour": behaviour}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
        "5": {"class_type": "DreamDDIMInversion",
              "inputs": {"model": ["2", 0], "conditioning": ["3", 0], "latent_image": ["4", 0], "steps": 3,
                         "scheduler": "simple", "denoise": 1.0, "refine_steps": 0}},
        "6": {"class_type": "DreamSampler",
              "inputs": {"model": ["2", 0], "seed": 0, "steps": 3, "cfg": 1.0, "scheduler": "simple",
                         "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["5", 0], "denoise": 1.0,
                         "eta": 0.0, "eta_schedule": "constant"}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": prefix}},
    }


@pytest.mark.parametrize("behaviour,type_name", [("img_to_img_flow", "ImgToImgFlow"),
                                                 ("img_to_img_velocity", "ImgToImgVelocity")])
def test_image_to_image_models_are_refused_naming_the_type(probe_server, tiny_ckpt, behaviour, type_name):
    status, resp = probe_server.queue(edit_prompt(tiny_ckpt.name, behaviour, behaviour))
    assert status == 200, resp
    entry = probe_server.wait(resp["prompt_id"], 300)
    assert entry["status"]["status_str"] == "error"
    err = execution_error(entry)
    msg = err.get("exception_message", "")
    assert err.get("node_type") == "DreamDDIMInversion", err
    assert type_name in msg and "adds no noise" in msg and "Supported:" in msg, msg
    assert "Traceback" not in msg


@pytest.mark.parametrize("behaviour", ["v_prediction_ddpm", "const_noise_scale", "eps"])
def test_newer_denoiser_types_run_deterministically(probe_server, tiny_ckpt, tmp_path, behaviour):
    outs = []
    for k in range(2):
        entry = probe_server.run(edit_prompt(tiny_ckpt.name, behaviour, f"{behaviour}_{k}"), timeout=300)
        files = probe_server.fetch_outputs(entry, tmp_path / str(k))
        assert len(files) == 1
        outs.append(load_file(str(files[0]))["latent_tensor"])
    assert outs[0].shape == (1, 4, 4, 4) and torch.isfinite(outs[0]).all()
    assert torch.equal(outs[0], outs[1])
