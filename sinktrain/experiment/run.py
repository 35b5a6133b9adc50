"""`run_experiment`: data -> train (each variant) -> export -> stream-eval -> report, each stage through its
own public entry (the same functions its CLI verb calls).

Idempotent and resumable: a stage whose artifact is complete is skipped; an unfinished training run resumes
from its newest complete checkpoint (the training stage's own `resume: auto`).
Under torchrun every rank trains; rank 0 alone prepares data, exports, evaluates and writes the report.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sinktrain.config_io import write_yaml_atomic
from sinktrain.data import prepare, read_manifest
from sinktrain.experiment.config import ExperimentConfig
from sinktrain.experiment.report import write_report
from sinktrain.export import ExportConfig, export_checkpoint
from sinktrain.stream import evaluate
from sinktrain.train import latest_checkpoint, train
from sinktrain.zeroshot import zeroshot


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def log(msg: str) -> None:
    if _rank() == 0:  # one line per event, not one per process
        print(f"[experiment] {msg}", flush=True)


def _checkpoint_step(ckpt: Path | None) -> int:
    return int(ckpt.name.rsplit("-", 1)[-1]) if ckpt is not None else -1


def stage_data(cfg: ExperimentConfig) -> None:
    pc = cfg.prepare_config()
    if pc is None:
        read_manifest(cfg.data_dir)  # fails clearly if the given directory is not prepared data
        log(f"data: using prepared {cfg.data_dir}")
        return
    if _rank() == 0:
        prepare(pc)  # a no-op when the directory already holds this exact preparation
        return
    while not (cfg.data_dir / "manifest.json").is_file():  # other ranks wait for rank 0's manifest
        time.sleep(5)


def stage_train(cfg: ExperimentConfig, variant: str) -> Path:
    tc = cfg.train_config(variant)
    run_dir = Path(tc.run_dir)
    if _checkpoint_step(latest_checkpoint(run_dir) if run_dir.exists() else None) >= tc.trainer.max_steps:
        log(f"train {variant}: done (step {tc.trainer.max_steps} checkpoint exists), skipped")
        return run_dir
    log(f"train {variant}: {tc.model.preset}, sink {tc.model.sink.kind} x{tc.model.num_sink_tokens}, "
        f"{tc.trainer.max_steps} steps -> {run_dir}")
    return Path(train(tc))


def stage_export(cfg: ExperimentConfig, variant: str, run_dir: Path) -> Path:
    out = cfg.root / "export" / variant
    ckpt = latest_checkpoint(run_dir)
    meta_path = out / "config.json"
    if meta_path.is_file():
        done_step = json.loads(meta_path.read_text()).get("sinktrain", {}).get("step")
        if done_step == _checkpoint_step(ckpt):
            log(f"export {variant}: done (step {done_step}), skipped")
            return out
    log(f"export {variant}: {ckpt} -> {out}")
    return export_checkpoint(ExportConfig(str(ckpt), str(out), overwrite=True))


def stage_stream(cfg: ExperimentConfig, model_dirs: list[Path]) -> dict:
    sc = cfg.stream_config([str(d) for d in model_dirs] + list(cfg.pretrained))
    results_path = Path(sc.out) / "results.json"
    run_path = Path(sc.out) / "run.json"
    if results_path.is_file() and run_path.is_file():
        previous = json.loads(run_path.read_text()).get("config", {})
        if previous == json.loads(json.dumps(sc.__dict__)):
            log(f"stream-eval: done ({results_path}), skipped")
            return json.loads(results_path.read_text())
    log(f"stream-eval: {len(sc.models)} models on {sc.text} -> {sc.out}")
    return evaluate(sc)


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
    cfg.root.mkdir(parents=True, exist_ok=True)
    if _rank() == 0:
        write_yaml_atomic(cfg.root / "experiment.yaml", cfg.__dict__)
    stage_data(cfg)
    run_dirs = {v: stage_train(cfg, v) for v in cfg.variants}
    if _rank() != 0:
        return None
    exports = [stage_export(cfg, v, run_dirs[v]) for v in cfg.variants]
    results = stage_stream(cfg, exports)
    zeroshot_results = stage_zeroshot(cfg, dict(zip(cfg.variants, exports)))
    report = write_report(cfg, results, run_dirs, zeroshot_results)
    log(f"report: {report}")
    return report
