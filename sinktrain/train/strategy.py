"""Lightning strategy + precision plugin for each `trainer.strategy`, including DeepSpeed on CPU.

Lightning's stock DeepSpeedStrategy refuses anything but CUDA. DeepSpeed itself runs ZeRO-1/2 on CPU with
gloo, so `DeepSpeedAnyDeviceStrategy` lifts the three CUDA-only assumptions (the accelerator check, the
device-index validation, `device_rank=None` given to `deepspeed.initialize`) and leaves CUDA untouched.
That is what lets the CPU tests run the real DeepSpeed engine rather than a mock.
"""

from __future__ import annotations

import argparse
import functools

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities import GradClipAlgorithmType

from sinktrain.train.checkpoint import DEEPSPEED_TAG
from sinktrain.train.config import TrainConfig, on_gpu


def _skip_deepspeed_shm_build() -> None:
    """DeepSpeed's CPU backend JIT-compiles a shared-memory allreduce op (a g++ compile) on first init.
    It only serves tensor-parallel inference; without it DeepSpeed uses plain torch.distributed (gloo)."""
    import importlib

    # Not `import deepspeed.comm.torch as m`: deepspeed.comm re-exports torch itself under that name.
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


class DeepSpeedAnyDeviceStrategy(DeepSpeedStrategy):
    """DeepSpeedStrategy that also runs on CPU (gloo). Identical to the parent on CUDA."""

    def _on_cpu(self) -> bool:
        return not isinstance(self.accelerator, CUDAAccelerator)

    def setup_environment(self) -> None:
        if not self._on_cpu():
            return super().setup_environment()
        _skip_deepspeed_shm_build()
        DDPStrategy.setup_environment(self)  # skips the parent's "only supported on CUDA GPUs"

    def setup_distributed(self) -> None:
        if not self._on_cpu():
            return super().setup_distributed()
        # Parent minus _validate_device_index_selection (CPU devices have no index).
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def _device_rank(self):
        # deepspeed.initialize compares device_rank >= 0; CPU devices have index None. -1 means "don't pick a GPU".
        return -1 if self._on_cpu() else self.root_device.index

    def _setup_model_and_optimizer(self, model, optimizer, lr_scheduler=None):
        import deepspeed

        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self._device_rank()),
            config=self.config,
            model=model,
            model_parameters=filter(lambda p: p.requires_grad, model.parameters()),
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer

    def _initialize_deepspeed_inference(self, model) -> None:
        if not self._on_cpu():
            return super()._initialize_deepspeed_inference(model)
        import deepspeed

        cfg = {"train_micro_batch_size_per_gpu": 1}
        for key in ("fp16", "bf16"):
            if key in self.config:
                cfg[key] = self.config[key]
        self.model, _, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=-1), config=cfg, model=model, optimizer=None,
            lr_scheduler=None, model_parameters=[], dist_init_required=False,
        )

    def load_checkpoint(self, checkpoint_path, weights_only=None):
        # Without a tag DeepSpeed reads one from <ckpt>/latest, a file that can name any folder, and unpickles
        # what it finds there. sinktrain saves under DEEPSPEED_TAG only (verify_checkpoint refuses another
        # `latest`); naming the tag here keeps a `latest` changed after that check from mattering.
        engine = self.deepspeed_engine
        engine.load_checkpoint = functools.partial(type(engine).load_checkpoint, engine, tag=DEEPSPEED_TAG)
        try:
            return super().load_checkpoint(checkpoint_path, weights_only)
        finally:
            del engine.load_checkpoint  # the instance attribute; the class's method shows again

    def backward(self, closure_loss, optimizer, *args, **kwargs):
        # Lightning already divides the loss by accumulate_grad_batches; DeepSpeed's engine.backward would
        # divide it again by gradient_accumulation_steps (gradients 1/GAS too small, clipping at the wrong
        # norm). Tell DeepSpeed not to.
        kwargs.setdefault("scale_wrt_gas", False)
        return super().backward(closure_loss, optimizer, *args, **kwargs)


