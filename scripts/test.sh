#!/usr/bin/env bash
# Run the whole test suite against a real ComfyUI (built/cached by scripts/setup_host.sh).
# Extra args go to pytest (e.g. tests/core -k inversion).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/setup_host.sh | tail -n 1)"
# the real-browser tests need Chromium (installed here when possible; DREAM_SKIP_BROWSER=1 opts out)
if [ "${DREAM_SKIP_BROWSER:-0}" != "1" ]; then
  DREAM_CHROMIUM="$(bash scripts/setup_browser.sh | tail -n 1)" && export DREAM_CHROMIUM \
    || echo "warning: no Chromium, tests/browser will fail (see above)" >&2
fi
set +e
"$PY" -m pytest -q -rs --durations=15 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing (exit 5 is never a pass)" >&2
  exit 1
fi
exit "$rc"
