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
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


def train(cfg: TrainConfig, rerun: str = "--resume auto"):
    """Pretrain (or resume) the run `cfg` describes; returns the run directory (a Path). `rerun`: what the
    early-stop lines tell the user to run to go on."""
    from sinktrain.train.run import train as _train  # lightning/deepspeed load only when training

    return _train(cfg, rerun=rerun)


def preflight(cfg: TrainConfig):
    """Check `cfg` as `train` would before it reads data: topology, batch geometry, accelerator, run dir."""
    from sinktrain.train.run import preflight as _preflight

    return _preflight(cfg)


__all__ = sorted([*_EXPORTS, "train", "preflight"])
