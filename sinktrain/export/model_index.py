"""Zero-shot results (`sinktrain zeroshot`'s results.json) in a model card: Hugging Face `model-index` eval
results in the card's metadata, and the Table 4 block in its text."""

from __future__ import annotations

import math
from pathlib import Path

from sinktrain.util.text_files import file_problem, load_json


def read_zeroshot(results_path: str | Path, out_dir: Path) -> dict:
    """This export's entry of a results.json: the only model in it, or the one given as the export folder.
    Checked before anything is written; one line naming the file and the fix if it does not fit."""
    path = Path(results_path)
    if path.is_dir():
        raise ValueError(f"--zeroshot-results {path} is a folder; pass the results.json in it")
    problem = file_problem(path)  # a FIFO or a device is not "missing"
    if problem:
        raise FileNotFoundError(f"--zeroshot-results {path} {problem}; pass the results.json `sinktrain "
                                f"zeroshot` wrote")
    try:
        results = load_json(path)
    except ValueError as e:
        raise ValueError(f"--zeroshot-results {path} is not JSON ({e}); pass the results.json `sinktrain zeroshot` "
                         f"wrote") from None
    if not isinstance(results, dict) or not results or not all(
            isinstance(v, dict) and all(_is_scores(t, sc) for t, sc in v.items()) for v in results.values()):
        raise ValueError(f"--zeroshot-results {path} is not {{model: {{task: {{acc, acc_norm, n}}}}}} over "
                         f"sinktrain's tasks; pass the results.json `sinktrain zeroshot` wrote")
    for model, tasks in results.items():
        for task, scores in tasks.items():
            problem = _score_problem(scores)
            if problem:
                raise ValueError(f"--zeroshot-results {path}: {model} {task} has {problem}; pass the results.json "
                                 f"`sinktrain zeroshot` wrote")
    if len(results) == 1:
        model = next(iter(results))
    else:
        same = [m for m in results if Path(m).expanduser().resolve() == out_dir.resolve()]
        if len(same) != 1:
            raise ValueError(f"--zeroshot-results {path} has results for {', '.join(results)} and none is "
                             f"{out_dir}; evaluate this folder alone or export to the folder that was evaluated")
        model = same[0]
    splits, limit = _run_info(path)
    return {"name": out_dir.name, "model": model, "scores": results[model], "splits": splits, "limit": limit}


def _run_info(path: Path) -> tuple[dict, int | None]:
    """(splits scored, --limit) from the run.json `sinktrain zeroshot` wrote next to its results.json."""
    run_path = path.with_name("run.json")
    if not run_path.is_file():
        return {}, None
    fix = "restore it from a copy, or delete it (it only records the splits scored and --limit)"
    try:
        run = load_json(run_path)
    except ValueError as e:
        raise ValueError(f"{run_path}, next to --zeroshot-results {path}, is not valid JSON ({e}); {fix}") from None
    if not isinstance(run, dict):
        raise ValueError(f"{run_path}, next to --zeroshot-results {path}, holds a {type(run).__name__}, not "
                         f"{{'config': ..., 'splits': ...}}; {fix}")
    splits, config = run.get("splits") or {}, run.get("config") or {}
    limit = config.get("limit") if isinstance(config, dict) else None
    problem = ("'splits' is not {task: split}" if not isinstance(splits, dict) or not all(
                   isinstance(v, str) or v is None for v in splits.values()) else
               "'config' is not a mapping" if not isinstance(config, dict) else
               f"config.limit is {limit!r}, not a positive whole number"
               if limit is not None and not (isinstance(limit, int) and not isinstance(limit, bool) and limit > 0)
               else None)
    if problem:
        raise ValueError(f"{run_path}, next to --zeroshot-results {path}, is not the run.json `sinktrain zeroshot` "
                         f"writes: {problem}; {fix}")
    return splits, limit


def is_number(v) -> bool:
    """An int or float read from JSON (a bool is neither, though Python counts it as an int)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_scores(task, scores) -> bool:
    """One task's entry as `sinktrain zeroshot` writes it: a known task; acc and acc_norm numbers (or null: not
    scored, or no such metric), n a count."""
    from sinktrain.zeroshot import TASKS

    return task in TASKS and isinstance(scores, dict) and all(
        scores.get(k) is None or is_number(scores.get(k)) for k in ("acc", "acc_norm")) and \
        isinstance(scores.get("n"), int) and not isinstance(scores["n"], bool)


def is_finite(v) -> bool:
    """A number read from JSON that is neither NaN nor infinite, nor an integer too large for a float."""
    try:
        return is_number(v) and math.isfinite(v)
    except OverflowError:
        return False


def _score_problem(scores: dict) -> str | None:
    """What no scoring gives, in an entry _is_scores accepts: NaN, an infinity or an accuracy outside [0, 1], a
    negative count. The model card claimed them (`value: .nan`)."""
    for key in ("acc", "acc_norm"):
        v = scores.get(key)
        if v is not None and not 0 <= v <= 1:  # (False for NaN and the infinities too)
            return f"{key} {v!r}, not an accuracy in [0, 1]"
    if scores["n"] < 0:
        return f"n {scores['n']!r}, not a count of examples (0 or more)"
    return None


def zeroshot_eval_results(zeroshot: dict) -> list:
    """huggingface_hub EvalResults, one per scored task and metric (accuracy in %, zero-shot, self-reported):
    ModelCardData groups them into the card's `model-index`."""
    from huggingface_hub import EvalResult

    from sinktrain.zeroshot import TASKS

    results = []
    for task, s in zeroshot["scores"].items():
        if task not in TASKS or s.get("acc") is None:
            continue  # not scored (LAMBADA offline): nothing to claim
        info = TASKS[task]
        hub, _, config = info.dataset.partition(":")
        common = dict(task_type="text-generation", task_name="Text Generation", dataset_type=hub,
                      dataset_name=info.label, dataset_config=config or None,
                      dataset_split=zeroshot["splits"].get(task) or info.split, dataset_args={"num_few_shot": 0},
                      source_name=f"sinktrain zeroshot (lm-evaluation-harness, n={s['n']})",
                      source_url="https://github.com/EleutherAI/lm-evaluation-harness")
        results.append(EvalResult(metric_type="acc", metric_value=round(100 * s["acc"], 2), metric_name="accuracy",
                                  **common))
        if s.get("acc_norm") is not None:
            results.append(EvalResult(metric_type="acc_norm", metric_value=round(100 * s["acc_norm"], 2),
                                      metric_name="normalized accuracy", **common))
    return results


def card_section(zeroshot: dict) -> list[str]:
    from sinktrain.zeroshot import markdown_table

    table = markdown_table({zeroshot["model"]: zeroshot["scores"]}, zeroshot["splits"], zeroshot["limit"])
    return ["## Zero-shot evaluation (lm-evaluation-harness)", "", table]
