"""The training stage: pretrain Pythia-style models with or without attention-sink tokens (docs/train.md).

Public API (what later stages may import):
    TrainConfig, load_train_config, train                      configure and run (in-process or under torchrun)
    preflight                                                  train's checks that need no data (for the experiment)
    list_checkpoints, latest_checkpoint, load_checkpoint_weights  read a run directory's checkpoints
"""

from sinktrain.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint_weights
from sinktrain.train.config import (
    CheckpointConfig,
    DataConfig,
    LoggingConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    TrainerConfig,
    load_train_config,
)


def train(cfg: TrainConfig, rerun: str = "--resume auto"):
    """Pretrain (or resume) the run `cfg` describes; returns the run directory (a Path). `rerun`: what the
    early-stop lines tell the user to run to go on."""
    from sinktrain.train.run import train as _train  # lightning/deepspeed load only when training

    return _train(cfg, rerun=rerun)


def preflight(cfg: TrainConfig):
    """Check `cfg` as `train` would before it reads data: topology, batch geometry, accelerator, run dir."""
    from sinktrain.train.run import preflight as _preflight

    return _preflight(cfg)


__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "LoggingConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainerConfig",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint_weights",
    "load_train_config",
    "preflight",
    "train",
]
