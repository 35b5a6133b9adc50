#!/usr/bin/env bash
# Two checks docs/benchmarks.md listed as not measured, through the paper recipes' own launch path
# (launch/torchrun-single-node.sh: torchrun, DeepSpeed ZeRO-1), three trainings at once on one GPU:
# 1. SIGTERM to the whole process group (what timeout, Slurm and `kill -- -PGID` send) while Pythia-14M trains
#    with its data loader's two workers: exit 143, a checkpoint of the step it stopped at, and a resume with
#    --resume auto that goes on from that step to max_steps.
# 2. fp16 (Pythia's recipe: DeepSpeed's dynamic loss scale from 2^12) against bf16: the same Pythia-70M
#    training (STEPS steps of 32 x 2048 tokens, two accumulation steps), their loss and val loss.
#   benchmarks/gpu_sigterm_fp16.sh DATA_DIR OUT_DIR
# OUT_DIR gets summary.json and the four logs. RUNS (default OUT_DIR/runs) holds the run dirs: put it outside
# OUT_DIR on the device machine, where everything under OUT_DIR is copied back.
# A CPU smoke run (the SIGTERM half; DeepSpeed on CPU has no fp16/bf16 mixed precision):
#   DEVICE=cpu PRESET=tiny FP16=0 EXTRA="--set model.max_seq_len=128 --set trainer.micro_batch_size=4 \
#     --set trainer.global_batch_size=8 --set speed.loader_workers=2" benchmarks/gpu_sigterm_fp16.sh DATA OUT
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: $0 DATA_DIR OUT_DIR}
OUT=${2:?usage: $0 DATA_DIR OUT_DIR}
RUNS=${RUNS:-$OUT/runs}; STEPS=${STEPS:-300}; SIG_STEPS=${SIG_STEPS:-200}; KILL_AT=${KILL_AT:-60}
DEVICE=${DEVICE:-cuda}; FP16=${FP16:-1}; EXTRA=${EXTRA:-}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
rm -rf "$RUNS" && mkdir -p "$RUNS" "$OUT"
date -u
common=(--set "data.dir=$DATA" --set trainer.progress_bar=false --set trainer.log_every=10)
sig_args=(--run-dir "$RUNS/sigterm" --set trainer.global_batch_size=64 --set trainer.micro_batch_size=8
          --set "trainer.max_steps=$SIG_STEPS" --set checkpoint.every=100000 --set trainer.val_every=100000)
[ "$DEVICE" = cpu ] && sig_args+=(--set model.preset="${PRESET:-tiny}" --set trainer.accelerator=cpu)
LAUNCH=(bash launch/torchrun-single-node.sh)

# 1. SIGTERM: setsid puts the launcher in a session (and process group) of its own, whose id is its pid; the
# group gets the signal once KILL_AT steps are logged.
# shellcheck disable=SC2086  # EXTRA is a list of --set pairs
setsid "${LAUNCH[@]}" recipes/pythia-14m-vanilla.yaml "${common[@]}" --resume never "${sig_args[@]}" $EXTRA \
  > "$OUT/sigterm-train.log" 2>&1 &
sig_pid=$!
if [ "$FP16" = 1 ]; then  # 2. fp16 and bf16, each stopped (as a group, by timeout) if it outlasts 420 s
  for P in ${PRECISIONS:-16-mixed bf16-mixed}; do
    # shellcheck disable=SC2086
    timeout -s TERM -k 30 420 "${LAUNCH[@]}" recipes/pythia-70m-vanilla.yaml --run-dir "$RUNS/$P" "${common[@]}" \
      --resume never --set "trainer.precision=$P" --set trainer.global_batch_size=32 --set trainer.micro_batch_size=16 \
      --set "trainer.max_steps=$STEPS" --set trainer.val_every=50 --set checkpoint.every=100000 $EXTRA \
      > "$OUT/train-$P.log" 2>&1 &
  done
fi
last_step() { grep -o '"step": [0-9]*' "$RUNS/sigterm/metrics.jsonl" 2>/dev/null | tail -1 | grep -o '[0-9]*$'; }
for _ in $(seq 1 300); do
  s=$(last_step); [ "${s:-0}" -ge "$KILL_AT" ] && break
  kill -0 "$sig_pid" 2>/dev/null || break
  sleep 1
done
echo "SIGTERM to group $sig_pid at logged step ${s:-none} ($(date -u +%T))"
kill -TERM -- "-$sig_pid"
wait "$sig_pid"; sig_rc=$?
echo "stopped: rc $sig_rc ($(date -u +%T))"
# shellcheck disable=SC2086
"${LAUNCH[@]}" recipes/pythia-14m-vanilla.yaml "${common[@]}" --resume auto "${sig_args[@]}" $EXTRA \
  > "$OUT/sigterm-resume.log" 2>&1
resume_rc=$?
echo "resumed: rc $resume_rc ($(date -u +%T))"
wait  # the fp16 / bf16 pair

SIG_RC=$sig_rc RESUME_RC=$resume_rc "$PY" - "$RUNS" "$OUT" <<'EOF'
import json, os, re, sys
from pathlib import Path

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
def rows(run):
    p = runs / run / "metrics.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []
stop_log = (out / "sigterm-train.log").read_text(errors="replace")
m = re.search(r"stopped by SIGTERM after step (\d+); saved (\S+);", stop_log)
sig_rows = [r for r in rows("sigterm") if "loss" in r]
summary = {"sigterm": {
    "rc": int(os.environ["SIG_RC"]), "stopped_after_step": int(m.group(1)) if m else None,
    "checkpoint": m.group(2) if m else None, "checkpoint_exists": bool(m) and Path(m.group(2)).exists(),
    "resume_rc": int(os.environ["RESUME_RC"]),
    "logged_steps": [r["step"] for r in sig_rows], "last_loss": sig_rows[-1]["loss"] if sig_rows else None,
    # torchrun itself exits 1 with a traceback of its own on the signal (SignalException); the trainer's must not.
    "loader_worker_killed": "DataLoader worker" in stop_log,
    "resume_traceback": "Traceback" in (out / "sigterm-resume.log").read_text(errors="replace")}}
for p in ("16-mixed", "bf16-mixed"):
    r = rows(p)
    if r:
        summary[p] = {"val_loss": {x["step"]: round(x["val_loss"], 4) for x in r if "val_loss" in x},
                      "loss": {x["step"]: round(x["loss"], 4) for x in r if "loss" in x and x["step"] % 50 == 0},
                      "tokens_per_s_last": next((x["tokens_per_s"] for x in reversed(r) if x.get("tokens_per_s")),
                                                None)}
text = json.dumps(summary, indent=1)
(out / "summary.json").write_text(text + "\n")
print(text)
EOF
date -u
