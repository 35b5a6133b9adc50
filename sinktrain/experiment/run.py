"""`run_experiment`: data -> train (each variant) -> export -> stream-eval -> report, each stage through its
own public entry (the same functions its CLI verb calls).

Every input of every stage is checked before the first stage runs (`preflight`). Idempotent and resumable: a
stage is skipped only when its artifact was made from the current inputs (done-markers, markers.py; a training
run's inputs are its run.json's data manifest); an unfinished training run resumes from its newest complete
checkpoint (the training stage's own `resume: auto`). A run trained on data that has since been re-prepared, or
finished under another recipe (`RECIPE_FIELDS`: model, optimizer, schedule, batch, ...), is kept aside as
`train/<variant>.old-N` and trained again.
Under torchrun every rank trains; rank 0 alone prepares data, exports, evaluates and writes the report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from sinktrain.data import check_long_text_source, load_tokenizer, prepare, read_manifest, resolve_source
from sinktrain.experiment.config import ExperimentConfig
from sinktrain.experiment.markers import forget, is_done, mark_done, tree_sha256
from sinktrain.experiment.report import write_report
from sinktrain.export import ExportConfig, export_checkpoint
from sinktrain.stream import evaluate
from sinktrain.stream.config import validate as validate_stream_config
from sinktrain.train import latest_checkpoint, preflight as train_preflight, train
from sinktrain.train.checkpoint import read_meta
from sinktrain.util.atomic import write_yaml_atomic
from sinktrain.util.rank import is_global_rank_zero, rank_zero_print
from sinktrain.zeroshot import zeroshot


def log(msg: str) -> None:
    rank_zero_print(f"[experiment] {msg}")


def _checkpoint_step(ckpt: Path | None) -> int:
    return int(ckpt.name.rsplit("-", 1)[-1]) if ckpt is not None else -1


def preflight(cfg: ExperimentConfig) -> None:
    """Every stage's inputs, checked before the first stage writes anything: a typo in `stream:` must not
    surface after hours of training."""
    pc = cfg.prepare_config()
    if pc is None:
        read_manifest(cfg.data_dir)
    else:
        for source in pc.sources:
            resolve_source(source)
        if pc.tokenizer is not None:
            load_tokenizer(pc.tokenizer)
    for variant in cfg.variants:
        train_preflight(cfg.train_config(variant))
    sc = cfg.stream_config([str(cfg.root / "export" / v) for v in cfg.variants])
    validate_stream_config(sc)
    check_long_text_source(sc.text)


def stage_data(cfg: ExperimentConfig) -> None:
    pc = cfg.prepare_config()
    if pc is None:
        read_manifest(cfg.data_dir)  # fails clearly if the given directory is not prepared data
        log(f"data: using prepared {cfg.data_dir}")
        return
    if is_global_rank_zero():
        prepare(pc)  # a no-op when the directory already holds this exact preparation
        return
    while not (cfg.data_dir / "manifest.json").is_file():  # other ranks wait for rank 0's manifest
        time.sleep(5)


# What decides a trained variant's weights. The rest of a training config (where it logs, how often it
# checkpoints, the speed levers, the micro-batch split of the same global batch, the run's own path) may change
# without training again.
RECIPE_FIELDS = ("model", "data.tokenizer", "data.seed", "optim.lr", "optim.min_lr", "optim.betas", "optim.eps",
                 "optim.weight_decay", "optim.grad_clip", "schedule", "trainer.precision",
                 "trainer.global_batch_size", "trainer.max_steps", "seed")


def _field(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def recipe_changes(saved: dict, current: dict) -> list[str]:
    """The RECIPE_FIELDS (sections: their keys) that differ between a checkpoint's config and this one."""
    changes = []
    for name in RECIPE_FIELDS:
        old, new = _field(saved, name), _field(current, name)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += [f"{name}.{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                        if old.get(k) != new.get(k)]
        elif old != new:
            changes.append(f"{name} {old!r} -> {new!r}")
    return changes


def _stale_reason(run_dir: Path, tc, manifest: dict) -> str | None:
    """Why the variant's existing run cannot be reused or continued, or None: it was trained on other data, or
    it finished under another recipe (a finished run is otherwise skipped, and its old weights would be reported
    under the new recipe). An unfinished run resumes; train() refuses a changed model section itself."""
    info = run_dir / "run.json"
    if info.is_file() and json.loads(info.read_text()).get("data_manifest") != manifest:
        return "the data was prepared again since this variant was trained"
    ckpt = latest_checkpoint(run_dir) if run_dir.exists() else None
    if ckpt is not None and _checkpoint_step(ckpt) >= tc.trainer.max_steps:
        changes = recipe_changes(read_meta(ckpt)["config"], tc.to_dict())
        if changes:
            return f"it finished under another recipe ({'; '.join(changes)})"
    return None


def stage_train(cfg: ExperimentConfig, variant: str) -> Path:
    tc = cfg.train_config(variant)
    run_dir = Path(tc.run_dir)
    manifest = read_manifest(cfg.data_dir)
    reason = _stale_reason(run_dir, tc, manifest)
    if reason is not None:
        if is_global_rank_zero():
            n = 1
            while run_dir.with_name(f"{run_dir.name}.old-{n}").exists():
                n += 1
            aside = run_dir.with_name(f"{run_dir.name}.old-{n}")
            run_dir.rename(aside)
            log(f"train {variant}: {reason}; its run is kept as {aside} and the variant trains again")
        while _stale_reason(run_dir, tc, manifest) is not None:  # other ranks wait for rank 0's move
            time.sleep(1)
    if _checkpoint_step(latest_checkpoint(run_dir) if run_dir.exists() else None) >= tc.trainer.max_steps:
        log(f"train {variant}: done (step {tc.trainer.max_steps} checkpoint exists), skipped")
        return run_dir
    log(f"train {variant}: {tc.model.preset}, sink {tc.model.sink.kind} x{tc.model.num_sink_tokens}, "
        f"{tc.trainer.max_steps} steps -> {run_dir}")
    return Path(train(tc))


def stage_export(cfg: ExperimentConfig, variant: str, run_dir: Path) -> Path:
    out = cfg.root / "export" / variant
    ckpt = latest_checkpoint(run_dir)
    stage, inputs = f"export-{variant}", {"checkpoint": str(ckpt), "checkpoint_sha256": tree_sha256(ckpt)}
    if (out / "config.json").is_file() and is_done(cfg.root, stage, inputs):
        log(f"export {variant}: done (step {_checkpoint_step(ckpt)}), skipped")
        return out
    log(f"export {variant}: {ckpt} -> {out}")
    forget(cfg.root, stage)
    export_checkpoint(ExportConfig(str(ckpt), str(out), overwrite=True))
    mark_done(cfg.root, stage, inputs)
    return out


def stage_stream(cfg: ExperimentConfig, model_dirs: list[Path]) -> dict:
    sc = cfg.stream_config([str(d) for d in model_dirs] + list(cfg.pretrained))
    results_path = Path(sc.out) / "results.json"
    # Pretrained models are identified by their spec (a zoo name or hub id has no local tree to hash).
    inputs = {"config": json.loads(json.dumps(sc.__dict__)), "models": {str(d): tree_sha256(d) for d in model_dirs}}
    if results_path.is_file() and is_done(cfg.root, "stream", inputs):
        log(f"stream-eval: done ({results_path}), skipped")
        return json.loads(results_path.read_text())
    log(f"stream-eval: {len(sc.models)} models on {sc.text} -> {sc.out}")
    forget(cfg.root, "stream")
    results = evaluate(sc)
    mark_done(cfg.root, "stream", inputs)
    return results


def stage_zeroshot(cfg: ExperimentConfig, exports: dict[str, Path]) -> dict | None:
    """Zero-shot accuracy of each variant, keyed by variant name (None when the study lists no tasks)."""
    zc = cfg.zeroshot_config([str(d) for d in exports.values()])
    if zc is None:
        return None
    zc.validate()  # normalizes the task list as the run.json of an earlier run has it
    by_dir = dict(zip(zc.models, exports))
    out = Path(zc.out)
    results_path = out / "results.json"
    if results_path.is_file() and (out / "run.json").is_file():
        previous = json.loads((out / "run.json").read_text()).get("config", {})
        # an export rewritten since (a newer checkpoint) must be scored again
        newer = all(results_path.stat().st_mtime_ns > (d / "config.json").stat().st_mtime_ns for d in exports.values())
        if previous == json.loads(json.dumps(zc.__dict__)) and newer:
            log(f"zeroshot: done ({out / 'results.json'}), skipped")
            return {by_dir[m]: r for m, r in json.loads((out / "results.json").read_text()).items()}
    log(f"zeroshot: {len(zc.models)} variants on {', '.join(zc.tasks)}"
        + (f" (first {zc.limit} examples each)" if zc.limit else "") + f" -> {out}")
    return {by_dir[m]: r for m, r in zeroshot(zc).items()}


def run_experiment(cfg: ExperimentConfig) -> Path | None:
    """Run (or finish) the whole study; returns the report path (None on ranks other than 0)."""
    preflight(cfg)
    cfg.root.mkdir(parents=True, exist_ok=True)
    if is_global_rank_zero():
        write_yaml_atomic(cfg.root / "experiment.yaml", cfg.__dict__)
    stage_data(cfg)
    run_dirs = {v: stage_train(cfg, v) for v in cfg.variants}
    if not is_global_rank_zero():
        return None
    exports = [stage_export(cfg, v, run_dirs[v]) for v in cfg.variants]
    results = stage_stream(cfg, exports)
    zeroshot_results = stage_zeroshot(cfg, dict(zip(cfg.variants, exports)))
    report = write_report(cfg, results, run_dirs, zeroshot_results)
    log(f"report: {report}")
    return report
