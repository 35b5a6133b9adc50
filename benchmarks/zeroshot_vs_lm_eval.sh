#!/usr/bin/env bash
# `sinktrain zeroshot` against lm-evaluation-harness's own CLI on the same model folder, data and limit
# (docs/zeroshot.md records a run). The lm_eval run reads the task YAMLs sinktrain wrote: lm-eval's own task
# configs with only the data source replaced by the local save_to_disk copies.
#
#   bash benchmarks/zeroshot_vs_lm_eval.sh [MODEL_FOLDER] [LIMIT] [OUT]
set -euo pipefail
MODEL=${1:-$HOME/.cache/sinktrain/smollm2-135m-instruct/SmolLM2-135M-Instruct}  # `resolve_model_source("smollm2-135m-instruct")`
LIMIT=${2:-200}
OUT=${3:-zeroshot-vs-lm-eval}
DATA=${DATA:-../shared/data/zeroshot}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
t0=$(date +%s)
sinktrain zeroshot "$MODEL" --tasks piqa,arc_easy --limit "$LIMIT" --batch-size 16 --data-dir "$DATA" --out "$OUT/sinktrain" \
    --overwrite  # this script's own folder: a rerun replaces it
t1=$(date +%s)
lm_eval run --model hf --model_args "pretrained=$MODEL,dtype=float32" \
  --tasks "$OUT/sinktrain/tasks/piqa.yaml" "$OUT/sinktrain/tasks/arc_easy.yaml" \
  --limit "$LIMIT" --batch_size 16 --device cpu --output_path "$OUT/lm_eval"
t2=$(date +%s)
echo "wall seconds: sinktrain zeroshot $((t1 - t0)), lm_eval $((t2 - t1))"
python - "$OUT" "$MODEL" <<'PY'
import glob, json, sys
out, model = sys.argv[1], sys.argv[2]
ours = json.load(open(f"{out}/sinktrain/results.json"))[model]
theirs = json.load(open(sorted(glob.glob(f"{out}/lm_eval/**/results_*.json", recursive=True))[-1]))["results"]
print("| task | metric | sinktrain zeroshot | lm_eval CLI |\n|---|---|---|---|")
for task in ("piqa", "arc_easy"):
    for m in ("acc", "acc_norm"):
        print(f"| {task} | {m} | {100 * ours[task][m]:.1f} | {100 * theirs[task][m + ',none']:.1f} |")
PY