def resolved_precision(cfg: TrainConfig) -> str:
    """trainer.precision with `auto` decided: bf16-mixed on bf16 GPUs (Ampere on), 16-mixed on older GPUs,
    32-true on CPU."""
    p = cfg.trainer.precision
    if p != "auto":
        return p
    if not on_gpu(cfg):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def deepspeed_bucket_elements(cfg: TrainConfig) -> int:
    """ZeRO reduce / all-gather bucket: a quarter of the model (at least 1M elements, at most DeepSpeed's
    5e8 default), so gradients of the last layers are reduced while backward still runs through the first.
    DeepSpeed's 5e8 default is larger than a whole Pythia-160M (162M parameters): one bucket, no overlap."""
    from sinktrain.train.flops import total_params

    return int(min(5e8, max(2**20, total_params(cfg.model) // 4)))


def deepspeed_config(cfg: TrainConfig) -> dict:
    """The DeepSpeed config of a run. Gradients are accumulated in fp32 whenever the model computes in
    bf16/fp16: summing 32 micro-batches (G = 256 on one GPU) in bf16 loses the low bits of every addend.
    ZeRO-1 with bf16 then runs DeepSpeed's BF16_Optimizer; ZeRO-2, and ZeRO-1 with fp16, accumulate into the ZeRO
    optimizer's fp32 buffers."""
    t, o = cfg.trainer, cfg.optim
    bucket = deepspeed_bucket_elements(cfg)
    config = {
        "zero_optimization": {
            "stage": t.zero_stage,
            "overlap_comm": on_gpu(cfg),
            "contiguous_gradients": True,
            "reduce_bucket_size": bucket,
            "allgather_bucket_size": bucket,
        },
        # The optimizer comes from LightningModule.configure_optimizers (torch AdamW or FusedAdam).
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": o.grad_clip,
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "steps_per_print": 10**12,  # Lightning logs; keep DeepSpeed quiet
        "wall_clock_breakdown": False,
    }
    if resolved_precision(cfg) != "32-true":
        config["data_types"] = {"grad_accum_dtype": "fp32"}
    return config


def build_strategy(cfg: TrainConfig):
    """The Lightning strategy object for cfg.trainer.strategy (gloo on CPU, nccl on GPU)."""
    t = cfg.trainer
    backend = "nccl" if on_gpu(cfg) else "gloo"
    if t.strategy == "single":
        device = torch.device("cuda", 0) if on_gpu(cfg) else torch.device("cpu")
        return SingleDeviceStrategy(device=device)
    if t.strategy == "ddp":
        # Every parameter gets a gradient every step, so no unused-parameter search.
        return DDPStrategy(process_group_backend=backend, find_unused_parameters=False)
    return DeepSpeedAnyDeviceStrategy(
        config=deepspeed_config(cfg),
        process_group_backend=backend,
        # fp16: dynamic loss scale starting at 2^initial_loss_scale_power (Pythia: 2^12).
        loss_scale=0,
        initial_scale_power=t.initial_loss_scale_power,
        loss_scale_window=1000,
        hysteresis=2,
        min_loss_scale=1,
    )


class BF16MixedPrecision(MixedPrecision):
    """Lightning's bf16-mixed, minus one refusal: Lightning will not clip gradients for an optimizer that
    "unscales internally" (torch AdamW(fused=True) on CUDA), which is right for fp16's loss scale. bf16 has no
    loss scale, so there is nothing to unscale and clipping the plain gradients is exact."""

    def clip_gradients(self, optimizer, clip_val=0.0, gradient_clip_algorithm=GradClipAlgorithmType.NORM) -> None:
        if self.scaler is None:
            return Precision.clip_gradients(self, optimizer, clip_val, gradient_clip_algorithm)
        return super().clip_gradients(optimizer, clip_val, gradient_clip_algorithm)


def uses_grad_scaler(cfg: TrainConfig) -> bool:
    """fp16 outside DeepSpeed (which scales the loss itself): Lightning's plugin with a torch GradScaler."""
    return cfg.trainer.strategy != "deepspeed" and resolved_precision(cfg) == "16-mixed"


def build_plugins(cfg: TrainConfig) -> list:
    """The precision plugin outside DeepSpeed (which has its own): fp16 with a torch GradScaler at Pythia's
    initial scale (Lightning's default is 2^16); bf16-mixed that clips gradients of fused optimizers."""
    device = "cuda" if on_gpu(cfg) else "cpu"
    if uses_grad_scaler(cfg):
        scaler = torch.amp.GradScaler(device, init_scale=2.0 ** cfg.trainer.initial_loss_scale_power)
        return [MixedPrecision("16-mixed", device, scaler=scaler)]
    if cfg.trainer.strategy != "deepspeed" and resolved_precision(cfg) == "bf16-mixed":
        return [BF16MixedPrecision("bf16-mixed", device)]
    return []
