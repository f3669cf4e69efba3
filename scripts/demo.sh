#!/usr/bin/env bash
# Set up the environment (idempotent) and run the main job on built-in data: see README "Quick start".
# Extra arguments go to `surround-depth demo` (e.g. --out DIR, --frames N).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "${SDR_VENV:-$ROOT/.venv}/bin/surround-depth" demo "$@"
