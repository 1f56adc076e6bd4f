#!/usr/bin/env bash
# Set up (idempotent) and run the live pipeline on the embedded default: a generated noisy clip,
# the shipped CPU checkpoint, the fastest CPU backend, ZeroMQ PUB on loopback + a video file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python run_pipeline.py --config configs/default.yaml "$@"
