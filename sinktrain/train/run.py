"""`train(cfg)`: check everything, prepare the run directory, build the Trainer, fit.

The same function runs in-process (single device) and in every rank under torchrun; Lightning reads world
size and ranks from the torchrun environment. All input checks happen before anything is written, so a bad
config, data directory or resume target leaves the run directory as it was. Global rank 0 then holds the run
dir's lock (run_dir.py) for the whole run.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch

from sinktrain.config_io import dotted_value
from sinktrain.data import TOKENIZER_DIR, data_tokenizer, dataset_identity_sha256, manifest_sha256
from sinktrain.train import checkpoint as ckpt
from sinktrain.train.checkpoint_saver import CheckpointSaver
from sinktrain.train.checks import open_token_datasets, preflight
from sinktrain.train.config import TrainConfig, on_gpu
from sinktrain.train.datamodule import TokenDataModule
from sinktrain.train.flops import device_peak_tflops, flops_per_token
from sinktrain.train.metrics import MetricsLog, truncate_metrics
from sinktrain.train.module import RunHooks, SinkLM
from sinktrain.train.run_dir import (CONFIG_FILE, RUN_FORMAT, RUN_INFO_FILE, announce_fresh_start, read_run_info,
                                     run_dir_lock, trained_manifest_sha256)
from sinktrain.train.strategy import build_plugins, build_strategy, resolved_precision
from sinktrain.util.atomic import write_json_atomic, write_yaml_atomic
from sinktrain.util.errors import UserError
from sinktrain.util.outputs import folder_lock
from sinktrain.util.rank import is_global_rank_zero


class LossNotFinite(UserError, RuntimeError):
    """Training diverged; the message names the last good checkpoint and what to change."""


class StoppedBySigterm(UserError, RuntimeError):
    """Training stopped early on a SIGTERM, with a checkpoint of the step it stopped at; exits 143 (128 + 15)."""

    exit_code = 143


def save_run_tokenizer(data_dir: Path, run_dir: Path) -> None:
    """The run keeps the tokenizer it trained with (the data's own copy), for export and every later stage."""
    tmp = run_dir / (TOKENIZER_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    data_tokenizer(data_dir).save_pretrained(tmp)
    shutil.rmtree(run_dir / TOKENIZER_DIR, ignore_errors=True)
    tmp.rename(run_dir / TOKENIZER_DIR)


def _checkpoint_kind(cfg: TrainConfig) -> str:
    return "deepspeed" if cfg.trainer.strategy == "deepspeed" else "lightning"


def resolve_resume(cfg: TrainConfig, run_dir: Path, world_size: int, report: bool = True) -> Path | None:
    """The checkpoint to resume from (None: fresh start), after checking it fits this config.
    `report`: say (on rank 0) which checkpoints were skipped (`_start` says which schedule values changed)."""
    report = report and is_global_rank_zero()
    if cfg.resume == "never":
        existing = ckpt.latest_checkpoint(run_dir)
        if existing is not None:
            raise FileExistsError(
                f"run dir {str(run_dir)!r} already holds checkpoints (newest {existing.name}); "
                f"pass --resume auto to continue it or choose another --run-dir"
            )
        return None
    if cfg.resume == "auto":
        target = newest_readable_checkpoint(run_dir, report)
        if target is None:
            return None
    else:
        target = Path(cfg.resume)
        if not target.exists():
            raise FileNotFoundError(
                f"resume checkpoint {cfg.resume!r} does not exist; pass auto, never or a step-XXXXXXXX directory")
    # ValueError for half-written, foreign, damaged or unsafe (code-carrying) checkpoints; strict: a tensor the model
    # does not have fails loading too. Before anything is written: Lightning and DeepSpeed met a damaged one deep in
    # their loaders, or (a cut ZeRO fp32 partition) resumed from it padded with zeros.
    try:
        meta = ckpt.verify_checkpoint(target, strict=True)
    except ckpt.UnreadableCheckpointError as e:  # (--resume auto passed over the damaged ones already)
        raise ckpt.UnreadableCheckpointError(f"{e}; restore it from a copy, or resume from another checkpoint "
                                             f"(--resume auto takes the newest intact one)") from None
    saved_model, this_model = meta["config"]["model"], cfg.model.to_dict()
    if saved_model != this_model:
        diff = "; ".join(
            f"model.{k} is {saved_model.get(k)!r} there, {this_model.get(k)!r} here"
            for k in sorted(set(saved_model) | set(this_model)) if saved_model.get(k) != this_model.get(k)
        )
        raise ValueError(
            f"checkpoint {target.name} was trained with a different model config ({diff}); "
            f"resume with the same model section or use a new --run-dir"
        )
    # The sample order is a pure function of (data seed, step, global batch): resuming with another global
    # batch or seed would silently replay or skip samples (docs/data.md), so it is refused.
    saved_order = (meta["config"]["trainer"]["global_batch_size"], meta["config"]["data"]["seed"])
    if saved_order != (cfg.trainer.global_batch_size, cfg.data.seed):
        raise ValueError(
            f"checkpoint {target.name} was trained with global_batch_size {saved_order[0]} and data.seed "
            f"{saved_order[1]}, this run has {cfg.trainer.global_batch_size} and {cfg.data.seed}; the data order "
            f"would not continue. Resume with the same values or start a new --run-dir"
        )
    # The optimizer state restored from the checkpoint carries its own betas, eps and weight decay (torch's
    # load_state_dict restores each param group's hyperparameters), and the weights replaced what the seed drew:
    # new values would be recorded in config.yaml but never used.
    kept = config_changes(meta["config"], cfg, KEPT_ON_RESUME)
    if kept:
        raise ValueError(
            f"checkpoint {target.name} was trained with {', '.join(f'{k} {old!r}' for k, old, _ in kept)}, which "
            f"resuming keeps (the optimizer state and weights carry them); this run would record "
            f"{', '.join(f'{k} {new!r}' for k, _, new in kept)} but not use it. Resume with the checkpoint's values "
            f"or start a new --run-dir"
        )
    if meta["step"] > cfg.trainer.max_steps:
        raise ValueError(
            f"checkpoint {target.name} is at step {meta['step']}, past trainer.max_steps {cfg.trainer.max_steps}; "
            f"set trainer.max_steps to {meta['step']} or more, or start a new --run-dir"
        )
    check_same_data(target, meta, cfg)
    if cfg.resume != "auto":  # auto took the newest intact one; later ones are damaged, and saving replaces them
        check_no_newer_checkpoints(run_dir, target, meta["step"])
    # Only the kind of checkpoint has to match: a Lightning checkpoint holds the whole unsharded state, so single
    # and ddp (any world size) continue each other exactly; DeepSpeed's holds one optimizer shard per rank.
    if meta["kind"] != _checkpoint_kind(cfg):
        raise ValueError(
            f"checkpoint {target.name} was written by a {meta['config']['trainer']['strategy']} run and cannot be "
            f"resumed with trainer.strategy {cfg.trainer.strategy}; use the same strategy"
        )
    if meta["kind"] == "deepspeed" and meta.get("world_size") != world_size:
        raise ValueError(
            f"DeepSpeed checkpoint {target.name} holds optimizer shards for {meta.get('world_size')} ranks but this "
            f"run has {world_size}; resume with the same number of processes"
        )
    return target


class _NoAdvert(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger" line, an advertisement printed at every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


_NO_ADVERT = _NoAdvert()


def quiet_lightning_adverts() -> None:
    # rank_zero_info logs through whichever of these two loggers Lightning's rank_zero module was handed last.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_NO_ADVERT)  # a filter already there is not added twice


def check_same_data(target: Path, meta: dict, cfg: TrainConfig) -> None:
    """A resume continues the sample order of the checkpoint's data: other data (another tokenizer's even) would
    silently mix two datasets in one run, and the run would record only the new one."""
    trained = trained_manifest_sha256(target, meta)
    data_dir = Path(cfg.data.dir)
    now = manifest_sha256(data_dir)
    # The same data prepared again (other workers, `./` before a source path) writes the same shards under
    # another manifest: the content identity, which checkpoints record since it existed, says so.
    recorded = meta.get("data_identity_sha256")
    if trained is not None and trained != now and not (recorded and recorded == dataset_identity_sha256(data_dir)):
        raise ValueError(
            f"checkpoint {target.name} was trained on data.dir {meta['config']['data']['dir']!r} (manifest sha256 "
            f"{trained[:12]}), but data.dir {str(data_dir)!r} has manifest sha256 {now[:12]}; resume with the same "
            f"data.dir or start a new --run-dir"
        )


def newest_readable_checkpoint(run_dir: Path, report: bool = True) -> Path | None:
    """The newest complete checkpoint whose files all load; damaged newer ones are named and skipped."""
    found = ckpt.list_checkpoints(run_dir)
    newest_problem = None
    for i, candidate in enumerate(reversed(found)):
        try:
            ckpt.verify_checkpoint(candidate, strict=True)  # an UnsafeCheckpointError is not skipped: it stops the run
        except ckpt.UnreadableCheckpointError as e:
            newest_problem = newest_problem or f"{candidate.name}: {e}"
            if report:
                print(f"train: skipping {candidate.name}: {e}", file=sys.stderr, flush=True)
            continue
        if i and report:
            print(f"train: resuming from {candidate.name}, the newest complete checkpoint", file=sys.stderr, flush=True)
        return candidate
    if found:
        # The line names the newest one's problem itself: with report off (a study's preflight) nothing is above it.
        raise ValueError(f"none of the {len(found)} checkpoints in {str(run_dir)!r} can be read (the newest, "
                         f"{newest_problem}); resume from a copy of an intact one or start a new --run-dir")
    return None


# The schedule's inputs, and gradient clipping (applied at every step): a resumed run honours new values of these
# (SinkLM.on_train_start) and says so.
SCHEDULE_KEYS = ("optim.lr", "optim.min_lr", "trainer.max_steps", "schedule.warmup_fraction", "schedule.warmup_steps",
                 "schedule.total_steps", "optim.grad_clip")
# What a resume takes from the checkpoint whatever the config says (resolve_resume refuses a change).
KEPT_ON_RESUME = ("optim.betas", "optim.eps", "optim.weight_decay", "seed")


def config_changes(saved: dict, cfg: TrainConfig, keys: tuple[str, ...]) -> list[tuple[str, object, object]]:
    """(key, the checkpoint's value, this config's) for each of the dotted `keys` whose value differs."""
    now = cfg.to_dict()
    return [(k, dotted_value(saved, k), dotted_value(now, k)) for k in keys
            if dotted_value(saved, k) != dotted_value(now, k)]


def schedule_changes(saved: dict, cfg: TrainConfig) -> list[str]:
    return [f"{k} {old!r} -> {new!r}" for k, old, new in config_changes(saved, cfg, SCHEDULE_KEYS)]


def check_no_newer_checkpoints(run_dir: Path, target: Path, step: int) -> None:
    """Refuse to go back to an older checkpoint while the run dir still holds later ones: the two histories would
    mix. Pruning ranks by step, so it deleted the new run's checkpoints as they were saved and kept the abandoned
    ones, which --resume auto and export then took as the newest."""
    later = [p.name for p in ckpt.list_checkpoints(run_dir) if ckpt.checkpoint_step(p) > step]
    if later:
        where = run_dir / ckpt.CHECKPOINT_DIR
        raise FileExistsError(
            f"run dir {str(run_dir)!r} holds checkpoints past {target.name} ({', '.join(later)}), from the run it "
            f"would go back on; continue the newest with --resume auto, or to go back to step {step} move "
            f"{'them' if len(later) > 1 else 'it'} out of {str(where)!r} first (or resume into a new --run-dir)")


def train(cfg: TrainConfig, rerun: str = "--resume auto") -> Path:
    """Pretrain (or resume) the model `cfg` describes; returns the run directory. `rerun`: how the early-stop
    lines tell the user to go on (a study says: run it again)."""
    devices, nodes, accum = preflight(cfg)
    data_dir = Path(cfg.data.dir)
    # Shared, for the whole run: `data prepare` cannot replace the shards under it (data loader workers and each
    # validation open them again by name), and the run does not start on half-written ones. Rank 0 alone holds it
    # (the ranks end together): in a study under torchrun it prepares the data the other ranks then wait for, and
    # their lock could meet its exclusive one in the moment between its manifest and its release.
    if not is_global_rank_zero():
        return _train(cfg, devices, nodes, accum, data_dir, rerun)
    with folder_lock(data_dir, exclusive=False, refusal=(
            f"data.dir {str(data_dir)!r} is being prepared by another sinktrain process; wait for it to end, "
            f"then train")):
        return _train(cfg, devices, nodes, accum, data_dir, rerun)


def _train(cfg: TrainConfig, devices: int, nodes: int, accum: int, data_dir: Path, rerun: str) -> Path:
    world = devices * nodes
    if not (data_dir / "manifest.json").is_file():
        raise FileNotFoundError(
            f"no manifest.json in data dir {str(data_dir)!r}; run `sinktrain data prepare --out_dir {data_dir}` first"
        )
    train_tokens, val_tokens = open_token_datasets(cfg)  # raises on a tokenizer / vocabulary mismatch
    run_dir = Path(cfg.run_dir)
    resolve_resume(cfg, run_dir, world, report=False)  # every check before the lock creates the run dir
    if not is_global_rank_zero():
        return _start(cfg, devices, nodes, world, accum, train_tokens, val_tokens, run_dir, rerun)
    with run_dir_lock(run_dir):
        return _start(cfg, devices, nodes, world, accum, train_tokens, val_tokens, run_dir, rerun)


def _start(cfg: TrainConfig, devices: int, nodes: int, world: int, accum: int, train_tokens, val_tokens,
           run_dir: Path, rerun: str) -> Path:
    """Write the run dir and fit; on rank 0 under the run dir's lock."""
    data_dir = Path(cfg.data.dir)
    resume_from = resolve_resume(cfg, run_dir, world)  # again, now that no other training can change the run dir
    meta = ckpt.read_meta(resume_from) if resume_from else None
    start_step = meta["step"] if meta else 0
    # Each resume that changed the LR schedule, kept for the run's life: its weights are then not a straight run's
    # (a study's report says so beside its numbers).
    info_file = run_dir / RUN_INFO_FILE
    earlier = read_run_info(info_file) if meta and info_file.is_file() else {}
    changed = [c for c in earlier.get("schedule_changes", []) if c["at_step"] < start_step]
    now = schedule_changes(meta["config"], cfg) if meta else []
    if now:
        changed.append({"at_step": start_step, "changes": now})
        if is_global_rank_zero():
            print(f"train: resuming {resume_from.name} with {'; '.join(now)}: the learning-rate schedule of this "
                  f"config (and its grad_clip) applies from step {start_step} on", file=sys.stderr, flush=True)

    # --- from here on the run directory is written (rank 0 only) -----------------------------------------
    model_tokens_per_step = cfg.trainer.global_batch_size * cfg.model.seq_len  # sinks included
    text_tokens_per_step = cfg.trainer.global_batch_size * cfg.sample_len  # what the data stage delivers
    model_flops_per_token = flops_per_token(cfg.model)
    info = {
        "format": RUN_FORMAT,
        "world_size": world, "devices_per_node": devices, "num_nodes": nodes, "grad_accumulation": accum,
        "seq_len": cfg.model.seq_len, "sample_len": cfg.sample_len, "sink_token_ids": cfg.model.sink_token_ids,
        "warmup_steps": cfg.warmup_steps, "total_steps": cfg.total_steps,
        "flops_per_token": model_flops_per_token, "data_manifest": train_tokens.manifest,
        "data_manifest_sha256": manifest_sha256(data_dir), "tokenizer_dir": TOKENIZER_DIR,
        "resumed_from": str(resume_from) if resume_from else None,
        "schedule_changes": changed,
    }
    if is_global_rank_zero():
        if resume_from is None:
            announce_fresh_start(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_partial_checkpoints(run_dir)
        write_json_atomic(run_dir / RUN_INFO_FILE, info)  # first: it marks the folder as a sinktrain run
        save_run_tokenizer(data_dir, run_dir)
        write_yaml_atomic(run_dir / CONFIG_FILE, cfg.to_dict())
        truncate_metrics(run_dir, start_step)
        if resume_from is None:
            shutil.rmtree(run_dir / "tb", ignore_errors=True)  # a fresh start: no stale curves

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True)
    datamodule = TokenDataModule(cfg, accum, train_tokens, val_tokens)
    quiet_lightning_adverts()
    interrupt = KeepInterrupt()
    trainer = build_trainer(cfg, devices, nodes, accum, callbacks=[interrupt])
    hooks = RunHooks(
        metrics=MetricsLog(run_dir, trainer),
        checkpoints=CheckpointSaver(
            run_dir, cfg.checkpoint.every, cfg.checkpoint.keep_last,
            meta={"format": ckpt.FORMAT, "kind": _checkpoint_kind(cfg), "config": cfg.to_dict(),
                  "data_manifest_sha256": info["data_manifest_sha256"],
                  "data_identity_sha256": dataset_identity_sha256(data_dir)},
            tokens_per_step=text_tokens_per_step,
        ),
        val_batches=datamodule.val_batches, probe_batch=datamodule.probe_batch,
        tokens_per_step=model_tokens_per_step, text_tokens_per_step=text_tokens_per_step,
        flops_per_token=model_flops_per_token,
        peak_tflops=device_peak_tflops(cfg.logging.peak_tflops, resolved_precision(cfg))
        if on_gpu(cfg) or cfg.logging.peak_tflops else None,
    )
    module = SinkLM(cfg, hooks)
    with warnings.catch_warnings():
        # Our loader resumes by step (see datamodule.py), which Lightning cannot see; its warnings are moot.
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # Lightning 2.6's own pytree helper builds torch's deprecated LeafSpec; nothing for a user to change.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
        # weights_only: Lightning checkpoints hold tensors and plain data only (verified in resolve_resume).
        on_sigint = signal.getsignal(signal.SIGINT)
        try:
            trainer.fit(module, datamodule=datamodule, weights_only=True,
                        ckpt_path=str(ckpt.resume_target(resume_from)) if resume_from else None)
        except SystemExit:
            # Lightning answers Ctrl-C with its own shutdown, then sys.exit(1) with SIGINT left ignored
            # (lightning/pytorch/trainer/call.py). Give the interrupt back: `interrupted`, exit 130 (a study's
            # SIGTERM outside the training loop: `terminated`, 143).
            if interrupt.exception is None:
                raise
            if is_global_rank_zero():  # unlike a SIGTERM, Ctrl-C saves nothing: say where a rerun goes on from
                newest = ckpt.latest_checkpoint(run_dir)
                print(f"train: interrupted after step {trainer.global_step}, which is not saved; "
                      + (f"rerunning the same command continues from {newest.name}" if newest else
                         "no checkpoint yet: rerunning the same command starts again")
                      + " (a SIGTERM stops at a checkpoint)", file=sys.stderr, flush=True)
            raise interrupt.exception from None
        finally:
            signal.signal(signal.SIGINT, on_sigint)
    if module.stopped_by_sigterm is not None:
        step = module.stopped_by_sigterm
        raise StoppedBySigterm(f"stopped by SIGTERM after step {step}; {_saved(run_dir, step)}; "
                               f"continue with {rerun}")
    if module.stopped_by_time is not None and is_global_rank_zero():  # a planned stop: exit 0
        step = module.stopped_by_time
        print(f"train: trainer.max_time ({cfg.trainer.max_time:g} s) spent, stopped after step {step} of "
              f"{cfg.trainer.max_steps}; {_saved(run_dir, step)}; continue with {rerun}",
              file=sys.stderr, flush=True)
    if module.nonfinite is not None:
        step, loss = module.nonfinite
        last = ckpt.latest_checkpoint(run_dir)
        raise LossNotFinite(
            f"training loss became {loss} at step {step}; stopped without checkpointing it. "
            f"Last good checkpoint: {last if last else 'none'} (lower optim.lr or use bf16, then {rerun})"
        )
    return run_dir


def _saved(run_dir: Path, step: int) -> str:
    """What an early stop left behind: the checkpoint of its step, or why there is none."""
    last = ckpt.latest_checkpoint(run_dir)
    if last and last.name == ckpt.checkpoint_name(step):
        return f"saved {last}"
    return f"checkpoints are off (checkpoint.every 0); last checkpoint: {last if last else 'none'}"


class KeepInterrupt(pl.Callback):
    """Remembers the KeyboardInterrupt that Lightning turns into its own shutdown and sys.exit(1)."""

    exception: KeyboardInterrupt | None = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.exception = exception


def build_trainer(cfg: TrainConfig, devices: int, nodes: int, accum: int, callbacks=None) -> pl.Trainer:
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning.fabric.plugins.environments import TorchElasticEnvironment

    t = cfg.trainer
    plugins = build_plugins(cfg)
    precision_plugin = bool(plugins)
    if TorchElasticEnvironment.detect():
        # torchrun inside a SLURM allocation: Lightning would otherwise believe SLURM's task counts.
        plugins.append(TorchElasticEnvironment())
    deepspeed = t.strategy == "deepspeed"
    return pl.Trainer(
        accelerator="gpu" if on_gpu(cfg) else "cpu",
        devices=devices,
        num_nodes=nodes,
        strategy=build_strategy(cfg),
        precision=None if precision_plugin else resolved_precision(cfg),
        plugins=plugins or None,
        max_steps=t.max_steps,
        accumulate_grad_batches=accum,
        # DeepSpeed clips inside its engine (gradient_clipping in its config); Lightning clips the others.
        gradient_clip_val=None if deepspeed or not cfg.optim.grad_clip else cfg.optim.grad_clip,
        gradient_clip_algorithm=None if deepspeed else "norm",
        limit_val_batches=0,  # validation is measured by SinkLM at the step's end, before its checkpoint
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(save_dir=str(cfg.run_dir), name="tb", version="", default_hp_metric=False),
        enable_checkpointing=False,  # CheckpointSaver writes atomic, pruned checkpoints instead
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=max(1, t.log_every),
        use_distributed_sampler=False,  # ranks are split by TokenDataset.rank_batch
        deterministic=t.deterministic,
        default_root_dir=str(cfg.run_dir),
        callbacks=callbacks,
    )
