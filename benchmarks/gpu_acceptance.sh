#!/usr/bin/env bash
# The GPU acceptance run (benchmarks/gpu_acceptance.py): one command, one GPU, under 10 minutes.
#   benchmarks/gpu_acceptance.sh DATA_DIR OUT_DIR [--peak-tflops 989.4] [gpu_acceptance.py options]
# DATA_DIR: from `sinktrain data prepare` (a few million tokens are plenty). OUT_DIR gets acceptance.json
# (pass/fail per check, with the numbers), throughput.json, logs.tar.gz, the runs, exports and stream-evals.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${1:?usage: $0 DATA_DIR OUT_DIR [options]}
OUT_DIR=${2:?usage: $0 DATA_DIR OUT_DIR [options]}
shift 2
source launch/cuda_env.sh
exec "${PYTHON:-python3}" benchmarks/gpu_acceptance.py --data-dir "$DATA_DIR" --out "$OUT_DIR" "$@"
