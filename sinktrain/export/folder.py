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

from sinktrain.export.model_index import read_zeroshot
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
    zeroshot_results: str | None = None  # a `sinktrain zeroshot` results.json: model-index eval results in the card


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


def _file_sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _prepare_out_dir(out: Path, overwrite: bool) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"output folder {out} exists and is not empty; pass --overwrite to replace it")
    tmp = out.with_name(out.name + ".tmp-export")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted export
    tmp.mkdir(parents=True)
    return tmp


def export_checkpoint(cfg: ExportConfig) -> Path:
    ckpt, run_dir = resolve_checkpoint(Path(cfg.source))
    state_dict, meta = load_checkpoint_weights(ckpt)
    train_config = meta["config"]
    model_cfg = ModelConfig.from_dict(train_config["model"])
    out = Path(cfg.out_dir)
    zeroshot = read_zeroshot(cfg.zeroshot_results, out) if cfg.zeroshot_results else None
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
    eval_results = json.loads(Path(cfg.eval_results).read_text()) if cfg.eval_results else None
    write_model_card(tmp, sink_meta, train_config, has_plot, eval_results, zeroshot)

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
    ckpts = list_checkpoints(run)[::-1][::every_k][::-1]  # always include the newest
    return [export_checkpoint(ExportConfig(str(c), str(Path(out_root) / c.name), overwrite=overwrite)) for c in ckpts]
