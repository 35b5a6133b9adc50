"""The LightningModule: a model from the model stage, Pythia's optimiser and LR schedule.

Sinks enter a batch only through the model stage's `prepend_sink_tokens` / `lm_labels`: every sequence
starts with the sink id(s) and the loss is never taken on predicting them.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import lightning.pytorch as pl
import torch
from torch.optim.lr_scheduler import LambdaLR

from sinktrain.model import build_model, compile_blocks, lm_labels, prepend_sink_tokens
from sinktrain.train.checkpoint_saver import CheckpointSaver
from sinktrain.train.config import TrainConfig
from sinktrain.train.flops import mfu
from sinktrain.train.loss import causal_lm_loss
from sinktrain.train.metrics import MetricsLog, Throughput, probe_sink, validation_loss
from sinktrain.train.strategy import uses_grad_scaler


class WarmupCosine:
    """LR multiplier (for LambdaLR): linear 0 -> 1 over `warmup` steps, then cosine down to `min_ratio`
    at `total`, flat after. GPT-NeoX's "cosine" decay with Pythia's settings (lr 6e-4 -> 6e-5, 1% warmup).
    A callable object rather than a lambda so LambdaLR checkpoints its parameters."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (linear weights, embeddings); none on biases, LayerNorms, sink logits (1-D)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(groups: list[dict], cfg: TrainConfig, on_cuda: bool) -> torch.optim.Optimizer:
    """DeepSpeed FusedAdam (AdamW mode) on CUDA when it builds, else torch AdamW (fused kernel on CUDA)."""
    o = cfg.optim
    kw = dict(lr=o.lr, betas=tuple(o.betas), eps=o.eps)
    if o.impl == "fused_adam" and not on_cuda:
        raise ValueError("optim.impl fused_adam runs on CUDA only (DeepSpeed FusedAdam); use optim.impl auto")
    if on_cuda and o.impl in ("auto", "fused_adam"):
        try:
            from deepspeed.ops.adam import FusedAdam

            return FusedAdam(groups, adam_w_mode=True, **kw)
        except Exception as e:  # no deepspeed, no nvcc/ninja, or the JIT build failed
            if o.impl == "fused_adam":
                raise RuntimeError(
                    f"optim.impl fused_adam: DeepSpeed FusedAdam is unavailable ({e}); use impl: auto") from e
            warnings.warn(f"DeepSpeed FusedAdam unavailable ({e}); using torch AdamW(fused=True)")
    # fused: one kernel for every parameter. Not under fp16 outside DeepSpeed: a fused AdamW unscales inside
    # its step, after Lightning would clip the still-scaled gradients (Lightning refuses that combination).
    return torch.optim.AdamW(groups, fused=True if on_cuda and not uses_grad_scaler(cfg) else None, **kw)


@dataclass
class StepState:
    """What one optimizer step accumulates over its micro-batches; reset when the step ends."""

    loss_sum: torch.Tensor | None = None  # on the device: no host sync per micro-batch
    micro_batches: int = 0
    lr: float | None = None  # the learning rate this step uses (a Python float in the param group: no sync)
    grad_norm: torch.Tensor | None = None  # only on steps that log it


@dataclass
class RunHooks:
    """What the end of a step writes to, for a run with a run directory (train() builds it)."""

    metrics: MetricsLog
    checkpoints: CheckpointSaver
    val_batches: Callable[[], list]  # -> this rank's fixed validation micro-batches
    probe_batch: Callable[[], torch.Tensor]  # -> the fixed sink-probe batch of text tokens
    tokens_per_step: int  # G × seq_len, sinks included: throughput and MFU
    text_tokens_per_step: int  # G × sample_len: tokens_seen
    flops_per_token: float
    peak_tflops: float | None


