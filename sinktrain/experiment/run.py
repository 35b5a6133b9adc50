"""`run_experiment`: data -> train (each variant) -> export -> stream-eval -> report, each stage through its
own public entry (the same functions its CLI verb calls).

Idempotent and resumable: a stage whose artifact is complete is skipped; an unfinished training run resumes
from its newest complete checkpoint (the training stage's own `resume: auto`).
Under torchrun every rank trains; rank 0 alone prepares data, exports, evaluates and writes the report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from sinktrain.data import prepare, read_manifest
from sinktrain.experiment.config import ExperimentConfig
from sinktrain.experiment.report import write_report
from sinktrain.export import ExportConfig, export_checkpoint
from sinktrain.stream import evaluate
from sinktrain.train import latest_checkpoint, train
from sinktrain.util.atomic import write_yaml_atomic
from sinktrain.util.rank import is_global_rank_zero, rank_zero_print


def log(msg: str) -> None:
    rank_zero_print(f"[experiment] {msg}")


def _checkpoint_step(ckpt: Path | None) -> int:
    return int(ckpt.name.rsplit("-", 1)[-1]) if ckpt is not None else -1


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
    sc = cfg.stream_config([str(d) for d in model_dirs])
    results_path = Path(sc.out) / "results.json"
    run_path = Path(sc.out) / "run.json"
    if results_path.is_file() and run_path.is_file():
        previous = json.loads(run_path.read_text()).get("config", {})
        if previous == json.loads(json.dumps(sc.__dict__)):
            log(f"stream-eval: done ({results_path}), skipped")
            return json.loads(results_path.read_text())
    log(f"stream-eval: {len(model_dirs)} models on {sc.text} -> {sc.out}")
    return evaluate(sc)


def run_experiment(cfg: ExperimentConfig) -> Path | None:
    """Run (or finish) the whole study; returns the report path (None on ranks other than 0)."""
    cfg.root.mkdir(parents=True, exist_ok=True)
    if is_global_rank_zero():
        write_yaml_atomic(cfg.root / "experiment.yaml", cfg.__dict__)
    stage_data(cfg)
    run_dirs = {v: stage_train(cfg, v) for v in cfg.variants}
    if not is_global_rank_zero():
        return None
    exports = [stage_export(cfg, v, run_dirs[v]) for v in cfg.variants]
    results = stage_stream(cfg, exports)
    report = write_report(cfg, results, run_dirs)
    log(f"report: {report}")
    return report
