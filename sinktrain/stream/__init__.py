"""The streaming evaluator: StreamingLLM perplexity under a cache of s sink tokens + w recent tokens.

Public entry: `evaluate(StreamEvalConfig) -> results`. The three ways to compute the per-token NLLs
(`reference_nll`, `parallel_nll`, `recompute_nll`), the attention statistics and the table/plot writers are
exported for the experiment stage.

Names load from their submodules on first use (sinktrain/util/lazy.py): importing the package, or only its config,
loads no torch or transformers.
"""

from __future__ import annotations

from sinktrain.util.lazy import lazy_exports

_EXPORTS = {
    "StreamEvalConfig": "config",
    "parse_config_name": "config",
    "evaluate": "evaluation",
    "load_model": "evaluation",
    "score": "evaluation",
    "summarize": "evaluation",
    "parallel_nll": "parallel",
    "recompute_nll": "recompute",
    "reference_nll": "reference",
    "plot_attention_maps": "report",
    "plot_log_ppl": "report",
    "plot_sink_attention": "report",
    "write_nll": "report",
    "write_table": "report",
    "write_tensorboard": "report",
    "attention_maps": "stats",
    "attention_sink_stats": "stats",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = sorted(_EXPORTS)
