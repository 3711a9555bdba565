#!/usr/bin/env bash
# Make Chromium available for the real-browser tests (tests/browser) and scripts/workflow_pictures.py.
# Uses DREAM_CHROMIUM or a Chromium/Chrome already on PATH; otherwise installs Debian's chromium
# with apt-get (as root, or with passwordless sudo).  Prints the browser's path on its last line;
# exits non-zero, with a hint, when there is none and it cannot install one.
set -euo pipefail

find_browser() {
  if [ -n "${DREAM_CHROMIUM:-}" ] && [ -x "${DREAM_CHROMIUM}" ]; then echo "$DREAM_CHROMIUM"; return 0; fi
  for c in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  return 1
}

if find_browser; then exit 0; fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
fi
if command -v apt-get >/dev/null 2>&1 && [ "$SUDO" != "none" ]; then
  echo "[setup_browser] installing Debian's chromium (apt-get)" >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
  if find_browser; then exit 0; fi
fi
echo "[setup_browser] no Chromium: install it (Debian/Ubuntu: apt-get install chromium), or set" \
     "DREAM_CHROMIUM=/path/to/chrome; DREAM_SKIP_BROWSER=1 skips the browser tests" >&2
exit 1
