"""CheckpointSaver: writes `<run_dir>/checkpoints/step-XXXXXXXX/` atomically (SinkLM calls it at step ends).

Layout and guarantees: see checkpoint.py. Sequence per save: rank 0 makes `step-X.tmp/`; every rank writes
its part (Lightning's file on rank 0, or DeepSpeed's model + per-rank optimizer shards); barrier; rank 0 adds
meta.json and COMPLETE, renames to `step-X/`, prunes to keep_last; barrier.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import lightning.pytorch as pl

from sinktrain.util.atomic import write_json_atomic
from sinktrain.train.checkpoint import CHECKPOINT_DIR, COMPLETE, LIGHTNING_FILE, META, checkpoint_name, list_checkpoints


def _fault(point: str, step: int) -> None:
    """Fault injection for the crash tests: SINKTRAIN_FAULT=kill-during-save:<step> (or kill-after-save)
    SIGKILLs global rank 0 at that point, exactly like `kill -9` would."""
    if os.environ.get("SINKTRAIN_FAULT") == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


class CheckpointSaver:
    """Saves every `every` optimizer steps and at the end (every=0: never); keeps the newest `keep_last` (0: all)."""

    def __init__(self, run_dir: Path, every: int, keep_last: int, meta: dict, tokens_per_step: int):
        self.root = Path(run_dir) / CHECKPOINT_DIR
        self.every, self.keep_last = every, keep_last
        self.meta, self.tokens_per_step = meta, tokens_per_step
        self.saved_step: int | None = None  # set on resume too: that step's checkpoint exists already

    def due(self, step: int, max_steps: int) -> bool:
        return bool(self.every) and (step % self.every == 0 or step >= max_steps)

    def save(self, trainer: pl.Trainer, step: int) -> None:
        final = self.root / checkpoint_name(step)
        tmp = final.with_name(final.name + ".tmp")
        deepspeed = self.meta["kind"] == "deepspeed"
        if trainer.is_global_zero:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        trainer.strategy.barrier("sinktrain-ckpt-mkdir")
        # weights_only=False: the full training state (optimizer, loops) for an exact resume. Said explicitly, since
        # Lightning otherwise logs "`weights_only` was not set, defaulting to `False`", which reads like a load.
        trainer.save_checkpoint(tmp if deepspeed else tmp / LIGHTNING_FILE, weights_only=False)
        trainer.strategy.barrier("sinktrain-ckpt-written")
        if trainer.is_global_zero:
            _fault("kill-during-save", step)
            meta = dict(self.meta, step=step, tokens_seen=step * self.tokens_per_step, world_size=trainer.world_size)
            write_json_atomic(tmp / META, meta)
            with open(tmp / COMPLETE, "w") as f:
                f.write(f"{step}\n")
                f.flush()
                os.fsync(f.fileno())
            if final.exists():  # the same step saved again (e.g. an earlier run's final one): replace it
                final.rename(final.with_name(final.name + ".deleting"))
                shutil.rmtree(final.with_name(final.name + ".deleting"), ignore_errors=True)
            tmp.rename(final)
            self.prune()
            _fault("kill-after-save", step)
        trainer.strategy.barrier("sinktrain-ckpt-done")
        self.saved_step = step

    def prune(self) -> None:
        if not self.keep_last:
            return
        for old in list_checkpoints(self.root.parent)[: -self.keep_last]:
            doomed = old.with_name(old.name + ".deleting")
            old.rename(doomed)  # no longer looks complete before any file is removed
            shutil.rmtree(doomed, ignore_errors=True)
