"""Training checkpoint -> Hugging Face folder that loads in stock transformers.

Written into `<out>.tmp-export` and renamed into place at the end, so an interrupted export never leaves a
folder that looks complete, and an existing export is only replaced (with --overwrite) once the new one is whole.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig

from sinktrain.export.model_card import plot_loss_curve, read_metrics, write_model_card
from sinktrain.export.tokenizer_files import save_tokenizer
from sinktrain.model import ModelConfig, build_model, save_model
from sinktrain.train import latest_checkpoint, list_checkpoints, load_checkpoint_weights

# Files a finished export holds; also the allow-list the hub upload uses.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass
class ExportConfig:
    source: str  # a run directory (its newest checkpoint) or one checkpoint
    out_dir: str
    overwrite: bool = False
    eval_results: str | None = None  # a stream-eval results.json to put in the model card


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()


def resolve_checkpoint(source: Path) -> tuple[Path, Path | None]:
    """(checkpoint, run dir or None) for a run dir or a checkpoint path."""
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist; pass a run directory or a checkpoint inside one")
    if is_run_dir(source):
        ckpt = latest_checkpoint(source)
        if ckpt is None:
            raise ValueError(f"run directory {source} has no complete checkpoint yet; train longer or pass a checkpoint")
        return ckpt, source
    # checkpoints live in <run>/checkpoints/<step>
    run = source.parent.parent
    return source, run if is_run_dir(run) else None


def check_out_dir_apart(out: Path, source: Path) -> None:
    """Refuse an export target that is, contains, or lies inside the training run (or checkpoint) it reads:
    replacing it (--overwrite) would delete the run being exported."""
    out_abs, src_abs = out.resolve(), source.resolve()
    if out_abs == src_abs or out_abs in src_abs.parents:
        where = "is" if out_abs == src_abs else "contains"
    elif src_abs in out_abs.parents:
        where = "is inside"
    else:
        return
    raise ValueError(f"export target {str(out)!r} {where} the run being exported ({str(source)!r}); "
                     f"writing there could delete it. Choose an out_dir outside the run")


def _read_eval_results(path: str) -> dict:
    """A stream-eval results.json, read before anything is written."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--eval-results {path!r} does not exist; pass a results.json of sinktrain stream-eval")
    try:
        results = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"--eval-results {path!r} is not valid JSON ({e}); pass a stream-eval results.json") from e
    if not isinstance(results, dict):
        raise ValueError(f"--eval-results {path!r} is not a stream-eval results.json (a mapping of model -> results)")
    return results


def _file_sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _prepare_out_dir(out: Path, overwrite: bool) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"output folder {out} exists and is not empty; pass --overwrite to replace it")
        if not (out / "config.json").is_file():  # --overwrite replaces an earlier export, nothing else
            raise FileExistsError(f"output folder {out} is not an earlier export (no config.json); --overwrite "
                                  f"replaces only exports. Choose another out_dir")
    tmp = out.with_name(out.name + ".tmp-export")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted export
    tmp.mkdir(parents=True)
    return tmp


def export_checkpoint(cfg: ExportConfig) -> Path:
    ckpt, run_dir = resolve_checkpoint(Path(cfg.source))
    out = Path(cfg.out_dir)
    check_out_dir_apart(out, run_dir or ckpt)
    eval_results = _read_eval_results(cfg.eval_results) if cfg.eval_results else None
    state_dict, meta = load_checkpoint_weights(ckpt)
    train_config = meta["config"]
    model_cfg = ModelConfig.from_dict(train_config["model"])
    tmp = _prepare_out_dir(out, cfg.overwrite)

    model = build_model(model_cfg, seed=None)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        shutil.rmtree(tmp)
        raise ValueError(
            f"checkpoint {ckpt} does not match its model config ({model_cfg.preset}, sink {model_cfg.sink.kind}): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    data_dir = Path(train_config.get("data", {}).get("dir", "") or "")
    sink_meta = {
        "variant": model_cfg.sink.kind,
        "sink_token_ids": model_cfg.sink_token_ids,
        "num_sink_tokens": model_cfg.num_sink_tokens,
        "preset": model_cfg.preset,
        "seq_len": model_cfg.seq_len,
        "recipe": train_config.get("name") or None,
        "step": meta.get("step"),
        "tokens_seen": meta.get("tokens_seen"),
        "data_manifest_sha256": _file_sha256(data_dir / "manifest.json") if str(data_dir) else None,
        "checkpoint": str(ckpt),
    }
    model.config.sinktrain = sink_meta
    save_model(model, tmp)
    GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0).save_pretrained(tmp)
    save_tokenizer(train_config.get("data", {}).get("tokenizer"), model_cfg.sink_token_ids, tmp)

    has_plot = plot_loss_curve(read_metrics(run_dir), tmp / "loss_curve.png", f"{out.name}: training loss")
    write_model_card(tmp, sink_meta, train_config, has_plot, eval_results)

    leftovers = [p.name for p in tmp.iterdir() if p.suffix in PICKLE_SUFFIXES]
    assert not leftovers, f"pickle files in export: {leftovers}"
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def export_every(run_dir: str, out_root: str, every_k: int = 1, overwrite: bool = False) -> list[Path]:
    """Export every k-th complete checkpoint of a run to `<out_root>/step-XXXXXXXX` (sink emergence over training)."""
    run = Path(run_dir)
    if not is_run_dir(run):
        raise ValueError(f"{run} is not a run directory (no config.yaml + checkpoints/); pass the folder `sinktrain train` wrote")
    if every_k < 1:
        raise ValueError(f"--every must be >= 1, got {every_k}")
    check_out_dir_apart(Path(out_root), run)
    ckpts = list_checkpoints(run)[::-1][::every_k][::-1]  # always include the newest
    return [export_checkpoint(ExportConfig(str(c), str(Path(out_root) / c.name), overwrite=overwrite)) for c in ckpts]
