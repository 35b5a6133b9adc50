"""Training checkpoint -> Hugging Face folder that loads in stock transformers.

Written into `<out>.tmp-export` and renamed into place at the end, so an interrupted export never leaves a
folder that looks complete, and an existing export is only replaced (with --overwrite) once the new one is whole.
"""

from __future__ import annotations

from pathlib import Path

from transformers import GenerationConfig

from sinktrain.data import TOKENIZER_DIR, data_tokenizer, load_tokenizer
from sinktrain.export.config import ExportConfig
from sinktrain.export.model_index import is_finite, is_number, read_zeroshot
from sinktrain.export.model_card import plot_loss_curve, read_metrics, write_model_card
from sinktrain.export.tokenizer_files import save_tokenizer
from sinktrain.model import ModelConfig, build_model, save_model
from sinktrain.model.source import PICKLED_WEIGHTS
from sinktrain.train import latest_checkpoint, list_checkpoints, load_checkpoint_weights
from sinktrain.train.checkpoint import UnreadableCheckpointError, UnsafeCheckpointError, verify_checkpoint
from sinktrain.train.run_dir import CONFIG_FILE, RUN_INFO_FILE, trained_manifest_sha256
from sinktrain.util.text_files import file_problem, load_json
from sinktrain.util.outputs import check_out_dir, output_lock, read_marker, staged_out_dir


def is_run_dir(path: Path) -> bool:
    """A folder `sinktrain train` wrote: it writes run.json and config.yaml before its first checkpoint."""
    return (path / RUN_INFO_FILE).is_file() or (path / CONFIG_FILE).is_file()


def no_checkpoint_yet(run: Path) -> ValueError:
    return ValueError(f"run directory {run} has no complete checkpoint yet; train until one is saved "
                      f"(checkpoint.every)")


def resolve_checkpoint(source: Path) -> tuple[Path, Path | None]:
    """(checkpoint, run dir or None) for a run dir or a checkpoint path."""
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist; pass a run directory or a checkpoint inside one")
    if is_run_dir(source):
        ckpt = latest_checkpoint(source)
        if ckpt is None:
            raise no_checkpoint_yet(source)
        return ckpt, source
    # checkpoints live in <run>/checkpoints/<step>
    run = source.parent.parent
    return source, run if is_run_dir(run) else None


def _readable(ckpt: Path) -> bool:
    try:
        verify_checkpoint(ckpt)
    except (UnreadableCheckpointError, UnsafeCheckpointError):  # (an unsafe one escaped and replaced the message)
        return False
    return True


def older_checkpoint_hint(ckpt: Path, run_dir: Path | None) -> str:
    """What to export instead of a damaged checkpoint: the newest intact one before it, if any."""
    if run_dir is None:
        return "; export another checkpoint of its run, or restore this one from a copy"
    older = [c for c in list_checkpoints(run_dir) if c.name < ckpt.name]
    intact = next((c for c in reversed(older) if _readable(c)), None)
    return (f"; the newest intact one is {intact}: pass it to export that step" if intact else
            "; no older checkpoint is intact: restore this one from a copy, or train the run again")


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


def run_tokenizer(run_dir: Path | None, train_config: dict):
    """The tokenizer the run trained with: the copy in the run directory; for runs without one, the training
    data's copy, then the spec the config names."""
    if run_dir is not None and (run_dir / TOKENIZER_DIR).is_dir():
        return load_tokenizer(run_dir / TOKENIZER_DIR)
    data_dir = Path(train_config.get("data", {}).get("dir") or "")
    if str(data_dir) and (data_dir / "manifest.json").is_file():
        return data_tokenizer(data_dir)
    return load_tokenizer(train_config.get("data", {}).get("tokenizer"))


