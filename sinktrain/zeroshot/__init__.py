"""Zero-shot evaluation: the paper's Table 4 tasks scored by EleutherAI's lm-evaluation-harness.

Public entry: `zeroshot(ZeroShotConfig) -> {model: {task: {"acc", "acc_norm", "n"}}}`; `markdown_table`
renders such results in Table 4's layout (the experiment's report uses it); the per-model checks run before any
scoring are exported for the experiment's up-front checks.
"""

from sinktrain.zeroshot.config import ZeroShotConfig
from sinktrain.zeroshot.checks import check_fits
from sinktrain.zeroshot.report import limited, markdown_table
from sinktrain.zeroshot.run import longest_answers, zeroshot
from sinktrain.zeroshot.tasks import DEFAULT_TASKS, TASKS

__all__ = ["DEFAULT_TASKS", "TASKS", "ZeroShotConfig", "check_fits", "limited", "longest_answers",
           "markdown_table", "zeroshot"]
