"""Run a shipped workflow headless through a real ComfyUI server and save its outputs.

    python scripts/run_workflow.py example_workflows/real_image_editing.json [--ckpt model.safetensors]
        [--models ~/ComfyUI/models] [--image dream_example.png=photo.png] [--set DreamCFGEdit.strength=0.3]
        [--fast] [--out out/]

Without --ckpt the tiny random-weight SD1.5 test checkpoint is generated and used (pictures are
then meaningless; the run proves the wiring).  The other families' workflows (flux_dev_edit,
sd35_edit, qwen_image_edit, qwen_image_edit_masked, sdxl_text_guided_inpainting,
wan21_video_edit) load the files their
loader nodes name: pass your ComfyUI ``models`` folder with --models (its checkpoints /
diffusion_models / text_encoders / vae ... subfolders are linked into the server).  The UI-format
workflow is converted to an API prompt with comfy-cli's converter against the server's
/object_info, as any headless client does.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))                                       # the tools package

from tools.server import ComfyServer  # noqa: E402
from tools.workflows import prepare_prompt, upload_inputs  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow", type=Path)
    ap.add_argument("--ckpt", type=Path, help="a real checkpoint (.safetensors); default: the tiny test model")
    ap.add_argument("--models", type=Path, help="a ComfyUI models folder whose files the workflow's loaders name")
    ap.add_argument("--image", action="append", default=[], help="NAME=PATH: upload PATH as input image NAME")
    ap.add_argument("--set", action="append", default=[], help="Class.widget=value override (JSON values)")
    ap.add_argument("--fast", action="store_true", help="CI settings: 64x64 images, few steps")
    ap.add_argument("--out", type=Path, default=REPO / "out")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args(argv)

    models = _model_folders(args.models) if args.models else {}
    _check_model_files(args.workflow, models)
    if args.ckpt is None:
        from tools.tiny_models import tiny_sd15_checkpoint
        ckpt = tiny_sd15_checkpoint()
        print(f"using the tiny random-weight SD1.5 checkpoint {ckpt} (outputs prove the wiring, not quality)")
    else:
        ckpt = args.ckpt.resolve()
        if not ckpt.exists():
            raise SystemExit(f"checkpoint not found: {ckpt}")
    with tempfile.TemporaryDirectory() as tmp:
        server = ComfyServer(Path(tmp), checkpoints=[ckpt], models=models)
        try:
            server.start()
            upload_inputs(server, args.image)
            ui, prompt = prepare_prompt(server, args.workflow, ckpt.name, args.fast, args.set)
            t0 = time.time()
            entry = server.run(prompt, timeout=args.timeout, workflow=ui)
            files = server.fetch_outputs(entry, args.out)
        except Exception:
            print("---- server log (tail) ----\n" + server.log_tail(60), file=sys.stderr)
            raise
        finally:
            server.stop()
    print(f"ran {args.workflow.name} in {time.time() - t0:.1f}s")
    for f in files:
        print("output:", f)
    if not files:
        raise SystemExit("the workflow produced no output file")


LEGACY_FOLDERS = {"text_encoders": "clip", "diffusion_models": "unet"}    # ComfyUI reads both names


def _model_folders(root: Path) -> dict:
    if not root.is_dir():
        raise SystemExit(f"--models: no such folder: {root}")
    return {sub.name: sorted(p for p in sub.rglob("*") if p.is_file())
            for sub in sorted(root.iterdir()) if sub.is_dir()}


def _check_model_files(workflow: Path, models: dict):
    """Stop before starting a server when a loader names a file that is not there (what it is and
    where it downloads from, as the frontend's missing-models dialog would say)."""
    from tools.workflows import load
    have = {(folder, p.name) for folder, paths in models.items() for p in paths}
    missing = []
    for node in load(workflow)["nodes"]:
        for m in node.get("properties", {}).get("models", []):
            if m["directory"] == "checkpoints":
                continue                                     # --ckpt replaces every checkpoint
            folders = {m["directory"], LEGACY_FOLDERS.get(m["directory"], m["directory"])}
            if not any((folder, m["name"]) in have for folder in folders):
                missing.append(f"  {m['directory']}/{m['name']}  <- {m['url']}")
    if missing:
        raise SystemExit(f"{workflow.name} loads model files that are not in --models:\n" + "\n".join(missing)
                         + "\n(pass your ComfyUI models folder with --models; CI runs this workflow on tiny "
                           "models: bash scripts/test.sh tests/e2e/test_family_matrix.py -k " + workflow.stem + ")")


if __name__ == "__main__":
    main()