def read_eval_results(path: str | None) -> tuple[dict | None, str]:
    """stream-eval's results.json and the text it was measured on (from the run.json next to it)."""
    if not path:
        return None, ""
    results_path = Path(path)
    if results_path.is_dir():  # (stream-eval's --out folder, which holds it)
        raise IsADirectoryError(f"--eval-results {path!r} is a folder; pass the results.json stream-eval wrote in it")
    problem = file_problem(results_path)  # a FIFO or a device is not "missing"
    if problem:
        raise FileNotFoundError(f"--eval-results {path!r} {problem}; pass the results.json stream-eval wrote")
    try:
        results = load_json(results_path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"--eval-results {path!r} is not valid JSON ({e}); pass a stream-eval results.json") from e
    if not (isinstance(results, dict) and all(isinstance(row, dict) and all(isinstance(v, dict) and "ppl" in v
                                                                             for v in row.values())
                                              for row in results.values())):
        raise ValueError(
            f"--eval-results {path!r} is not a stream-eval results.json ({{model: {{'s+w': {{'ppl': ...}}}}}}); pass "
            f"the results.json stream-eval wrote")
    for model, row in results.items():
        for config, v in row.items():
            # NaN, an infinity or a perplexity <= 0 went into the model card as a result (`value: .nan`)
            if not (is_finite(v["ppl"]) and v["ppl"] > 0):
                what = "a positive finite number" if is_number(v["ppl"]) else "a number"
                raise ValueError(f"--eval-results {path!r} is not a stream-eval results.json: {model} {config} has "
                                 f"ppl {v['ppl']!r}, not {what}; pass the results.json stream-eval wrote")
    return results, _eval_text(results_path, path)


def _eval_text(results_path: Path, path: str) -> str:
    """The text stream-eval measured on, from the run.json next to its results.json (default: 'streaming text')."""
    run_info = results_path.with_name("run.json")
    if not run_info.is_file():
        return "streaming text"
    fix = "restore it from a copy, or delete it (it only names the text the results were measured on)"
    try:
        info = load_json(run_info)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{run_info}, next to --eval-results {path!r}, is not valid JSON ({e}); {fix}") from e
    if not isinstance(info, dict):
        raise ValueError(f"{run_info}, next to --eval-results {path!r}, holds a {type(info).__name__}, not "
                         f"{{'config': {{'text': ...}}}}; {fix}")
    config = info.get("config") or {}
    text = config.get("text") if isinstance(config, dict) else None
    problem = ("'config' is not a mapping" if not isinstance(config, dict) else
               f"config.text is {text!r:.60}, not a name" if not isinstance(text or "", str) else None)
    if problem:
        raise ValueError(f"{run_info}, next to --eval-results {path!r}, is not the run.json stream-eval writes: "
                         f"{problem}; {fix}")
    return text or "streaming text"


# Every name an export writes (model files, tokenizer, model card and its plot; sink_gptneox.py: the zero-sink
# variant's attention, referenced by its config's auto_map), special_tokens_map.json from transformers 4.
EXPORT_NAMES = ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "chat_template.jinja", "README.md", "loss_curve.png", "sink_gptneox.py")


def is_earlier_export(out: Path) -> bool:
    """A sinktrain export: its config.json carries the `sinktrain` block. Every Hugging Face folder has a config.json,
    and --overwrite must not replace one that sinktrain did not write."""
    config = read_marker(out / "config.json")
    return isinstance(config, dict) and isinstance(config.get("sinktrain"), dict)


def check_export_target(out: Path, overwrite: bool, inputs: dict | None = None) -> None:
    check_out_dir(out, overwrite=overwrite, markers=("config.json with a sinktrain block",), what="export",
                  option="out_dir", is_earlier=is_earlier_export, own=EXPORT_NAMES, inputs=inputs, staging="export")


def export_checkpoint(cfg: ExportConfig) -> Path:
    with output_lock(cfg.out_dir, "out_dir"):  # from the check of out_dir to its rename: no other run writes it
        return _export_checkpoint(cfg)


