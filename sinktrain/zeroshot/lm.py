"""The model side of a zero-shot run: load any model stream-eval takes, and hand it to lm-eval's HF model
class, with a token-sink model's sink token(s) at position 0 of every request, as in training."""

from __future__ import annotations

import logging

from dataclasses import dataclass

from lm_eval.models.huggingface import HFLM


@dataclass
class LoadedModel:
    spec: str  # as given on the command line
    model: object
    tokenizer: object
    sink_ids: list[int]


def sink_ids_of(config) -> list[int]:
    """Sink-token ids from the `sinktrain` block `sinktrain export` writes into config.json ([] for vanilla,
    softmax1/logit and stock models: those have no sink token to prepend)."""
    block = getattr(config, "sinktrain", None)
    if not isinstance(block, dict):
        return []
    ids = block.get("sink_token_ids")
    if ids is None:
        ids = (block.get("sink") or {}).get("token_ids")
    return [int(i) for i in ids or []]


def resolve(spec: str):
    """The model's source, resolved without loading weights: a bad spec fails before any model is loaded."""
    from sinktrain.model_source import resolve_model_source

    return resolve_model_source(spec)


def load(spec: str, device: str, dtype: str, config=None, tokenizer=None) -> LoadedModel:
    """Weights and tokenizer of a folder / .gguf / hub id / zoo name; one-line ValueError when it cannot load.
    softmax1/logit exports load with sinktrain's own architecture (registered by sinktrain.model). `config`,
    `tokenizer`: the model's own, where the caller has read them already (run.check_models)."""
    from sinktrain.model.source import load_pretrained
    from sinktrain.zeroshot.checks import first_line, model_tokenizer

    source = resolve(spec)
    try:
        model = load_pretrained(source, device, dtype, config=config)
    except Exception as e:  # broken weights, a missing file: one line naming the model
        raise ValueError(f"cannot load model {spec!r}: {first_line(e)}") from None
    if tokenizer is None:
        tokenizer = model_tokenizer(source)
    return LoadedModel(spec, model, tokenizer, sink_ids_of(model.config))


class SinkHFLM(HFLM):
    """lm-eval's HF causal LM whose every request starts with the model's sink token(s).

    lm-eval tokenizes a request's context and continuation itself and decides on special tokens (it may ask
    for none, or put a BOS/EOS of its own before an empty context). Here text is always encoded without
    special tokens and the sink ids are put first, and a request longer than the model's context is cut from
    the left *after* the sinks, so the model never scores a request without its sink at position 0."""

    def __init__(self, *, sink_ids: list[int], **kwargs):
        if not sink_ids:
            raise ValueError("SinkHFLM needs the model's sink token ids")
        self.sink_ids = list(sink_ids)
        super().__init__(backend="causal", add_bos_token=False, prefix_token_id=self.sink_ids[0], **kwargs)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs) -> list[int]:
        ids = self.tokenizer.encode(string, add_special_tokens=False)
        if left_truncate_len:
            ids = ids[-left_truncate_len:]
        # add_special_tokens=False is lm-eval encoding a bare continuation: no prefix there.
        return ids if add_special_tokens is False else self.sink_ids + ids

    def _loglikelihood_tokens(self, requests, **kwargs):
        k, limit = len(self.sink_ids), self.max_length + 1
        fixed = []
        for (context, continuation), context_enc, continuation_enc in requests:
            if context == "":  # lm-eval put its single prefix token here; a model may have several sinks
                context_enc = list(self.sink_ids)
            if context_enc[:k] != self.sink_ids:
                raise RuntimeError(f"request without the sink prefix {self.sink_ids}: {context_enc[:k + 4]}")
            excess = len(context_enc) + len(continuation_enc) - limit
            if excess > 0:  # lm-eval would cut the sinks off with the oldest tokens: cut behind them instead
                body = context_enc[k:]
                if excess > len(body):
                    raise ValueError(f"a continuation of {len(continuation_enc)} tokens does not fit the model's "
                                     f"{self.max_length}-token context with its {k} sink token(s)")
                context_enc = self.sink_ids + body[excess:]
            fixed.append(((context, continuation), context_enc, continuation_enc))
        return super()._loglikelihood_tokens(fixed, **kwargs)

    def loglikelihood_rolling(self, requests, **kwargs):
        raise ValueError("perplexity tasks (loglikelihood_rolling) are not supported for sink-token models; "
                         "use sinktrain stream-eval for perplexity")


def lm_for(loaded: LoadedModel, batch_size: int) -> HFLM:
    """lm-eval's model object for an already-loaded model (its device and dtype are the model's)."""
    common = dict(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=batch_size,
                  device=str(loaded.model.device))
    # lm-eval warns twice that `pretrained` is a model object, not a name to load: handing it the model that
    # sinktrain loaded and checked is the point here, so the warnings would only alarm.
    hf_log = logging.getLogger("lm_eval.models.huggingface")
    level = hf_log.level
    hf_log.setLevel(logging.ERROR)
    try:
        if loaded.sink_ids:
            return SinkHFLM(sink_ids=loaded.sink_ids, **common)
        return HFLM(backend="causal", **common)
    finally:
        hf_log.setLevel(level)
