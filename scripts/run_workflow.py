"""Run a shipped workflow headless through a real ComfyUI server and save its outputs.

    python scripts/run_workflow.py example_workflows/real_image_editing.json [--ckpt model.safetensors]
        [--image dream_example.png=photo.png] [--set DreamCFGEdit.strength=0.3] [--fast] [--out out/]

Without --ckpt the tiny random-weight SD1.5 test checkpoint is generated and used (pictures are
then meaningless; the run proves the wiring).  The UI-format workflow is converted to an API
prompt with comfy-cli's converter against the server's /object_info, as any headless client does.
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
    ap.add_argument("--image", action="append", default=[], help="NAME=PATH: upload PATH as input image NAME")
    ap.add_argument("--set", action="append", default=[], help="Class.widget=value override (JSON values)")
    ap.add_argument("--fast", action="store_true", help="CI settings: 64x64 images, few steps")
    ap.add_argument("--out", type=Path, default=REPO / "out")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args(argv)

    if args.ckpt is None:
        from tools.tiny_models import tiny_sd15_checkpoint
        ckpt = tiny_sd15_checkpoint()
        print(f"using the tiny random-weight SD1.5 checkpoint {ckpt} (outputs prove the wiring, not quality)")
    else:
        ckpt = args.ckpt.resolve()
        if not ckpt.exists():
            raise SystemExit(f"checkpoint not found: {ckpt}")
    with tempfile.TemporaryDirectory() as tmp:
        server = ComfyServer(Path(tmp), checkpoints=[ckpt])
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


if __name__ == "__main__":
    main()
