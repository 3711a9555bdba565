#!/usr/bin/env bash
# The main job: build/reuse the host env, then run the shipped real-image-editing workflow headless
# through a real ComfyUI and write the edited image to ./out/.  Extra args go to run_workflow.py
# (e.g. --ckpt /path/to/v1-5-pruned-emaonly.safetensors --image dream_example.png=my_photo.png).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/setup_host.sh | tail -n 1)"
# Without --ckpt the tiny random-weight test model is used, at CI size (--fast: 64x64, few steps);
# with a real checkpoint the workflow runs exactly as shipped (512x512, 50 steps).
case " $* " in *" --ckpt "*) FAST=() ;; *) FAST=(--fast) ;; esac
exec "$PY" scripts/run_workflow.py example_workflows/real_image_editing.json "${FAST[@]}" "$@"
