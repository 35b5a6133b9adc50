#!/usr/bin/env bash
# Several nodes: run this once on every node with the same MASTER_ADDR/MASTER_PORT/NNODES and that
# node's NODE_RANK (0 on the master).
#   MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 NNODES=2 NODE_RANK=0 NPROC_PER_NODE=8 \
#     launch/torchrun-multi-node.sh recipes/pythia-160m-sink.yaml --set data.dir=/shared/pile-dedup --run-dir /shared/runs/sink
# The run dir (and data dir) must be on a filesystem every node sees: rank 0 finalises checkpoints that
# all ranks write into. Lightning takes world size and ranks from torchrun's environment.
set -euo pipefail
source "$(dirname "$0")/cuda_env.sh"
RECIPE=${1:?usage: $0 RECIPE.yaml [sinktrain train args...]}
shift
: "${MASTER_ADDR:?set MASTER_ADDR (the node_rank 0 host)}"
: "${NNODES:?set NNODES}"
: "${NODE_RANK:?set NODE_RANK (0..NNODES-1)}"
MASTER_PORT=${MASTER_PORT:-29500}
if [[ -z "${NPROC_PER_NODE:-}" ]]; then
  NPROC_PER_NODE=$(python -c "import torch; print(max(1, torch.cuda.device_count()))")
fi
exec torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NPROC_PER_NODE" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  -m sinktrain train --config "$RECIPE" "$@"
