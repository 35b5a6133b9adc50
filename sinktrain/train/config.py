"""TrainConfig: one dataclass per concern, composed; YAML recipes map onto it 1:1 (unknown keys are errors).

Defaults are Pythia's (EleutherAI/pythia, models/160M/pythia-160m.yml) with StreamingLLM's global batch of 256.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sinktrain.config_io import ConfigKeyError, build_dataclass, load_yaml
from sinktrain.model import ModelConfig

STRATEGIES = ("single", "ddp", "deepspeed")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")
OPTIMIZER_IMPLS = ("auto", "torch", "fused_adam")


@dataclass
class DataConfig:
    dir: str = ""  # a directory written by `sinktrain data prepare` (holds manifest.json)
    tokenizer: str | None = None  # tokenizer spec to check the data against (None: trust the manifest)
    seed: int = 1234  # sample order seed (TokenDataset); the order is a pure function of (seed, step)


@dataclass
class OptimConfig:
    lr: float = 6.0e-4
    min_lr: float = 6.0e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1.0e-8
    weight_decay: float = 0.1  # not on biases, norms, or any other 1-D parameter
    grad_clip: float = 1.0  # global L2 norm; 0 disables
    # auto: DeepSpeed FusedAdam on CUDA when it builds, else torch AdamW (fused on CUDA); torch: always torch AdamW.
    impl: str = "auto"


@dataclass
class ScheduleConfig:
    warmup_fraction: float = 0.01  # Pythia: 1% of the run (1,430 of 143,000 steps)
    warmup_steps: int | None = None  # overrides warmup_fraction when set
    total_steps: int | None = None  # cosine length; default trainer.max_steps


@dataclass
class TrainerConfig:
    strategy: str = "single"  # single | ddp | deepspeed
    zero_stage: int = 1  # deepspeed only: 1 or 2
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed (fp16, dynamic loss scale) | bf16-true
    initial_loss_scale_power: int = 12  # fp16: initial dynamic loss scale 2^12 (Pythia)
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: int | str = "auto"  # per node; under torchrun taken from LOCAL_WORLD_SIZE
    num_nodes: int | str = "auto"  # under torchrun taken from WORLD_SIZE / LOCAL_WORLD_SIZE
    global_batch_size: int = 256  # sequences per optimizer step, all ranks together
    micro_batch_size: int = 8  # sequences per forward/backward on one rank
    max_steps: int = 143_000
    val_every: int = 1000  # optimizer steps between validations; 0 disables
    val_batches: int = 10  # micro-batches per rank per validation
    log_every: int = 10  # optimizer steps between metrics.jsonl / TensorBoard rows
    progress_bar: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms (CPU runs are deterministic anyway)


@dataclass
class CheckpointConfig:
    every: int = 1000  # optimizer steps between checkpoints (and one at the end)
    keep_last: int = 3  # complete checkpoints kept; 0 keeps all


@dataclass
class LoggingConfig:
    sink_score_every: int = 100  # steps between sink-score probes (0 disables)
    sink_score_samples: int = 4  # validation sequences in the fixed probe batch
    peak_tflops: float | None = None  # per-device peak for MFU; None: looked up from the device name


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    run_dir: str = "runs/train"
    seed: int = 1234  # model init and torch RNG
    resume: str = "auto"  # auto (newest complete checkpoint, if any) | never | <checkpoint path>
    name: str = ""  # free-form recipe name, recorded in the run dir

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        t = self.trainer
        if t.strategy not in STRATEGIES:
            raise ValueError(f"trainer.strategy {t.strategy!r} is unknown; choose one of {', '.join(STRATEGIES)}")
        if t.precision not in PRECISIONS:
            raise ValueError(f"trainer.precision {t.precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
        if t.strategy == "deepspeed" and t.zero_stage not in (1, 2):
            raise ValueError(f"trainer.zero_stage must be 1 or 2 for DeepSpeed, not {t.zero_stage!r}")
        if self.optim.impl not in OPTIMIZER_IMPLS:
            raise ValueError(f"optim.impl {self.optim.impl!r} is unknown; choose one of {', '.join(OPTIMIZER_IMPLS)}")
        for name in ("global_batch_size", "micro_batch_size", "max_steps"):
            if not isinstance(getattr(t, name), int) or getattr(t, name) < 1:
                raise ValueError(f"trainer.{name} must be a positive integer, not {getattr(t, name)!r}")
        if t.global_batch_size % t.micro_batch_size:
            raise ValueError(
                f"trainer.micro_batch_size {t.micro_batch_size} does not divide trainer.global_batch_size "
                f"{t.global_batch_size}; choose sizes where it does"
            )
        if self.model.seq_len - self.model.num_sink_tokens < 2:
            raise ValueError("model sequence length leaves fewer than 2 text tokens per sample; raise model.max_seq_len")
        if not self.resume:
            raise ValueError("resume must be auto, never or a checkpoint path")

    # --- derived values -------------------------------------------------------------------------------
    @property
    def sample_len(self) -> int:
        """Text tokens per training sample: the model's sequence minus the sink tokens prepended to it."""
        return self.model.seq_len - self.model.num_sink_tokens

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps or self.trainer.max_steps

    @property
    def warmup_steps(self) -> int:
        if self.schedule.warmup_steps is not None:
            return self.schedule.warmup_steps
        return int(math.ceil(self.schedule.warmup_fraction * self.total_steps))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return build_dataclass(cls, d, where="train config")


