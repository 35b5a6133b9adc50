"""Zero-shot evaluation: the paper's Table 4 tasks scored by EleutherAI's lm-evaluation-harness.

Public entry: `zeroshot(ZeroShotConfig) -> {model: {task: {"acc", "acc_norm", "n"}}}`; `markdown_table`
renders such results in Table 4's layout (the experiment's report uses it).
"""

from sinktrain.zeroshot.config import ZeroShotConfig
from sinktrain.zeroshot.report import markdown_table
from sinktrain.zeroshot.run import zeroshot
from sinktrain.zeroshot.tasks import DEFAULT_TASKS, TASKS

__all__ = ["DEFAULT_TASKS", "TASKS", "ZeroShotConfig", "markdown_table", "zeroshot"]
