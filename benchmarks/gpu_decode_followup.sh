#!/usr/bin/env bash
# The decode figures docs/benchmarks.md still lists as not measured, in one call of about 4 minutes on one
# GPU (Pythia-160M's shape, random weights, bf16):
#   benchmarks/gpu_decode_followup.sh OUT_DIR
# 1. sinktrain's kernel choice end to end (`--sdpa decode`: no cuDNN while a cache grows) at caches 1024, 4096;
# 2. the dense cache without cuDNN at 4096 (cut off by its time limit on the first lease);
# 3. the streaming evaluator's CUDA row, whose reference mode no longer builds a cuDNN graph per token.
# Each step has its own time limit, so one that hangs does not take the others' figures with it.
# A CPU smoke run of the script itself: MODEL=tiny DEVICE=cpu DTYPE=float32 benchmarks/gpu_decode_followup.sh OUT
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: $0 OUT_DIR}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DECODE=(benchmarks/streaming_decode.py --model "${MODEL:-random:pythia-160m}" --device "${DEVICE:-cuda}"
        --dtype "${DTYPE:-bfloat16}" --steps 64
        --recompute-steps 3)
status=0
step() {  # step NAME SECONDS COMMAND...: stdout to NAME.json, stderr to NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.json" 2> "$OUT/$name.log" || { echo "$name failed (rc $?)"; status=1; }
}
step decode_policy 120 "$PY" "${DECODE[@]}" --caches 1024,4096 --sdpa decode
step decode_dense_no_cudnn_4096 60 "$PY" "${DECODE[@]}" --caches 4096 --sdpa no-cudnn
step stream_eval_speed 90 "$PY" benchmarks/stream_eval_speed.py --cpu-ref-tokens 64 --cpu-par-tokens 2048
grep -h '^{"method"' "$OUT"/decode_*.log
exit $status
