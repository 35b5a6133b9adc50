"""Per-step metrics: metrics.jsonl + TensorBoard (rank 0), validation, the sink-score probe, the non-finite-loss stop.

Everything for optimizer step s happens in one place, Lightning's on_train_batch_end of the step's last
micro-batch, *before* StepCheckpoint saves step s (the callback order in run.py). So a checkpoint and the
metrics row of its step always agree, and a resumed run neither loses nor repeats a row. Validation is
therefore measured here (a forward pass over fixed held-out micro-batches, averaged over ranks) rather than
in Lightning's validation loop, which runs only after the checkpoint hooks.

Row keys: step, loss (mean over the step's micro-batches and ranks), lr (the one this step used),
grad_norm (global L2, before clipping), tokens_seen (text tokens consumed from the data, = step × G × sample_len),
tokens_per_s (sequence tokens incl. sinks processed per second by the whole job, timing only training batches),
mfu (when the device peak is known), val_loss (when validated), sink_score (list, one per layer, when probed).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from sinktrain.util.atomic import write_text_atomic
from sinktrain.model.probe import sink_score

METRICS_FILE = "metrics.jsonl"


class TrainingMonitor(pl.Callback):
    def __init__(
        self,
        run_dir: Path,
        *,
        log_every: int,
        val_every: int,
        val_batches,  # callable -> list of LongTensor [micro_batch, sample_len] (this rank's share)
        sink_score_every: int,
        probe_batch,  # callable -> LongTensor [n, sample_len] of text tokens
        tokens_per_step: int,  # G × seq_len, sinks included (throughput / MFU)
        text_tokens_per_step: int,  # G × sample_len (tokens_seen)
        flops_per_token: float,
        peak_tflops: float | None,
        checkpoint_callback=None,
    ):
        self.path = Path(run_dir) / METRICS_FILE
        self.log_every, self.sink_score_every = log_every, sink_score_every
        self.val_every, self.val_batches = val_every, val_batches
        self.probe_batch = probe_batch
        self.tokens_per_step, self.text_tokens_per_step = tokens_per_step, text_tokens_per_step
        self.flops_per_token, self.peak_tflops = flops_per_token, peak_tflops
        self.checkpoint_callback = checkpoint_callback
        self.nonfinite: tuple[int, float] | None = None  # (step, loss) when training was stopped

    # --- timing: only the training batches themselves (no validation, checkpoint or probe time) --------
    def on_train_start(self, trainer, pl_module) -> None:
        self._seen_step = trainer.global_step
        self._busy_s, self._busy_steps = 0.0, 0
        if trainer.global_step == 0 and self.sink_score_every:
            row = {"step": 0}  # the sink score of the initialisation, for reference
            self._probe(trainer, pl_module, row)
            self._write(trainer, row)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t_batch = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._busy_s += time.perf_counter() - self._t_batch
        step = trainer.global_step
        if step == self._seen_step:  # a micro-batch inside gradient accumulation
            return
        self._seen_step = step
        self._busy_steps += 1

        # Mean loss of this optimizer step over micro-batches and ranks (one small all-reduce per step).
        local = torch.stack([pl_module.step_loss_sum.detach().float().reshape(()),
                             torch.tensor(float(pl_module.step_micro_batches), device=pl_module.step_loss_sum.device)])
        total = trainer.strategy.reduce(local, reduce_op="sum")
        loss = float(total[0] / total[1])
        pl_module.step_micro_batches = 0
        if not math.isfinite(loss):
            # Every rank sees the same reduced loss, so all stop together; no checkpoint of these weights.
            self.nonfinite = (step, loss)
            if self.checkpoint_callback is not None:
                self.checkpoint_callback.enabled = False
            trainer.should_stop = True
            return

        row = {"step": step}
        if step % self.log_every == 0 or step >= trainer.max_steps:
            tps = self.tokens_per_step * self._busy_steps / self._busy_s if self._busy_s > 0 else None
            self._busy_s, self._busy_steps = 0.0, 0
            row.update(loss=loss, lr=pl_module.step_lr, grad_norm=_grad_norm(trainer, pl_module),
                       tokens_seen=step * self.text_tokens_per_step, tokens_per_s=tps)
            if tps is not None and self.peak_tflops:
                row["mfu"] = tps * self.flops_per_token / (trainer.world_size * self.peak_tflops * 1e12)
        if self.val_every and (step % self.val_every == 0 or step >= trainer.max_steps):
            row["val_loss"] = self._validate(trainer, pl_module)
            pl_module.log("val_loss", row["val_loss"], prog_bar=True, logger=False)
        if self.sink_score_every and step % self.sink_score_every == 0:
            self._probe(trainer, pl_module, row)
        if len(row) > 1:
            self._write(trainer, row)

    # --- helpers ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def _validate(self, trainer, pl_module) -> float:
        """Mean loss over every rank's fixed validation micro-batches (a collective: all ranks call it)."""
        model = pl_module.model
        was_training = model.training
        model.eval()
        total = torch.zeros(2, device=pl_module.device)
        try:
            with trainer.precision_plugin.val_step_context():
                for tokens in self.val_batches():
                    total[0] += pl_module(tokens.to(pl_module.device)).float()
                    total[1] += 1
        finally:
            model.train(was_training)
        total = trainer.strategy.reduce(total, reduce_op="sum")
        return float(total[0] / total[1])

    def _probe(self, trainer, pl_module, row: dict) -> None:
        """Per-layer mean attention on position 0 (the sink, in sink models) over a fixed validation batch."""
        if not trainer.is_global_zero:
            return  # the weights are the same on every rank (ZeRO-1/2 shard only optimizer state / grads)
        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            input_ids, _ = pl_module.inputs_and_labels(self.probe_batch().to(pl_module.device))
            # One sequence at a time: eager attention keeps [heads, T, T] probabilities per layer, ~2.4 GB
            # for Pythia-160M at T = 2048; every sequence has the same number of (head, query) terms, so the
            # mean of the per-sequence means is the batch mean.
            per_seq = torch.stack([sink_score(model, input_ids[i : i + 1], first_k=1) for i in range(len(input_ids))])
            row["sink_score"] = [float(x) for x in per_seq.mean(0)]
        finally:
            model.train(was_training)

    def _write(self, trainer, row: dict) -> None:
        if not trainer.is_global_zero:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        writer = _tb_writer(trainer)
        if writer is None:
            return
        step = row["step"]
        for key in ("loss", "lr", "grad_norm", "tokens_per_s", "tokens_seen", "mfu"):
            if row.get(key) is not None:
                writer.add_scalar(f"train/{key}", row[key], step)
        if "val_loss" in row:
            writer.add_scalar("val/loss", row["val_loss"], step)
        for layer, score in enumerate(row.get("sink_score", [])):
            writer.add_scalar(f"sink_score/layer_{layer:02d}", score, step)
        writer.flush()


def _grad_norm(trainer, pl_module) -> float | None:
    engine = trainer.model
    if hasattr(engine, "get_global_grad_norm"):  # DeepSpeed keeps the gradients in its ZeRO buffers
        norm = engine.get_global_grad_norm()
        return None if norm is None else float(norm)
    return pl_module.last_grad_norm


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
