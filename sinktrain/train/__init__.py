"""The training stage: pretrain Pythia-style models with or without attention-sink tokens (docs/train.md).

Public API (what later stages may import):
    TrainConfig, load_train_config, train                      configure and run (in-process or under torchrun)
    preflight                                                  train's checks that need no data (for the experiment)
    list_checkpoints, latest_checkpoint, load_checkpoint_weights  read a run directory's checkpoints

Names load from their submodules on first use (sinktrain/util/lazy.py): importing the package, or only its config,
loads no torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sinktrain.util.lazy import lazy_exports

if TYPE_CHECKING:
    from sinktrain.train.config import TrainConfig

_EXPORTS = {
    "latest_checkpoint": "checkpoint",
    "list_checkpoints": "checkpoint",
    "load_checkpoint_weights": "checkpoint",
    "CheckpointConfig": "config",
    "DataConfig": "config",
    "LoggingConfig": "config",
    "OptimConfig": "config",
    "ScheduleConfig": "config",
    "TrainConfig": "config",
    "TrainerConfig": "config",
    "load_train_config": "config",
    "preflight": "checks",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


def train(cfg: TrainConfig, rerun: str = "--resume auto"):
    """Pretrain (or resume) the run `cfg` describes; returns the run directory (a Path). `rerun`: what the
    early-stop lines tell the user to run to go on."""
    from sinktrain.train.checks import preflight

    preflight(cfg)  # a bad run dir or batch geometry is refused before Lightning and DeepSpeed load (~6 s)
    from sinktrain.train.run import train as _train  # which checks again: it is also called directly

    return _train(cfg, rerun=rerun)


__all__ = sorted([*_EXPORTS, "train"])
