"""After an install path (registry archive, ComfyUI-Manager) put a copy of the pack into a fresh
ComfyUI: start that ComfyUI, check the copy registered its nodes, run a shipped workflow from it."""
from __future__ import annotations

from pathlib import Path

from tools.server import PACK_DIR_NAME, ComfyServer
from tools.workflows import prepare_prompt, upload_inputs


def check_installed_copy_runs(workdir: Path, pack_dir: Path, tiny_ckpt: Path, out_dir: Path,
                              comfy_dir: Path | None = None) -> list[Path]:
    srv = ComfyServer(workdir, checkpoints=[tiny_ckpt], pack_dir=pack_dir, comfy_dir=comfy_dir)
    srv.start()
    try:
        boot = srv.log_path.read_text()
        assert not [ln for ln in boot.splitlines()
                    if ("IMPORT FAILED" in ln or "Cannot import" in ln) and PACK_DIR_NAME in ln], boot[-3000:]
        info = srv.object_info()
        ours = [k for k, v in info.items() if v.get("python_module", "").endswith(PACK_DIR_NAME)]
        assert len(ours) >= 20, ours
        upload_inputs(srv)
        workflow = pack_dir / "example_workflows" / "real_image_editing.json"
        _, prompt = prepare_prompt(srv, workflow, tiny_ckpt.name, fast=True)
        files = srv.fetch_outputs(srv.run(prompt, timeout=600), out_dir)
        assert files and all(f.stat().st_size > 0 for f in files)
        return files
    finally:
        srv.stop()