class SinkLM(pl.LightningModule):
    """The model, its loss, and one optimizer step from first micro-batch to checkpoint, in the order it runs:

        training_step             forward + loss of one micro-batch; Lightning (or DeepSpeed) runs backward
        on_before_optimizer_step  after the last micro-batch: the gradient norm, on steps that log it
        (Lightning / DeepSpeed)   clip to optim.grad_clip, optimizer step, LR schedule step
        on_train_batch_end        the step is done: finite check -> metrics row -> validation -> sink probe
                                  -> checkpoint (in this order, so a checkpoint and its step's row agree)

    The per-step state has one owner, `self.step` (StepState); `self.hooks` (RunHooks) is where the end of a
    step writes. Without hooks (tests, benchmarks of the bare step) the module only trains.
    """

    def __init__(self, cfg: TrainConfig, hooks: RunHooks | None = None):
        super().__init__()
        self.cfg = cfg
        self.hooks = hooks
        self.model = build_model(cfg.model, seed=cfg.seed)
        self.sink_ids = cfg.model.sink_token_ids
        self.num_sink = cfg.model.num_sink_tokens
        if cfg.speed.activation_checkpointing:
            # transformers 5.24 renamed it (the old name warns, and goes in v6); 5.17-5.23 have only the old one.
            enable = getattr(self.model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.speed.compile:
            compile_blocks(self.model)
        self.step = StepState()
        self.nonfinite: tuple[int, float] | None = None  # (step, loss) when training was stopped
        self.sigterm_received = False  # set by the handler on_train_start installs
        self.stopped_by_sigterm: int | None = None  # the step training stopped at, after a SIGTERM
        self.stopped_by_time: int | None = None  # the step training stopped at, trainer.max_time spent
        self._train_start = time.monotonic()  # set again when training starts

    # --- batches and loss -----------------------------------------------------------------------------
    def inputs_and_labels(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids = prepend_sink_tokens(tokens, self.sink_ids)
        return input_ids, lm_labels(input_ids, self.num_sink)

    def loss(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        s = self.cfg.speed
        return causal_lm_loss(self.model, input_ids, labels, impl=s.fused_loss, chunk_tokens=s.loss_chunk_tokens)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The plain model's loss on text tokens (validation)."""
        input_ids, labels = self.inputs_and_labels(tokens)
        return self.model(input_ids=input_ids, labels=labels, use_cache=False).loss

    # --- one optimizer step ---------------------------------------------------------------------------
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if self.step.micro_batches == 0:
            self.step.lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])
        loss = self.loss(*self.inputs_and_labels(batch))
        detached = loss.detach().float()
        self.step.loss_sum = detached if self.step.loss_sum is None else self.step.loss_sum + detached
        self.step.micro_batches += 1
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # DDP / single: called once per optimizer step, with the gradients complete (all-reduced, unscaled) and
        # not yet clipped. DeepSpeed calls it on every micro-batch and keeps the gradients in its ZeRO buffers;
        # its engine reports the norm itself (_grad_norm).
        if self.cfg.trainer.strategy != "deepspeed" and self._logs(self.trainer.global_step + 1):
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            self.step.grad_norm = torch.nn.utils.get_total_norm(grads, 2.0) if grads else None

    def on_train_start(self) -> None:
        self._restore_schedule()
        self._skipped_steps = getattr(self.trainer.model, "skipped_steps", 0)  # see lr_scheduler_step
        self._seen_step = self.trainer.global_step
        if self.hooks is not None:
            if self.trainer.global_step > 0:  # resumed: this step's checkpoint exists already
                self.hooks.checkpoints.saved_step = self.trainer.global_step
            elif self.cfg.logging.sink_score_every:  # the sink score of the initialisation, for reference
                self.hooks.metrics.write({"step": 0, **self._probe()})
        self.throughput = Throughput(self.device)  # the clock starts after the probe: training time only
        self._train_start = time.monotonic()  # trainer.max_time counts from here too
        # SIGTERM (a scheduler's preemption, torchrun passing on its own) stops training at the next step every
        # rank agrees on, with a checkpoint of that step. Lightning's own handler would stop inside a gradient
        # accumulation, without a save, and exit 0; ours replaces it (Lightning restores the original after fit).
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        self.sigterm_received = True

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        step = self.trainer.global_step
        if step == self._seen_step:  # a micro-batch inside gradient accumulation
            return
        self._seen_step = step
        self.throughput.step_done()
        state, self.step = self.step, StepState()
        if self.hooks is None:
            return
        h, last = self.hooks, step >= self.trainer.max_steps
        # `time` is when the step ended: a throughput check against it must leave out validation, the probe
        # and checkpoints that follow a row (tokens_per_s leaves them out too).
        row = {"step": step, "time": round(time.time(), 3)}
        log, checkpoint = self._logs(step), h.checkpoints.due(step, self.trainer.max_steps)
        # One rank alone may have the signal, and ranks' clocks differ: ranks agree when they reduce the loss;
        # a single process decides every step.
        alone = self.trainer.world_size == 1
        sigterm, time_up = self.sigterm_received and alone, self._time_up() and alone
        if log or checkpoint or sigterm or time_up:  # the only per-step host syncs: the loss is reduced here
            loss, sigterm, time_up = self._mean_loss(state)
            if not math.isfinite(loss):
                # Every rank sees the same reduced loss, so all stop together; no checkpoint of these weights.
                self.nonfinite = (step, loss)
                self.trainer.should_stop = True
                return
        time_up = time_up and not last  # the last step ends the run anyway, as planned
        stop = sigterm or time_up
        # The step a run stops at is logged and validated like a last step: the checkpoint it saves, the one an
        # export takes, then has its losses in metrics.jsonl (a study's report reads its steps from there).
        log = log or stop
        if log:
            tps = self.throughput.tokens_per_s(h.tokens_per_step)
            row.update(loss=loss, lr=state.lr, grad_norm=self._grad_norm(state),
                       tokens_seen=step * h.text_tokens_per_step, tokens_per_s=tps)
            if tps is not None and h.peak_tflops:
                row["mfu"] = mfu(tps, h.flops_per_token, self.trainer.world_size, h.peak_tflops)
            self.log("loss", loss, prog_bar=True, logger=False)
        val_every = self.cfg.trainer.val_every if self.cfg.trainer.val_batches else 0
        if val_every and (step % val_every == 0 or last or stop):
            with self.throughput.paused():
                row["val_loss"] = validation_loss(self.trainer, self, h.val_batches())
            self.log("val_loss", row["val_loss"], prog_bar=True, logger=False)
        if self.cfg.logging.sink_score_every and step % self.cfg.logging.sink_score_every == 0:
            with self.throughput.paused():
                row.update(self._probe())
        if len(row) > 2:
            h.metrics.write(row)
        if checkpoint or (stop and h.checkpoints.every):
            with self.throughput.paused():
                h.checkpoints.save(self.trainer, step)
        if stop:
            if sigterm:
                self.stopped_by_sigterm = step
            else:
                self.stopped_by_time = step
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        # The last step is normally saved at its end already; this catches any other clean stop.
        step, saver = self.trainer.global_step, self.hooks.checkpoints if self.hooks else None
        if saver and saver.every and step > 0 and self.nonfinite is None and saver.saved_step != step:
            saver.save(self.trainer, step)

    # --- step helpers ---------------------------------------------------------------------------------
    def _logs(self, step: int) -> bool:
        return step % max(1, self.cfg.trainer.log_every) == 0 or step >= self.trainer.max_steps

    def _time_up(self) -> bool:
        limit = self.cfg.trainer.max_time
        return limit is not None and time.monotonic() - self._train_start >= limit

    def _mean_loss(self, state: StepState) -> tuple[float, bool, bool]:
        """Mean loss of a step over its micro-batches and all ranks, whether any rank has had a SIGTERM, and
        whether any rank's trainer.max_time is spent (one small all-reduce)."""
        device = state.loss_sum.device
        local = torch.stack([state.loss_sum.reshape(()), torch.tensor(float(state.micro_batches), device=device),
                             torch.tensor(float(self.sigterm_received), device=device),
                             torch.tensor(float(self._time_up()), device=device)])
        total = self.trainer.strategy.reduce(local, reduce_op="sum")
        return float(total[0] / total[1]), float(total[2]) > 0, float(total[3]) > 0

    def _grad_norm(self, state: StepState) -> float | None:
        engine = self.trainer.model
        if hasattr(engine, "get_global_grad_norm"):  # DeepSpeed keeps the gradients in its ZeRO buffers
            norm = engine.get_global_grad_norm()
            return None if norm is None else float(norm)
        return None if state.grad_norm is None else float(state.grad_norm)

    def _probe(self) -> dict:
        if not self.trainer.is_global_zero:
            return {}  # the weights are the same on every rank (ZeRO-1/2 shard only optimizer state / grads)
        return probe_sink(self, self.hooks.probe_batch())

    # --- optimiser -----------------------------------------------------------------------------------
    def schedule(self) -> WarmupCosine:
        cfg = self.cfg
        return WarmupCosine(cfg.warmup_steps, cfg.total_steps, cfg.optim.min_lr / cfg.optim.lr)

    def lr_scheduler_step(self, scheduler, metric) -> None:
        # Pythia's GPT-NeoX steps its schedule inside DeepSpeed's engine, which leaves it where it was on a step
        # whose fp16 gradients overflowed (the engine skips that update). Lightning steps it after every optimizer
        # step, skipped or not: follow NeoX, under DeepSpeed and under torch's GradScaler alike.
        skipped = getattr(self.trainer.model, "skipped_steps", None)  # DeepSpeed's engine only
        if isinstance(skipped, int) and skipped > self._skipped_steps:  # (DeepSpeed restores it on resume)
            self._skipped_steps = skipped
            return
        if uses_grad_scaler(self.cfg) and not self._optimizer_stepped:  # GradScaler did not call optimizer.step
            return
        self._optimizer_stepped = False
        super().lr_scheduler_step(scheduler, metric)

    def _optimizer_step_applied(self, optimizer, args, kwargs) -> None:
        self._optimizer_stepped = True

    def configure_optimizers(self):
        cfg = self.cfg
        on_cuda = self.trainer.strategy.root_device.type == "cuda"
        optimizer = make_optimizer(param_groups(self.model, cfg.optim.weight_decay), cfg, on_cuda)
        # torch's GradScaler skips optimizer.step() when the fp16 gradients overflowed: a hook on the step itself
        # tells lr_scheduler_step which steps were applied, without one more host sync.
        self._optimizer_stepped = False
        optimizer.register_step_post_hook(self._optimizer_step_applied)
        scheduler = LambdaLR(optimizer, self.schedule())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def _restore_schedule(self) -> None:
        # Resuming restored the checkpoint's schedule (LambdaLR saves base_lrs and WarmupCosine's fields). A
        # resumed run follows *this* config's lr, min_lr and length from the restored step on, as config.yaml
        # and run.json record (run.py says what changed). Unchanged values are left alone: resume stays exact.
        schedule = self.schedule()
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            base_lrs = [self.cfg.optim.lr] * len(sched.base_lrs)
            if sched.base_lrs == base_lrs and all(vars(f) == vars(schedule) for f in sched.lr_lambdas):
                continue
            sched.base_lrs = base_lrs
            sched.lr_lambdas = [copy.copy(schedule) for _ in sched.lr_lambdas]
            lrs = [base * f(sched.last_epoch) for base, f in zip(sched.base_lrs, sched.lr_lambdas)]
            for group, lr in zip(sched.optimizer.param_groups, lrs):
                group["initial_lr"], group["lr"] = self.cfg.optim.lr, lr
            sched._last_lr = lrs

    # --- checkpoint extras ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # No RNG state is saved: nothing random happens after init (no dropout, the data order is a pure
        # function of the step), so a resumed run is bit-exact without one (tests/train check it).
        checkpoint["sinktrain"] = {"model_config": self.cfg.model.to_dict()}
