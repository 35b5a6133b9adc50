"""TrainConfig: one dataclass per concern, composed; YAML recipes map onto it 1:1 (unknown keys are errors).
Types and ranges are declared once, in the annotations (see sinktrain.config_io); field docstrings are the
`sinktrain train --help` text.

Defaults are Pythia's (EleutherAI/pythia, models/160M/pythia-160m.yml) with StreamingLLM's global batch of 256.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import field
from pathlib import Path
from typing import Annotated

from sinktrain.config_io import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    Range,
    Seed,
    build_dataclass,
    configclass,
)
from sinktrain.model_config import ModelConfig

STRATEGIES = ("single", "ddp", "deepspeed")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")  # cuda: Lightning's other name for gpu
FUSED_LOSSES = ("off", "chunked", "liger", "auto")
OPTIMIZER_IMPLS = ("auto", "torch", "fused_adam")


@configclass("data")
class DataConfig:
    dir: str = ""
    """A directory written by `sinktrain data prepare` (holds manifest.json)."""
    tokenizer: str | None = None
    """Tokenizer spec to check the data against (None: the one recorded in the data's manifest)."""
    seed: Seed = 1234
    """Sample-order seed: the order is a pure function of (seed, step, global batch size)."""


@configclass("optim")
class OptimConfig:
    lr: PositiveFloat = 6.0e-4
    """Peak learning rate (after warmup)."""
    min_lr: NonNegativeFloat = 6.0e-5
    """Learning rate at the end of the cosine schedule."""
    betas: list[Probability] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    eps: PositiveFloat = 1.0e-8
    """AdamW epsilon."""
    weight_decay: NonNegativeFloat = 0.1
    """AdamW weight decay; not applied to biases, norms or any other 1-D parameter."""
    grad_clip: NonNegativeFloat = 1.0
    """Clip the global L2 gradient norm to this; 0 disables."""
    impl: str = "auto"
    """auto: DeepSpeed FusedAdam on CUDA when it builds, else torch AdamW (fused on CUDA); torch: always torch
    AdamW; fused_adam: DeepSpeed FusedAdam or fail."""


@configclass("schedule")
class ScheduleConfig:
    warmup_fraction: Fraction = 0.01
    """Linear warmup as a fraction of the run (Pythia: 1%, 1,430 of 143,000 steps)."""
    warmup_steps: NonNegativeInt | None = None
    """Warmup steps; overrides warmup_fraction when set."""
    total_steps: PositiveInt | None = None
    """Length of the cosine decay; default trainer.max_steps."""


@configclass("trainer")
class TrainerConfig:
    strategy: str = "single"
    """single | ddp | deepspeed."""
    zero_stage: Annotated[int, Range(ge=1, le=2)] = 1
    """DeepSpeed only: ZeRO stage 1 or 2."""
    precision: str = "32-true"
    """32-true | bf16-mixed | 16-mixed (fp16, dynamic loss scale) | bf16-true (weights and optimizer state in
    bf16; outside DeepSpeed no fp32 master copy, so small updates round away) | auto (bf16-mixed on a GPU that
    has bf16, else 16-mixed on a GPU, 32-true on CPU)."""
    initial_loss_scale_power: NonNegativeInt = 12
    """fp16 only: initial dynamic loss scale 2^k (Pythia: 12)."""
    accelerator: str = "auto"
    """auto | cpu | gpu (or cuda)."""
    devices: PositiveInt | str = "auto"
    """Devices per node, or auto; under torchrun taken from LOCAL_WORLD_SIZE."""
    num_nodes: PositiveInt | str = "auto"
    """Nodes, or auto; under torchrun taken from WORLD_SIZE / LOCAL_WORLD_SIZE."""
    global_batch_size: PositiveInt = 256
    """Sequences per optimizer step, all ranks together."""
    micro_batch_size: PositiveInt = 8
    """Sequences per forward/backward on one rank."""
    max_steps: PositiveInt = 143_000
    """Optimizer steps to train for."""
    max_time: PositiveFloat | None = None
    """Seconds of training after which this invocation stops, as a SIGTERM stops it (at the end of a step all
    ranks agree on, with that step's checkpoint) but exiting 0; `--resume auto` continues, with the same
    budget again. The clock starts when training starts (start-up not counted); None: no limit. For a
    scheduler's wall limit, leave room for the start-up and the last save."""
    val_every: NonNegativeInt = 1000
    """Optimizer steps between validations; 0 disables."""
    val_batches: NonNegativeInt = 10
    """Micro-batches per rank per validation; 0 disables validation."""
    log_every: PositiveInt = 10
    """Optimizer steps between metrics.jsonl / TensorBoard rows."""
    progress_bar: bool = True
    """Show Lightning's progress bar."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms (CPU runs are deterministic anyway)."""


@configclass("speed")
class SpeedConfig:
    """Speed levers. Each is a switch; tests/train/test_levers.py checks each gives the plain path's loss and
    gradients. docs/train.md has the measured effect of each (benchmarks/train_throughput.py)."""

    compile: bool = False
    """torch.compile each transformer block (nn.Module.compile: parameter names, checkpoints and exports are
    unchanged); the attention mask stays eager, so unpadded batches run SDPA with no mask (compile_blocks)."""
    fused_loss: str = "off"
    """Cross-entropy without the [tokens x vocab] fp32 logits: off | chunked (torch, any device) | liger
    (liger-kernel, CUDA) | auto (liger when installed on CUDA, else chunked)."""
    loss_chunk_tokens: PositiveInt = 4096
    """Tokens per chunk of the chunked fused loss (memory ~ chunk x vocab x 4 bytes)."""
    activation_checkpointing: bool = False
    """Recompute each layer's activations in backward (less memory, ~1/3 more compute): room for a larger
    micro-batch."""
    loader_workers: NonNegativeInt | None = None
    """DataLoader worker processes; None: 2 on GPU, 0 on CPU (the batches are memory-mapped slices)."""
    prefetch_factor: PositiveInt = 4
    """Batches each worker keeps ready (with loader_workers > 0)."""


@configclass("checkpoint")
class CheckpointConfig:
    every: NonNegativeInt = 1000
    """Optimizer steps between checkpoints (and one at the end); 0: no checkpoints."""
    keep_last: NonNegativeInt = 3
    """Complete checkpoints kept; 0 keeps all."""


@configclass("logging")
class LoggingConfig:
    sink_score_every: NonNegativeInt = 100
    """Steps between sink-score probes; 0 disables."""
    sink_score_samples: PositiveInt = 4
    """Validation sequences in the fixed sink-score probe batch."""
    peak_tflops: PositiveFloat | None = None
    """Per-device peak TFLOP/s for MFU; None: looked up from the device name."""


@configclass()
class TrainConfig:
    """A training run: model, data, optimizer, schedule, trainer, checkpoints, logging. See docs/train.md."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model preset and sink variant."""
    data: DataConfig = field(default_factory=DataConfig)
    """The prepared data."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Warmup + cosine learning-rate schedule."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Strategy, precision, batch geometry, loop lengths."""
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    """Speed levers: compile, fused loss, activation checkpointing, data loading."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint frequency and retention."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Sink-score probe and MFU."""
    run_dir: str = "runs/train"
    """Run directory: config.yaml, run.json, checkpoints/, tb/, metrics.jsonl, tokenizer/."""
    seed: Seed = 1234
    """Model init and torch RNG seed."""
    resume: str = "auto"
    """auto (newest complete checkpoint, if any) | never | a checkpoint path."""
    name: str = ""
    """Free-form recipe name, recorded in the run dir and the export."""

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        t = self.trainer
        if t.strategy not in STRATEGIES:
            raise ValueError(f"trainer.strategy {t.strategy!r} is unknown; choose one of {', '.join(STRATEGIES)}")
        if t.precision not in PRECISIONS:
            raise ValueError(f"trainer.precision {t.precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
        if t.accelerator not in ACCELERATORS:
            raise ValueError(
                f"trainer.accelerator {t.accelerator!r} is unknown; choose one of {', '.join(ACCELERATORS)}")
        for key in ("devices", "num_nodes"):  # `PositiveInt | str` lets any word through; resolve_topology needs these
            value = getattr(t, key)
            if isinstance(value, str) and value != "auto":
                raise ValueError(f"trainer.{key} {value!r} is neither a positive integer nor auto; e.g. "
                                 f"--set trainer.{key}=2")
        if self.speed.fused_loss not in FUSED_LOSSES:
            raise ValueError(
                f"speed.fused_loss {self.speed.fused_loss!r} is unknown; choose one of {', '.join(FUSED_LOSSES)}")
        if self.optim.impl not in OPTIMIZER_IMPLS:
            raise ValueError(f"optim.impl {self.optim.impl!r} is unknown; choose one of {', '.join(OPTIMIZER_IMPLS)}")
        if t.global_batch_size % t.micro_batch_size:
            raise ValueError(
                f"trainer.micro_batch_size {t.micro_batch_size} does not divide trainer.global_batch_size "
                f"{t.global_batch_size}; choose sizes where it does"
            )
        o = self.optim
        if len(o.betas) != 2:
            raise ValueError(f"optim.betas {o.betas} must hold two values (AdamW's beta1, beta2); e.g. [0.9, 0.95]")
        if o.min_lr > o.lr:
            raise ValueError(f"optim.min_lr {o.min_lr} is above optim.lr {o.lr}, so the cosine would raise the rate; "
                             f"set min_lr to at most lr (Pythia: lr / 10)")
        # Equal lengths stay allowed: the tiny recipes' warmup of 2 steps is also the length of 2-step smoke runs.
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                f"the warmup ({self.warmup_steps} steps) is longer than the schedule ({self.total_steps} steps: "
                f"schedule.total_steps, default trainer.max_steps), so the rate never reaches optim.lr; lower "
                f"schedule.warmup_steps or raise trainer.max_steps")
        sink_ids, first_free = self.model.sink_token_ids, self.model.tokenizer_vocab_size
        # Export registers the sink tokens in the tokenizer, which gives added tokens the next free ids in order.
        # Any other ids would need a remapped vocabulary there, so they are refused here, before training on them.
        if sink_ids != list(range(first_free, first_free + len(sink_ids))):
            raise ValueError(
                f"model.sink.token_ids {sink_ids} are not the ids right after the tokenizer's "
                f"{first_free} entries ({list(range(first_free, first_free + len(sink_ids)))}), which export needs "
                f"to register them as tokenizer tokens; leave model.sink.token_ids unset")
        if self.model.seq_len - self.model.num_sink_tokens < 2:
            raise ValueError(
                "model sequence length leaves fewer than 2 text tokens per sample; raise model.max_seq_len")
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


def load_train_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
) -> TrainConfig:
    """A recipe file (or the defaults), then `KEY=VALUE` overrides: the same parsing as `sinktrain train`."""
    from sinktrain.cli_config import parse_config

    argv = ["--config", str(path)] if path is not None else []
    for item in overrides or []:
        argv += ["--set", item]
    argv += [f"--run_dir={run_dir}"] if run_dir is not None else []
    argv += [f"--resume={resume}"] if resume is not None else []
    return parse_config(TrainConfig, argv, prog="sinktrain train")


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


def on_gpu(cfg: TrainConfig) -> bool:
    """Whether the run trains on CUDA: accelerator gpu (or cuda), or auto on a machine that has a CUDA GPU."""
    if cfg.trainer.accelerator in ("gpu", "cuda"):
        return True
    if cfg.trainer.accelerator != "auto":
        return False
    import torch  # only `auto` asks the machine

    return torch.cuda.is_available()


def check_batch_geometry(cfg: TrainConfig, world_size: int) -> int:
    """Gradient-accumulation steps: global_batch / (micro_batch × world). Raises when that is not a whole number."""
    g, m = cfg.trainer.global_batch_size, cfg.trainer.micro_batch_size
    if g % (m * world_size):
        raise ValueError(
            f"world size {world_size} × micro_batch_size {m} does not divide global_batch_size {g}; "
            f"change the number of processes or the batch sizes so that it does"
        )
    return g // (m * world_size)
