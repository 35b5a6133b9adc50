"""Zero-shot evaluation: the paper's Table 4 tasks scored by EleutherAI's lm-evaluation-harness.

Public entry: `zeroshot(ZeroShotConfig) -> {model: {task: {"acc", "acc_norm", "n"}}}`; `markdown_table`
renders such results in Table 4's layout (the experiment's report uses it); the per-model checks run before any
scoring are exported for the experiment's up-front checks.

Names load from their submodules on first use (sinktrain/util/lazy.py): importing the package, or only its config,
loads no torch or transformers.
"""

from __future__ import annotations

from sinktrain.util.lazy import lazy_exports

_EXPORTS = {
    "ZeroShotConfig": "config",
    "check_fits": "checks",
    "limited": "report",
    "markdown_table": "report",
    "longest_answers": "run",
    "zeroshot": "run",
    "DEFAULT_TASKS": "tasks",
    "TASKS": "tasks",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = sorted(_EXPORTS)
