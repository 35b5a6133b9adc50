#!/usr/bin/env bash
# Does an attention sink form in a short training of our own? Two Pythia models (vanilla, and one learnable
# sink token: the pythia-*-vanilla / -sink recipes) trained at once on one GPU for a fixed wall time, then
# streamed at the paper's Table 3 caches (s + w = 1024, s = 0, 1, 2, 4) over a held-out book.
#   benchmarks/gpu_sink_emergence.sh DATA_DIR OUT_DIR
# DATA_DIR: `sinktrain data prepare` output that leaves the book out (docs/benchmarks.md has the command).
# OUT_DIR gets the two runs' metrics.jsonl (loss, val loss, per-layer sink scores), their logs, and the
# stream-eval summary (table.md, attention_stats.json, plots). Each training stops at MAX_STEPS or after
# TRAIN_S seconds of training, whichever comes first (trainer.max_time: it saves the step it stops at and exits
# 0; start-up is not counted), and the export takes that checkpoint. A `timeout` of TRAIN_S + 120 s backs it up
# (SIGTERM: the run saves the step it is in and exits 143).
# RUNS (default OUT_DIR/runs) holds the run dirs and exports: point it outside OUT_DIR on the device machine,
# where everything under OUT_DIR is copied back. PACK=FILE.tgz also packs OUT_DIR into one archive (a device
# call returns at most eight files: a fifth lease lost the metrics that way). RESUME=1 continues the runs already
# in RUNS (`--resume auto`, the same settings) for another TRAIN_S seconds, then exports and streams them again.
# OUT_DIR also gets loss.png, sink_score.png and sink_dependence.png (benchmarks/plot_training_metrics.py).
# A CPU smoke run (2 min): DEVICE=cpu PRESET=tiny MAX_STEPS=60 CACHE=64 \
#   EXTRA="--set model.max_seq_len=128 --set trainer.micro_batch_size=16" benchmarks/gpu_sink_emergence.sh DATA OUT
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: $0 DATA_DIR OUT_DIR}
OUT=${2:?usage: $0 DATA_DIR OUT_DIR}
RECIPE=${RECIPE:-pythia-70m}; PRESET=${PRESET:-$RECIPE}; TRAIN_S=${TRAIN_S:-115}; MAX_STEPS=${MAX_STEPS:-800}; DEVICE=${DEVICE:-cuda}
BOOK=${BOOK:-data/books/austen_persuasion.txt}; CACHE=${CACHE:-1024}; CKPT_EVERY=${CKPT_EVERY:-200}
EXTRA=${EXTRA:-"--set speed.compile=true --set speed.fused_loss=auto --set trainer.micro_batch_size=16"}
PY=${PYTHON:-python3}
[ "$DEVICE" = cuda ] && source launch/cuda_env.sh
RUNS=${RUNS:-$OUT/runs}
if [ "${RESUME:-0}" = 1 ]; then RESUME_MODE=auto; else RESUME_MODE=never; rm -rf "$RUNS"; fi
mkdir -p "$RUNS" "$OUT/metrics"
date -u
for V in vanilla sink; do
  # shellcheck disable=SC2086  # EXTRA is a list of --set pairs
  timeout -s TERM -k 60 "$((TRAIN_S + 120))" "$PY" -m sinktrain train --config "recipes/$RECIPE-$V.yaml" --run-dir "$RUNS/$V" \
    --resume "$RESUME_MODE" --set "data.dir=$DATA" --set "model.preset=$PRESET" --set trainer.strategy=single \
    --set trainer.global_batch_size=16 --set "trainer.max_steps=$MAX_STEPS" --set "trainer.max_time=$TRAIN_S" \
    --set schedule.warmup_steps=50 \
    --set "checkpoint.every=$CKPT_EVERY" --set "trainer.val_every=$CKPT_EVERY" --set logging.sink_score_every=200 \
    --set trainer.log_every=50 --set trainer.progress_bar=false $EXTRA > "$OUT/train-$V.log" 2>&1 &
done
wait
date -u
EXPORTS=()
for V in vanilla sink; do
  cp "$RUNS/$V/metrics.jsonl" "$OUT/metrics/$V.jsonl" || { tail -3 "$OUT/train-$V.log"; exit 1; }
  # --overwrite: under RESUME=1 the exports of the last call are there, and streaming them again would be wrong.
  "$PY" -m sinktrain export "$RUNS/$V" "$RUNS/export-$V" --overwrite > "$OUT/export-$V.log" 2>&1 &
  EXPORTS+=($!)
done
for pid in "${EXPORTS[@]}"; do wait "$pid" || { tail -n 2 "$OUT"/export-*.log; exit 1; }; done
"$PY" benchmarks/plot_training_metrics.py vanilla="$OUT/metrics/vanilla.jsonl" sink="$OUT/metrics/sink.jsonl" \
  --out "$OUT" | tee "$OUT/last_metrics.jsonl"
"$PY" -m sinktrain stream-eval "$RUNS/export-vanilla" "$RUNS/export-sink" --text "$BOOK" --tokens 8192 \
  --cache "$CACHE" --sinks 0,1,2,4 --device "$DEVICE" --dtype float32 --out "$RUNS/stream" --overwrite \
  > "$OUT/stream.log" 2>&1
rc=$?
if [ $rc = 0 ]; then
  # The summary only: the per-token NLL and TensorBoard folders hold too many files for a device call to return.
  mkdir -p "$OUT/stream" && cp "$RUNS"/stream/*.md "$RUNS"/stream/*.json "$RUNS"/stream/*.png "$OUT/stream/"
  cat "$OUT/stream/table.md"
else
  tail -n 5 "$OUT/stream.log"
fi
[ -n "${PACK:-}" ] && tar czf "$PACK" -C "$OUT" --exclude=runs .
date -u
exit $rc