def _export_checkpoint(cfg: ExportConfig) -> Path:
    ckpt, run_dir = resolve_checkpoint(Path(cfg.source))
    out = Path(cfg.out_dir)
    check_out_dir_apart(out, run_dir or ckpt)
    # The cheap checks of the user's other input first: loading the checkpoint can take minutes.
    eval_results, eval_text = read_eval_results(cfg.eval_results)
    zeroshot = read_zeroshot(cfg.zeroshot_results, out) if cfg.zeroshot_results else None
    check_export_target(out, cfg.overwrite, inputs={"--eval_results": cfg.eval_results,
                                                    "--zeroshot_results": cfg.zeroshot_results})
    try:
        state_dict, meta = load_checkpoint_weights(ckpt)
    except UnreadableCheckpointError as e:  # train resumes past a damaged one; an export names the one to take
        raise UnreadableCheckpointError(f"{e}{older_checkpoint_hint(ckpt, run_dir)}") from None
    train_config = meta["config"]
    model_cfg = ModelConfig.from_dict(train_config["model"])

    model = build_model(model_cfg, seed=None)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {ckpt} does not match its model config ({model_cfg.preset}, sink {model_cfg.sink.kind}): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    sink_meta = {
        "variant": model_cfg.sink.kind,
        "sink_token_ids": model_cfg.sink_token_ids,
        "num_sink_tokens": model_cfg.num_sink_tokens,
        "preset": model_cfg.preset,
        "seq_len": model_cfg.seq_len,
        "recipe": train_config.get("name") or None,
        "step": meta.get("step"),
        "tokens_seen": meta.get("tokens_seen"),
        # What the checkpoint was trained on, never the data folder as it is now (it may have been prepared again).
        "data_manifest_sha256": trained_manifest_sha256(ckpt, meta),
        "checkpoint": str(ckpt),
    }
    model.config.sinktrain = sink_meta
    with staged_out_dir(out, "export") as tmp:
        save_model(model, tmp)
        GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0).save_pretrained(tmp)
        save_tokenizer(run_tokenizer(run_dir, train_config), model_cfg.sink_token_ids, tmp)

        # The checkpoint's own history: an earlier checkpoint (export --every, --checkpoint) ends its curve there.
        rows = [r for r in read_metrics(run_dir) if not isinstance(meta.get("step"), int) or r["step"] <= meta["step"]]
        has_plot = plot_loss_curve(rows, tmp / "loss_curve.png", f"{out.name}: training loss")
        write_model_card(tmp, sink_meta, train_config, has_plot, eval_results, eval_text, name=out.name,
                         zeroshot=zeroshot)

        leftovers = [p.name for p in tmp.iterdir() if p.suffix in PICKLED_WEIGHTS]
        assert not leftovers, f"pickle files in export: {leftovers}"
    return out


def export_every(run_dir: str, out_root: str, every_k: int = 1, overwrite: bool = False) -> list[Path]:
    """Export every k-th complete checkpoint of a run to `<out_root>/step-XXXXXXXX` (sink emergence over training)."""
    run = Path(run_dir)
    if not is_run_dir(run):
        raise ValueError(
            f"{run} is not a run directory (no run.json or config.yaml); pass the folder `sinktrain train` wrote")
    if every_k < 1:
        raise ValueError(f"every must be >= 1, got {every_k}")
    check_out_dir_apart(Path(out_root), run)
    ckpts = list_checkpoints(run)[::-1][::every_k][::-1]  # always include the newest
    if not ckpts:  # it exported nothing and exited 0 without a word
        raise no_checkpoint_yet(run)
    for c in ckpts:  # every target checked before the first export is written
        check_export_target(Path(out_root) / c.name, overwrite)
    for c in ckpts:  # and every checkpoint: a damaged one found half-way left some steps written, some not
        try:
            verify_checkpoint(c)
        except UnreadableCheckpointError as e:
            raise UnreadableCheckpointError(
                f"{e}; --every exports nothing until every checkpoint it takes loads: restore that one from a copy, "
                f"or move it out of {run / 'checkpoints'} and run again") from None
    return [export_checkpoint(ExportConfig(str(c), str(Path(out_root) / c.name), overwrite=overwrite)) for c in ckpts]


def step_branch(export_dir: Path) -> str:
    """Hub branch of a per-step export, named as Pythia's: step-00001000 -> step1000."""
    return f"step{int(export_dir.name.rsplit('-', 1)[-1])}"
