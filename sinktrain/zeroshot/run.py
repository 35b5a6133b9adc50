"""`zeroshot(ZeroShotConfig)`: score models on Table 4's tasks with lm-evaluation-harness and write
`<out>/results.json`, `<out>/table.md` and `<out>/run.json`.

Everything that can be refused (task names, the local data, each model's spec, config, weight files and
tokenizer, and whether each model's context holds every task's longest answer) is checked before the first
model loads; results.json is rewritten after each model, so an interrupted run keeps what it scored.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from sinktrain.config_io import write_json_atomic
from sinktrain.util.outputs import output_lock
from sinktrain.zeroshot.checks import (
    DEFAULT_MAX_LENGTH,
    check_fits,
    first_line,
    longest_continuations,
    model_tokenizer,
    task_requests,
)
from sinktrain.zeroshot.config import ZeroShotConfig
from sinktrain.zeroshot.report import UNAVAILABLE, markdown_table
from sinktrain.zeroshot.tasks import TASKS, lm_eval_config, write_local_task


def log(msg: str) -> None:
    print(f"[zeroshot] {msg}", flush=True)


def check_models(cfg: ZeroShotConfig) -> dict:
    """Each spec resolves, ships no code of its own to run, its config loads and holds possible values, its weight
    files are whole and of the sizes the config calls for, and its tokenizer loads and has no id past the model's
    vocabulary (one line naming the model if not), all before any scoring.
    -> {spec: (config, tokenizer)}, handed to the loader so that each is read once (a GGUF header takes seconds)."""
    from sinktrain.model.source import check_weight_files, load_config, refuse_custom_code, resolve_model_source
    from sinktrain.model.weight_shapes import check_weight_shapes
    from sinktrain.stream.evaluation import check_vocabulary

    checked = {}
    for spec in cfg.models:
        source = resolve_model_source(spec)  # its own one-line errors name the spec and the fix
        refuse_custom_code(source)  # before the config loads: transformers would ask to run a folder's own code
        try:
            config = load_config(source)
        except Exception as e:  # an unknown architecture, a malformed config: one line naming the model
            raise ValueError(f"cannot load model {spec!r}: {first_line(e)}") from None
        check_weight_files(source)
        check_weight_shapes(source, config)  # headers only: loading would fail after the earlier models scored
        tokenizer = model_tokenizer(source)
        check_vocabulary(spec, tokenizer, config.get_text_config(),
                         "zero-shot scoring reads the model's own tokenizer: save the one it was trained with "
                         "into the model folder")
        checked[spec] = (config, tokenizer)
    return checked


def task_refs(cfg: ZeroShotConfig, sources: dict, folder: Path) -> tuple[dict, dict]:
    """({task: what lm-eval loads: a task YAML under `folder` for a local copy, lm-eval's own config otherwise, or
    None where no copy exists}, {task: split scored})."""
    refs, splits = {}, {}
    for t in cfg.tasks:
        if t in sources and sources[t] is None:
            refs[t], splits[t] = None, None
        elif t in sources:
            split, arrows = sources[t]
            refs[t], splits[t] = str(write_local_task(t, split, arrows, folder)), split
        else:
            refs[t], splits[t] = str(lm_eval_config(t)), TASKS[t].split
    return refs, splits


def longest_answers(cfg: ZeroShotConfig, tokenizers: list, sources: dict | None = None,
                    manager=None) -> list[dict[str, int]]:
    """{task: longest continuation in tokens} for each tokenizer, from the requests lm-eval will score under
    `cfg.limit` (a few seconds: lm-eval builds them without a model). The task YAMLs are written to a scratch
    folder: a refused run writes nothing under --out."""
    from lm_eval.tasks import TaskManager

    sources = cfg.task_sources() if sources is None else sources
    with tempfile.TemporaryDirectory() as tmp:
        refs = {t: r for t, r in task_refs(cfg, sources, Path(tmp))[0].items() if r is not None}
        try:
            requests = task_requests(refs, cfg.limit, manager or TaskManager(include_defaults=False))
        except Exception as e:
            if "OfflineMode" not in str(e) and "Couldn't reach" not in str(e):
                raise
            # no network (HF_HUB_OFFLINE): lm-eval downloads each task's data unless a local copy is given
            raise ConnectionError(f"{first_line(e)}; offline, pass --data-dir with datasets.save_to_disk copies "
                                  f"of the tasks (data/zeroshot in the sinktrain repository holds samples)") from None
    return [longest_continuations(requests, tok) for tok in tokenizers]


def check_contexts(cfg: ZeroShotConfig, sources: dict, manager, checked: dict) -> None:
    """Every model's context holds the longest answer of every task (lm-eval would stop on an assertion, or a
    sink model's scoring on its first long request, after the earlier models were scored)."""
    from lm_eval.models.utils import resolve_max_length

    from sinktrain.zeroshot.lm import sink_ids_of

    longest = longest_answers(cfg, [tok for _, tok in checked.values()], sources, manager)
    for (spec, (config, tok)), per_task in zip(checked.items(), longest):
        max_length = resolve_max_length(config, tok, default=DEFAULT_MAX_LENGTH)
        check_fits(f"model {spec!r}", per_task, max_length, len(sink_ids_of(config)),
                   "score a model with a longer context, or drop that task from --tasks")


