"""The one rank-zero utility. Before and outside a Trainer the launcher's environment says which process
this is: torchrun sets RANK, Lightning's own launcher LOCAL_RANK / NODE_RANK, srun SLURM_PROCID. Global rank 0
is the process for which every one of them that is set is 0."""

from __future__ import annotations

import os

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def is_global_rank_zero() -> bool:
    return all(int(os.environ.get(v, 0)) == 0 for v in RANK_VARIABLES)


def launched_world_size() -> int:
    """How many processes the launcher started (torchrun's WORLD_SIZE, srun's SLURM_NTASKS); 1 outside one."""
    return int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1)


def rank_zero_print(*args, **kwargs) -> None:
    """print() on global rank 0 only: one line per event, not one per process."""
    if is_global_rank_zero():
        print(*args, **kwargs, flush=True)
