"""Every `sinktrain` verb, in pipeline order: the stage module that adds it, and its one-line help.

`sinktrain --help` (and a mistyped verb's error) lists the verbs from this table alone, and `sinktrain VERB` imports
only the stage that adds VERB (its CLI and config, light: torch, transformers, Lightning and lm-eval, ~6 s on 2
cores, load when the verb runs). Each stage's `register` takes its verbs' help from here, so the list and the verbs
never differ.
"""

from __future__ import annotations

VERBS: dict[str, tuple[str, str]] = {
    "info": ("sinktrain.model_cli",
             "print a model preset's config and parameter counts"),
    "data": ("sinktrain.data.cli",
             "tokenize corpora into packed shards; inspect a data directory"),
    "train": ("sinktrain.train.cli",
              "pretrain a model from a recipe (single device, DDP or DeepSpeed ZeRO)"),
    "export": ("sinktrain.export.cli",
               "checkpoint -> Hugging Face folder (and optionally push it to the hub)"),
    "stream-eval": ("sinktrain.stream.cli",
                    "streaming (StreamingLLM) perplexity under s sink + w recent tokens"),
    "zeroshot": ("sinktrain.zeroshot.cli",
                 "zero-shot accuracy (lm-evaluation-harness) on the paper's Table 4 tasks"),
    "generate": ("sinktrain.generate.cli",
                 "stream a continuation of a prompt through a sink cache, at constant memory"),
    "chat": ("sinktrain.generate.cli",
             "multi-turn streaming chat through a sink cache (interactive or a JSONL script)"),
    "streameval": ("sinktrain.generate.cli",
                   "StreamEval (StreamingLLM §4.3): line-retrieval accuracy against input length"),
    "experiment": ("sinktrain.experiment.cli",
                   "run a whole study: data, train variants, export, stream-eval, report"),
}


def verb_help(verb: str) -> str:
    """The one line `sinktrain --help` shows for `verb`."""
    return VERBS[verb][1]