def score_task(lm, task_ref: str, task: str, limit: int | None, task_manager) -> dict:
    """One task through lm-eval's evaluator: {"acc", "acc_norm", "n"} with its own metrics."""
    from unittest import mock

    import lm_eval.evaluator
    from lm_eval import simple_evaluate

    # lm-eval stamps every result with the working folder's git hash and an environment report, which this run
    # never reads (run.json records the run): its `git describe` printed "fatal: not a git repository" once per
    # task outside a checkout, and the report runs subprocesses each time.
    with mock.patch.object(lm_eval.evaluator, "get_git_commit_hash", lambda: None), \
            mock.patch.object(lm_eval.evaluator, "add_env_info", lambda storage: None):
        out = simple_evaluate(model=lm, tasks=[task_ref], limit=limit, bootstrap_iters=0, log_samples=False,
                              task_manager=task_manager)
    metrics = out["results"][task]
    return {"acc": float(metrics["acc,none"]),
            "acc_norm": float(metrics["acc_norm,none"]) if "acc_norm,none" in metrics else None,
            "n": int(out["n-samples"][task]["effective"])}


def zeroshot(cfg: ZeroShotConfig) -> dict:
    with output_lock(cfg.out):  # from the check of --out to its last file: no other run writes it meanwhile
        return _zeroshot(cfg)


def _zeroshot(cfg: ZeroShotConfig) -> dict:
    cfg.validate()  # first: it names the [zeroshot] extra where lm-eval is missing, which the imports below need
    from lm_eval.tasks import TaskManager

    # Only the task YAMLs named here are read: indexing lm-eval's ~15k built-in tasks is not needed.
    manager = TaskManager(include_defaults=False)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    sources = cfg.task_sources()
    checked = check_models(cfg)
    check_contexts(cfg, sources, manager, checked)
    # lm-eval reads the task YAMLs from a scratch folder while scoring; they go under --out with the first results.
    # Written there first, a run that failed or was interrupted while scoring its first model left tasks/ behind,
    # and the rerun was refused for a non-empty --out (and with --overwrite, an earlier run's YAMLs were replaced
    # before anything was scored).
    with tempfile.TemporaryDirectory(prefix="sinktrain-zeroshot-") as scratch:
        return score_models(cfg, sources, manager, checked, Path(scratch))


def score_models(cfg: ZeroShotConfig, sources: dict, manager, checked: dict, scratch: Path) -> dict:
    from sinktrain.model_source import resolve_model_source
    from sinktrain.zeroshot.lm import lm_for, load

    out = Path(cfg.out)
    refs, splits = task_refs(cfg, sources, scratch)
    # where each model was read from (a hub id: the commit its config was read at), as stream-eval records it
    run_info = {"config": cfg.__dict__, "splits": splits,
                "models": {spec: resolve_model_source(spec).record() for spec in cfg.models}}
    results: dict = {}
    for spec in cfg.models:
        t0 = time.perf_counter()
        loaded = load(spec, cfg.device, cfg.dtype, *checked[spec])
        log(f"{spec}: loaded in {time.perf_counter() - t0:.1f} s"
            + (f", sink token(s) {loaded.sink_ids} at position 0 of every request" if loaded.sink_ids else ""))
        lm = lm_for(loaded, cfg.batch_size)
        results[spec] = {}
        for t in cfg.tasks:
            if refs[t] is None:
                results[spec][t] = {"acc": None, "acc_norm": None, "n": 0, "note": UNAVAILABLE}
                log(f"{spec} {t}: {UNAVAILABLE} (no copy under --data-dir)")
                continue
            t0 = time.perf_counter()
            r = score_task(lm, refs[t], t, cfg.limit, manager)
            dt = time.perf_counter() - t0
            results[spec][t] = r
            log(f"{spec} {t}: acc {r['acc']:.3f}" + (f", acc_norm {r['acc_norm']:.3f}" if r["acc_norm"] is not None
                                                     else "")
                + f" on {r['n']} examples in {dt:.1f} s ({r['n'] / dt:.1f} examples/s)")
        del lm, loaded
        if "data" not in run_info:  # the first results: publish the task YAMLs that run.json points to
            published = task_refs(cfg, sources, out / "tasks")[0]
            run_info["data"] = {t: (r if cfg.data_dir else "lm-eval download") for t, r in published.items()}
        write_results(out, results, run_info)
    log(f"results: {out / 'results.json'}, table: {out / 'table.md'}")
    return results


def write_results(out: Path, results: dict, run_info: dict) -> None:
    """results.json, table.md and run.json together, each complete or not there (an earlier run's stay until
    this run has scored its first model)."""
    write_json_atomic(out / "results.json", results)
    write_json_atomic(out / "run.json", run_info)
    table = out / "table.md"
    tmp = table.with_name("table.md.tmp")
    tmp.write_text(markdown_table(results, run_info["splits"], run_info["config"]["limit"]))
    tmp.replace(table)
