#!/usr/bin/env bash
# Set up the environment (idempotent, seconds when nothing changed) and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh test/test_images.py -k bgr`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "${SDR_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
