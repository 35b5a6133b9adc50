"""Batches from the data stage, addressed by optimizer step so that resuming is exact.

The training "dataset" is indexed by global micro-batch number k = step × accum + j. Item k is this
rank's j-th micro-batch slice of `TokenDataset.rank_batch(step, G, rank, world)`, and the sample order
is a pure function of (data seed, step) inside the data stage. The sampler starts at the trainer's restored
`global_step`, so after `--resume` the next batch is exactly the one the uninterrupted run would have seen;
no sampler state has to be checkpointed. Lightning's distributed sampler is off (`use_distributed_sampler=False`):
ranks are split here.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from typing import Callable

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sinktrain.train.checks import open_token_datasets
from sinktrain.train.config import TrainConfig, on_gpu


class StepMicroBatches(Dataset):
    """Item k: the [micro_batch, sample_len] token block of global micro-batch k for one rank."""

    def __init__(self, tokens, global_batch: int, micro_batch: int, rank: int, world: int, accum: int, steps: int):
        self.tokens, self.g, self.mb = tokens, global_batch, micro_batch
        self.rank, self.world, self.accum = rank, world, accum
        self.steps = steps
        # (step, rank block): one gather per step, not per micro-batch
        self._cache: tuple[int, np.ndarray] | None = None

    def rank_block(self, step: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != step:
            self._cache = (step, np.asarray(self.tokens.rank_batch(step, self.g, self.rank, self.world)))
        return self._cache[1]

    def __getitem__(self, k: int) -> torch.Tensor:
        step, j = divmod(int(k), self.accum)
        block = self.rank_block(step)[j * self.mb : (j + 1) * self.mb]
        return torch.from_numpy(block.astype(np.int64))

    def __len__(self) -> int:
        return self.steps * self.accum


class StepSampler(Sampler[int]):
    """Micro-batch numbers from `start_step() × accum` to `total_steps × accum`.

    `len()` is the whole run (Lightning counts batches per epoch from the start of the run and adds the
    ones already done when it resumes), while iteration starts at the restored step.
    """

    def __init__(self, start_step: Callable[[], int], total_steps: int, accum: int):
        self.start_step, self.total_steps, self.accum = start_step, total_steps, accum

    def __iter__(self):
        return iter(range(self.start_step() * self.accum, self.total_steps * self.accum))

    def __len__(self) -> int:
        return self.total_steps * self.accum


class ValMicroBatches(Dataset):
    """Validation: `num_batches` micro-batches per rank of consecutive held-out samples (file order)."""

    def __init__(self, tokens, micro_batch: int, rank: int, world: int, num_batches: int):
        self.tokens, self.mb, self.rank, self.world, self.n = tokens, micro_batch, rank, world, num_batches

    def __getitem__(self, j: int) -> torch.Tensor:
        first = (j * self.world + self.rank) * self.mb
        rows = [np.asarray(self.tokens.sequential((first + b) % len(self.tokens))) for b in range(self.mb)]
        return torch.from_numpy(np.stack(rows).astype(np.int64))

    def __len__(self) -> int:
        return self.n


# Reading who sent a signal needs sigwaitinfo (Linux, most Unixes; not macOS or Windows). Without it the
# loader's workers keep the default SIGTERM.
_CAN_READ_SENDER = hasattr(signal, "sigwaitinfo")


def _sigterm_from_main_only(main_pid: int, worker_id: int) -> None:
    """A loader worker obeys only its trainer's SIGTERM (the one that shuts workers down at exit).
    `timeout`, Slurm and `kill -- -PGID` send SIGTERM to every process of the job: a worker that died of it
    made the trainer raise in the middle of the save the SIGTERM asked for. Ignoring SIGTERM outright is no
    cure either: a worker still alive at interpreter exit is terminated by multiprocessing and then joined,
    which would wait for ever. So the signal is taken by a thread that reads who sent it."""
    if not _CAN_READ_SENDER:
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started later inherit the mask

    def wait() -> None:
        while signal.sigwaitinfo({signal.SIGTERM}).si_pid not in (main_pid, os.getppid()):
            pass  # someone else's: the trainer answers it and shuts this worker down when it exits
        os._exit(0)

    threading.Thread(target=wait, name="sigterm-from-main", daemon=True).start()


class _SigtermSafeLoader(DataLoader):
    """Starts its workers with SIGTERM blocked (a forked child inherits the mask), so a SIGTERM that comes
    before a worker has run `_sigterm_from_main_only` waits for it instead of killing the worker. The workers
    are forked (`sigterm_safe_loader`): spawn and forkserver children start with nothing blocked."""

    def __iter__(self):
        if not self.num_workers or not _CAN_READ_SENDER:
            return super().__iter__()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            return super().__iter__()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a SIGTERM that came meanwhile is delivered now


def sigterm_safe_loader(dataset, **kwargs) -> DataLoader:
    """A DataLoader whose workers outlive a SIGTERM sent to the whole process group and still exit with their
    trainer (see `_sigterm_from_main_only`)."""
    if kwargs.get("num_workers"):
        kwargs["worker_init_fn"] = functools.partial(_sigterm_from_main_only, os.getpid())
        if _CAN_READ_SENDER:
            # Fork, as Linux did by default through Python 3.13: spawn and forkserver (3.14's default) children
            # neither inherit the blocked SIGTERM nor start quickly (each imports torch first), so a group
            # SIGTERM during their start-up killed them (seen with both on 3.11, by passing the context).
            kwargs.setdefault("multiprocessing_context", "fork")
    return _SigtermSafeLoader(dataset, **kwargs)


class TokenDataModule(pl.LightningDataModule):
    def __init__(self, cfg: TrainConfig, accum: int, train_tokens=None, val_tokens=None):
        super().__init__()
        self.cfg, self.accum = cfg, accum
        self.train_tokens, self.val_tokens = train_tokens, val_tokens

    def setup(self, stage: str) -> None:
        if self.train_tokens is None:
            self.train_tokens, self.val_tokens = open_token_datasets(self.cfg)

    def _rank_world(self) -> tuple[int, int]:
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        t = self.cfg.trainer
        ds = StepMicroBatches(
            self.train_tokens, t.global_batch_size, t.micro_batch_size, rank, world, self.accum, t.max_steps
        )
        # Read when iteration starts: by then Lightning has restored global_step from the checkpoint.
        sampler = StepSampler(lambda: self.trainer.global_step, t.max_steps, self.accum)
        # Workers read and pin the next micro-batches while the GPU computes; the order stays the sampler's.
        gpu = on_gpu(self.cfg)
        workers = self.cfg.speed.loader_workers
        workers = (2 if gpu else 0) if workers is None else workers
        extra = dict(prefetch_factor=self.cfg.speed.prefetch_factor, persistent_workers=True) if workers else {}
        return sigterm_safe_loader(ds, sampler=sampler, batch_size=None, num_workers=workers, pin_memory=gpu,
                                   **extra)

    def val_batches(self) -> list[torch.Tensor]:
        """This rank's fixed validation micro-batches (the same every time; measured where a step ends)."""
        if getattr(self, "_val_cache", None) is None:
            rank, world = self._rank_world()
            t = self.cfg.trainer
            ds = ValMicroBatches(self.val_tokens, t.micro_batch_size, rank, world, t.val_batches)
            self._val_cache = [ds[j] for j in range(len(ds))]
        return self._val_cache

    def probe_batch(self) -> torch.Tensor:
        """The fixed batch the sink score is measured on: the first validation samples."""
        n = self.cfg.logging.sink_score_samples
        rows = [np.asarray(self.val_tokens.sequential(i % len(self.val_tokens))) for i in range(n)]
        return torch.from_numpy(np.stack(rows).astype(np.int64))
