#!/usr/bin/env bash
# GPU bring-up in one command: the project's own commands in turn (gpu_window.py train: stbn train and
# stbn eval; stbn engines check; bench/engine_speed.py at 720p/1080p); all into OUT_DIR.
#   bash scripts/gpu_bringup.sh [--dry-run] [--minutes N] OUT_DIR     (--help for every option)
# Runs with .venv/bin/python when the project's venv exists, else python3 (a prepared CUDA image).
# The log goes to OUT_DIR/bringup.log as well as the terminal. docs/gpu.md says what to do with OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
out=""
for arg in "$@"; do
  case "$arg" in
    -h|--help) exec "$PY" scripts/gpu_bringup.py --help ;;
    -*) ;;
    *) out="$arg" ;;
  esac
done
if [[ -z "$out" ]]; then
  echo "usage: bash scripts/gpu_bringup.sh [--dry-run] [--minutes N] OUT_DIR" >&2
  exit 2
fi
mkdir -p "$out"
export PYTHONUNBUFFERED=1
"$PY" scripts/gpu_bringup.py "$@" 2>&1 | tee "$out/bringup.log"
exit "${PIPESTATUS[0]}"
