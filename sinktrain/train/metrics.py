"""What a training step measures: metrics.jsonl + TensorBoard rows, true throughput, validation, the sink probe.

SinkLM.on_train_batch_end (module.py) decides when each runs; this file only knows how.

Row keys: step, time (unix seconds when the step ended; when written, for a row without one), loss (mean over
the step's micro-batches and ranks), lr (the one this step used), grad_norm (global L2, before clipping),
tokens_seen (text tokens consumed from the data, = step × G × sample_len), tokens_per_s (sequence tokens incl.
sinks per second by the whole job), mfu (when the device peak is known), val_loss (when validated), sink_score
(list, one per layer, when probed), sink_dependence (nats, when probed).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch

from sinktrain.model.probe import sink_dependence, sink_score
from sinktrain.train.run_dir import METRICS_FILE
from sinktrain.util.atomic import write_text_atomic


class Throughput:
    """Training tokens/s from optimizer step to optimizer step, by the wall clock after a device sync.

    CUDA runs asynchronously: host time per micro-batch measures how fast kernels are queued, not run. So the
    clock is read only at logged steps, after `torch.cuda.synchronize()`, and covers every step in between
    (data loading, forward, backward, optimizer, logging). Validation, the sink probe and checkpoint saves
    are timed the same way (`paused`) and left out: they are not training.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.start()

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> None:
        self.t0, self.excluded_s, self.steps = self._now(), 0.0, 0

    def step_done(self) -> None:
        self.steps += 1

    @contextlib.contextmanager
    def paused(self):
        t = self._now()
        try:
            yield
        finally:
            self.excluded_s += self._now() - t

    def tokens_per_s(self, tokens_per_step: int) -> float | None:
        """The rate since the last call (or start), then restart the clock."""
        elapsed = self._now() - self.t0 - self.excluded_s
        rate = tokens_per_step * self.steps / elapsed if self.steps and elapsed > 0 else None
        self.start()
        return rate


class MetricsLog:
    """Rows to `<run_dir>/metrics.jsonl` and TensorBoard; global rank 0 writes, the others do nothing."""

    def __init__(self, run_dir: Path, trainer):
        self.path = Path(run_dir) / METRICS_FILE
        self.trainer = trainer

    def write(self, row: dict) -> None:
        if not self.trainer.is_global_zero:
            return
        row = {"step": row["step"], "time": round(time.time(), 3), **row}  # the row's own time, if it has one
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        writer = _tb_writer(self.trainer)
        if writer is None:
            return
        step = row["step"]
        for key in ("loss", "lr", "grad_norm", "tokens_per_s", "tokens_seen", "mfu"):
            if row.get(key) is not None:
                writer.add_scalar(f"train/{key}", row[key], step)
        if "val_loss" in row:
            writer.add_scalar("val/loss", row["val_loss"], step)
        if row.get("sink_dependence") is not None:
            writer.add_scalar("sink_dependence", row["sink_dependence"], step)
        for layer, score in enumerate(row.get("sink_score") or []):
            writer.add_scalar(f"sink_score/layer_{layer:02d}", score, step)
        writer.flush()


@torch.no_grad()
def validation_loss(trainer, pl_module, batches) -> float:
    """Mean loss over every rank's fixed validation micro-batches (a collective: all ranks call it)."""
    model = pl_module.model
    was_training = model.training
    model.eval()
    total = torch.zeros(2, device=pl_module.device)
    try:
        with trainer.precision_plugin.val_step_context():
            for tokens in batches:
                total[0] += pl_module(tokens.to(pl_module.device)).float()
                total[1] += 1
    finally:
        model.train(was_training)
    total = trainer.strategy.reduce(total, reduce_op="sum")
    return float(total[0] / total[1])


def probe_sink(pl_module, tokens: torch.Tensor) -> dict:
    """The sink probe over a fixed batch of text tokens (the sink token(s) go in front, in sink models):
    `sink_score`, the per-layer mean attention on position 0; `sink_dependence`, the nats the second half of
    each sequence loses when the sink token(s), or position 0, are hidden from it (model.probe.sink_dependence):
    attention on a sink can form long before the model needs it (docs/benchmarks.md, seventh lease)."""
    model = pl_module.model
    was_training = model.training
    model.eval()
    try:
        input_ids, _ = pl_module.inputs_and_labels(tokens.to(pl_module.device))
        # One sequence at a time: eager attention keeps [heads, T, T] probabilities per layer, ~2.4 GB
        # for Pythia-160M at T = 2048; every sequence has the same number of (head, query) terms, so the
        # mean of the per-sequence means is the batch mean.
        # Eager even under speed.compile: the probe runs eager attention, on rank 0 alone; compiling the blocks
        # for it would cost rank 0 a compile the other ranks do not make.
        seqs = [input_ids[i: i + 1] for i in range(len(input_ids))]
        hidden = max(1, pl_module.num_sink)
        with _eager():
            per_seq = torch.stack([sink_score(model, ids, first_k=1) for ids in seqs])
            dependence = [sink_dependence(model, ids, hidden=hidden) for ids in seqs
                          if ids.shape[-1] // 2 > hidden]
        return {"sink_score": [float(x) for x in per_seq.mean(0)],
                "sink_dependence": sum(dependence) / len(dependence) if dependence else None}
    finally:
        model.train(was_training)


def _eager():
    """Run compiled modules eagerly, without compiling them."""
    return torch.compiler.set_stance("force_eager")


def _tb_writer(trainer):
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def truncate_metrics(run_dir: Path, keep_through_step: int) -> None:
    """On resume, drop rows past the checkpoint's step (they are about to be recomputed); on a fresh start, all."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    kept = []
    if keep_through_step > 0:
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    if json.loads(line)["step"] <= keep_through_step:
                        kept.append(line if line.endswith("\n") else line + "\n")
                except (ValueError, KeyError, TypeError, IndexError):
                    continue  # a line cut short by a kill, or one that is not a metrics row
    write_text_atomic(path, "".join(kept))
