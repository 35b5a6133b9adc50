"""The streaming evaluator: StreamingLLM perplexity under a cache of s sink tokens + w recent tokens.

Public entry: `evaluate(StreamEvalConfig) -> results`. The three ways to compute the per-token NLLs
(`reference_nll`, `parallel_nll`, `recompute_nll`), the attention statistics and the table/plot writers are
exported for the experiment stage.
"""

from sinktrain.stream.config import StreamEvalConfig, parse_config_name
from sinktrain.stream.evaluate import evaluate, load_model, score, summarize
from sinktrain.stream.parallel import parallel_nll
from sinktrain.stream.recompute import recompute_nll
from sinktrain.stream.reference import reference_nll
from sinktrain.stream.report import (
    plot_attention_maps,
    plot_log_ppl,
    plot_sink_attention,
    write_nll,
    write_table,
    write_tensorboard,
)
from sinktrain.stream.stats import attention_maps, attention_sink_stats

__all__ = [
    "StreamEvalConfig",
    "attention_maps",
    "attention_sink_stats",
    "evaluate",
    "load_model",
    "parallel_nll",
    "parse_config_name",
    "plot_attention_maps",
    "plot_log_ppl",
    "plot_sink_attention",
    "recompute_nll",
    "reference_nll",
    "score",
    "summarize",
    "write_nll",
    "write_table",
    "write_tensorboard",
]
