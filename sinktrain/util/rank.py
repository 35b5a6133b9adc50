"""The one rank-zero utility. Before and outside a Trainer the launcher's environment says which process
this is: torchrun sets RANK, Lightning's own launcher LOCAL_RANK / NODE_RANK, srun SLURM_PROCID. Global rank 0
is the process for which every one of them that is set is 0."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

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


def stop_with_launcher() -> None:
    """Under torchrun, have the kernel send this worker SIGTERM when its launcher dies. torchrun starts its workers
    in sessions of their own and forwards its own SIGTERM to them, but a launcher killed outright (SIGKILL, the OOM
    killer) left them training as orphans, holding the run's lock and writing checkpoints nobody waited for. The
    SIGTERM stops a training as a scheduler's does: at the end of a step, saved."""
    if sys.platform != "linux" or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    launcher = os.getppid()
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
        return  # (a kernel without it: the orphans stay, as before)
    if os.getppid() != launcher:  # the launcher died before the call took effect
        os.kill(os.getpid(), signal.SIGTERM)
