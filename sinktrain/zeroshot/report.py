"""results.json -> Table 4's layout (tasks as rows, models as columns), as markdown."""

from __future__ import annotations

from sinktrain.util.tables import markdown_table as markdown_table_of
from sinktrain.zeroshot.tasks import TASKS

UNAVAILABLE = "not available offline"


def cell(entry: dict | None) -> str:
    if not entry or entry.get("acc") is None:
        return (entry or {}).get("note", "-")
    text = f"{100 * entry['acc']:.1f}"
    return text + (f" ({100 * entry['acc_norm']:.1f})" if entry.get("acc_norm") is not None else "")


def limited(results: dict, limit: int | None) -> bool:
    """Whether `limit` left out examples: a limit above a task's size scores the whole task (n says how many)."""
    return bool(limit) and any(r.get("n", 0) >= limit for per_model in results.values() for r in per_model.values())


def markdown_table(results: dict, splits: dict | None = None, limit: int | None = None) -> str:
    """results: {model: {task: {"acc", "acc_norm", "n"}}}; splits: {task: split scored} for the notes."""
    models = list(results)
    tasks = [t for t in TASKS if any(t in per_model for per_model in results.values())]
    rows = []
    for t in tasks:
        ns = sorted({results[m][t]["n"] for m in models if t in results[m] and results[m][t].get("acc") is not None})
        rows.append([TASKS[t].label, "/".join(map(str, ns)) or "-", *(cell(results[m].get(t)) for m in models)])
    notes = ["Zero-shot accuracy in % (lm-evaluation-harness tasks and metrics); in parentheses the "
             "length-normalized accuracy (acc_norm) where the task defines it. n: examples scored."]
    if limited(results, limit):
        notes.append(f"Limited run: only the first {limit} examples of a task at most (column n: how many were "
                     f"scored), so these are rough estimates (the standard error of an accuracy near 50% over n "
                     f"examples is about 50/sqrt(n) points).")
    moved = [TASKS[t].label for t in tasks if splits and splits.get(t) and splits[t] != TASKS[t].split]
    if moved:
        notes.append(f"{', '.join(moved)}: scored on the validation split of the local copies (lm-eval scores "
                     f"the test split when it downloads the data).")
    return markdown_table_of(["task", "n", *models], rows) + "\n\n" + "\n".join(notes) + "\n"