def _set_dotted(d: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = d
    for k in keys[:-1]:
        if not isinstance(node.get(k, {}), dict):
            raise ConfigKeyError(f"--set {dotted}: {k!r} is not a section")
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """`a.b=c` strings onto a nested dict; values are parsed as YAML (so 1e-3, true, null, [1,2] work)."""
    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigKeyError(f"--set {item!r} is not KEY=VALUE (e.g. --set trainer.max_steps=100)")
        key, raw = item.split("=", 1)
        _set_dotted(data, key.strip(), yaml.safe_load(raw))
    return data


def load_train_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
) -> TrainConfig:
    """A recipe file (or the defaults), then `--set` overrides, then --run-dir / --resume. Unknown keys raise."""
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    if run_dir is not None:
        data["run_dir"] = run_dir
    if resume is not None:
        data["resume"] = resume
    return TrainConfig.from_dict(data)


def torchrun_topology() -> tuple[int, int] | None:
    """(devices per node, nodes) when launched by torchrun (or any launcher that sets the elastic env vars)."""
    if "LOCAL_WORLD_SIZE" in os.environ and "WORLD_SIZE" in os.environ:
        local, world = int(os.environ["LOCAL_WORLD_SIZE"]), int(os.environ["WORLD_SIZE"])
        return local, max(1, world // max(1, local))
    return None


def resolve_topology(cfg: TrainConfig) -> tuple[int, int]:
    """(devices per node, nodes) this run will use; explicit settings must agree with torchrun's environment."""
    t = cfg.trainer
    env = torchrun_topology()
    if env is not None:
        for name, given, actual in (("devices", t.devices, env[0]), ("num_nodes", t.num_nodes, env[1])):
            if given != "auto" and int(given) != actual:
                raise ValueError(
                    f"trainer.{name}={given} disagrees with the torchrun environment ({actual}); "
                    f"set it to auto or launch with matching --nproc_per_node/--nnodes"
                )
        devices, nodes = env
    else:
        if t.devices == "auto":
            devices = 1
            if t.strategy != "single" and t.accelerator in ("auto", "gpu", "cuda"):
                import torch

                devices = max(1, torch.cuda.device_count())
        else:
            devices = int(t.devices)
        nodes = 1 if t.num_nodes == "auto" else int(t.num_nodes)
    if t.strategy == "single" and devices * nodes != 1:
        raise ValueError(
            f"trainer.strategy single runs one process but the world size is {devices * nodes}; use ddp or deepspeed"
        )
    return devices, nodes


def check_batch_geometry(cfg: TrainConfig, world_size: int) -> int:
    """Gradient-accumulation steps: global_batch / (micro_batch × world). Raises when that is not a whole number."""
    g, m = cfg.trainer.global_batch_size, cfg.trainer.micro_batch_size
    if g % (m * world_size):
        raise ValueError(
            f"world size {world_size} × micro_batch_size {m} does not divide global_batch_size {g}; "
            f"change the number of processes or the batch sizes so that it does"
        )
    return g // (m * world_size)
