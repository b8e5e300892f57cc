#!/usr/bin/env bash
# Item 8: training steps/s on one GPU, tfdist's runtime against the bare loop, on the same card.
#
# Run from anywhere on a GPU machine:  bash bench/gpu.sh [OUT_DIR]   (default var/bench/gpu)
# It needs a Python environment with this repository installed and TensorFlow's GPU build
# (`make venv` installs tensorflow-cpu; replace it first, while the machine is online):
#   .venv/bin/pip uninstall -y tensorflow-cpu && .venv/bin/pip install 'tensorflow[and-cuda]>=2.21,<2.22'
# PYTHON selects the interpreter (default .venv/bin/python). About 5 minutes on a recent card.
#
# 1. one process: `python -m tfdist.runtime` (no TF_CONFIG) vs bench/bare_trainer.py;
# 2. through `tfdist run`: the digits model as a chief-only job (MultiWorkerMirroredStrategy,
#    one worker) vs the bare loop with the same hand-written TF_CONFIG.
# Each pair is interleaved, 3 rounds; steps/s over a steady window from the progress lines.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${1:-var/bench/gpu}
mkdir -p "$OUT"
export TF_FORCE_GPU_ALLOW_GROWTH=true  # more than one process may share the card

nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu --format=csv \
  | tee "$OUT/gpu.csv"
"$PYTHON" - <<'EOF' | tee "$OUT/tensorflow.txt"
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print(f"tensorflow {tf.__version__}, GPUs: {gpus}")
if not gpus:
    raise SystemExit("TensorFlow sees no GPU: install tensorflow[and-cuda] (see bench/gpu.sh)")
EOF

STEPS=(--runs 3 --steps 6000 --log-every 500 --skip 1000)
"$PYTHON" -m bench.throughput "${STEPS[@]}" --processes 0 | tee "$OUT/one-process.txt"
"$PYTHON" -m bench.throughput "${STEPS[@]}" --processes 1 | tee "$OUT/tfdist-run.txt"
nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv | tee -a "$OUT/gpu.csv"
echo "results in $OUT"
