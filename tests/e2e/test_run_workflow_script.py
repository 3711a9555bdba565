"""scripts/run_workflow.py on the other families' workflows: a loader's missing model file stops the
run before any server starts, naming each file, its folder and its download source; a models
folder with the files (ComfyUI's legacy folder names included) passes the check."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

from tools.host import REPO
from tools.workflows import MODEL_SOURCES


def _script():
    spec = importlib.util.spec_from_file_location("run_workflow", REPO / "scripts" / "run_workflow.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_missing_model_files_are_named_with_their_sources_before_any_server_starts(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "run_workflow.py"),
                        str(REPO / "example_workflows" / "wan21_video_edit.json"), "--models", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    for name in ("wan2.1_t2v_1.3B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                 "wan_2.1_vae.safetensors"):
        assert f"{MODEL_SOURCES[name]['directory']}/{name}" in r.stderr and MODEL_SOURCES[name]["url"] in r.stderr
    assert "Traceback" not in r.stderr and "starting" not in r.stdout.lower()


def test_a_models_folder_with_the_files_passes_the_check(tmp_path):
    mod = _script()
    for folder, name in (("unet", "flux1-dev.safetensors"), ("clip", "clip_l.safetensors"),
                         ("text_encoders", "t5xxl_fp16.safetensors"), ("vae", "ae.safetensors")):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_bytes(b"")
    models = mod._model_folders(tmp_path)
    mod._check_model_files(REPO / "example_workflows" / "flux_dev_edit.json", models)   # no SystemExit
    (tmp_path / "vae" / "ae.safetensors").unlink()
    try:
        mod._check_model_files(REPO / "example_workflows" / "flux_dev_edit.json", mod._model_folders(tmp_path))
    except SystemExit as e:
        assert "vae/ae.safetensors" in str(e) and "flux1-dev" not in str(e)
    else:
        raise AssertionError("a missing VAE passed the check")
