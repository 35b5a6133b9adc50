#!/usr/bin/env bash
# One node, NPROC_PER_NODE processes (default: every GPU, else 1).
#   launch/torchrun-single-node.sh recipes/pythia-160m-sink.yaml --set data.dir=/data/pile-dedup
# Extra arguments go to `sinktrain train`. Lightning reads world size and ranks from torchrun's
# environment; the recipe needs no devices/num_nodes settings (leave them `auto`).
set -euo pipefail
source "$(dirname "$0")/cuda_env.sh"
RECIPE=${1:?usage: $0 RECIPE.yaml [sinktrain train args...]}
shift
if [[ -z "${NPROC_PER_NODE:-}" ]]; then
  NPROC_PER_NODE=$(python -c "import torch; print(max(1, torch.cuda.device_count()))")
fi
exec torchrun --standalone --nnodes 1 --nproc_per_node "$NPROC_PER_NODE" \
  -m sinktrain train --config "$RECIPE" "$@"
