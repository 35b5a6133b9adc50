"""The LightningModule: a model from the model stage, Pythia's optimiser and LR schedule.

Sinks enter a batch only through the model stage's `prepend_sink_tokens` / `lm_labels`: every sequence
starts with the sink id(s) and the loss is never taken on predicting them.
"""

from __future__ import annotations

import copy
import math
import warnings

import lightning.pytorch as pl
import torch
from torch.optim.lr_scheduler import LambdaLR

from sinktrain.model import build_model, lm_labels, prepend_sink_tokens
from sinktrain.train.config import TrainConfig


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
    if on_cuda and o.impl in ("auto", "fused_adam"):
        try:
            from deepspeed.ops.adam import FusedAdam

            return FusedAdam(groups, adam_w_mode=True, **kw)
        except Exception as e:  # no deepspeed, no nvcc/ninja, or the JIT build failed
            if o.impl == "fused_adam":
                raise RuntimeError(
                    f"optim.impl fused_adam: DeepSpeed FusedAdam is unavailable ({e}); use impl: auto") from e
            warnings.warn(f"DeepSpeed FusedAdam unavailable ({e}); using torch AdamW(fused=True)")
    return torch.optim.AdamW(groups, fused=True if on_cuda else None, **kw)


class SinkLM(pl.LightningModule):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg
        self.model = build_model(cfg.model, seed=cfg.seed)
        self.sink_ids = cfg.model.sink_token_ids
        self.num_sink = cfg.model.num_sink_tokens
        # Per optimizer step, read by the metrics callback: local micro-batch losses, the lr used, grad norm.
        self.step_loss_sum = torch.zeros(())
        self.step_micro_batches = 0
        self.step_lr: float | None = None
        self.last_grad_norm: float | None = None

    # --- batches -------------------------------------------------------------------------------------
    def inputs_and_labels(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids = prepend_sink_tokens(tokens, self.sink_ids)
        return input_ids, lm_labels(input_ids, self.num_sink)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        input_ids, labels = self.inputs_and_labels(tokens)
        return self.model(input_ids=input_ids, labels=labels, use_cache=False).loss

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if self.step_micro_batches == 0:
            self.step_lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])
            self.step_loss_sum = torch.zeros((), device=self.device)
        loss = self(batch)
        self.step_loss_sum = self.step_loss_sum + loss.detach().float()
        self.step_micro_batches += 1
        self.log("loss", loss.detach(), prog_bar=True, logger=False, on_step=True, on_epoch=False)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # DDP / single: gradients are complete (all-reduced, unscaled) here, before clipping.
        # Under DeepSpeed they live in the ZeRO buffers; the callback asks the engine instead.
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads:
            self.last_grad_norm = float(torch.nn.utils.get_total_norm(grads, 2.0))

    # --- optimiser -----------------------------------------------------------------------------------
    def schedule(self) -> WarmupCosine:
        cfg = self.cfg
        return WarmupCosine(cfg.warmup_steps, cfg.total_steps, cfg.optim.min_lr / cfg.optim.lr)

    def configure_optimizers(self):
        cfg = self.cfg
        on_cuda = self.trainer.strategy.root_device.type == "cuda"
        optimizer = make_optimizer(param_groups(self.model, cfg.optim.weight_decay), cfg, on_cuda)
        scheduler = LambdaLR(optimizer, self.schedule())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def on_train_start(self) -> None:
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
