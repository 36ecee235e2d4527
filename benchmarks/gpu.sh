#!/usr/bin/env bash
# The prepared GPU run (benchmarks/gpu_bench.py): s2s_jax against PyTorch/cuDNN on both workloads
# in float32 and bfloat16, a large variant and the encoder recurrence alone. Meant for the lent
# GPU machine, whose image has jax (CUDA), flax, optax, orbax and torch but cannot install
# anything: it runs from the source tree (PYTHONPATH=.), imports nothing else, and takes ~5-8
# minutes there. Without a GPU it runs the same code at toy sizes on the CPU (a smoke test).
#
#   bash benchmarks/gpu.sh                 # writes $OUT (or benchmarks/results/gpu) /gpu_bench.{json,md}
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results/gpu}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
exec python3 benchmarks/gpu_bench.py --out "$out" "$@"
