"""Train's checks before it trains: the config, the topology, the run dir and the data against the model.

Apart from run.py because they need neither Lightning nor DeepSpeed (importing them takes ~6 s on 2 CPU cores):
`sinktrain train` refuses a bad run dir or batch geometry before they load, and a study checks every variant, and
finds every stage done on a rerun, without them.
"""

from __future__ import annotations

from pathlib import Path

from sinktrain.train.config import TrainConfig, check_batch_geometry, on_gpu, resolve_topology
from sinktrain.train.run_dir import check_run_dir_apart, check_run_dir_is_ours
from sinktrain.util.rank import is_global_rank_zero


def preflight(cfg: TrainConfig) -> tuple[int, int, int]:
    """The checks that need neither the data nor a checkpoint: (devices, nodes, grad accumulation).
    The experiment runs them for every variant before its first stage."""
    cfg.validate()
    devices, nodes = resolve_topology(cfg)
    accum = check_batch_geometry(cfg, devices * nodes)
    if not cfg.data.dir:
        raise ValueError("data.dir is not set; point it at a directory written by `sinktrain data prepare`")
    if on_gpu(cfg):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"trainer.accelerator is {cfg.trainer.accelerator} but this machine has no CUDA GPU "
                             f"(torch.cuda.is_available() is False); use accelerator cpu or auto")
    # Levers that exist only as CUDA kernels: say so now, before the run dir is written (not at the first step).
    for key, value, cuda_only in (("optim.impl", cfg.optim.impl, "fused_adam"),
                                  ("speed.fused_loss", cfg.speed.fused_loss, "liger")):
        if value == cuda_only and not on_gpu(cfg):
            raise ValueError(f"{key} {value} runs on CUDA only and this run trains on the CPU; use {key} auto")
    # One process judges the folder. Another rank would race global rank 0, which creates it and writes run.json
    # atomically (through run.tmp.json): a listing taken mid-write holds neither an empty folder nor a run.json,
    # and a sound run dir was refused (seen once in CI). Rank 0's refusal ends the whole torchrun job.
    if is_global_rank_zero():
        check_run_dir_apart(Path(cfg.run_dir), Path(cfg.data.dir))
        check_run_dir_is_ours(Path(cfg.run_dir))
    return devices, nodes, accum


def open_token_datasets(cfg: TrainConfig):
    """(train, val) TokenDatasets checked against the model's tokenizer vocabulary (and hash, when known)."""
    from sinktrain.data import TokenDataset

    train = TokenDataset(cfg.data.dir, split="train", sample_len=cfg.sample_len, seed=cfg.data.seed)
    sha = None
    if cfg.data.tokenizer:
        from sinktrain.data import load_tokenizer, tokenizer_hash

        sha = tokenizer_hash(load_tokenizer(cfg.data.tokenizer))
    train.check_compatible(cfg.model.tokenizer_vocab_size, sha)
    val = TokenDataset(cfg.data.dir, split="val", sample_len=cfg.sample_len, seed=cfg.data.seed)
    return train, val
