"""Loading a model for streaming decoding: the source (anything `stream-eval` accepts), its tokenizer, its
sink tokens, and a fresh cache of the configured kind."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

from sinktrain.generate.config import CacheOptions


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_static_cache_fits(adapter, cache: int) -> None:
    """The static cache allocates all its slots on the first token, so a --cache too large for the device would
    otherwise end in the allocator's traceback (after the weights loaded) instead of a line naming --cache."""
    from sinktrain.util.memory import available_bytes

    layers, slots = len(adapter.layers), cache + 1  # C + 1 slots: the query of a full cache has one too
    param = next(adapter.model.parameters())
    size = param.element_size()
    need = layers * adapter.num_kv_heads * (adapter.head_dim + adapter.value_dim) * slots * size
    free = available_bytes(param.device)
    if free is not None and need > free:
        raise ValueError(f"--cache {cache}: the static cache needs {need / 2**30:,.1f} GiB ({layers} layers x "
                         f"{adapter.num_kv_heads} KV heads x {adapter.head_dim}+{adapter.value_dim} key+value dims x "
                         f"{slots} slots x {size} bytes) but {param.device} has {free / 2**30:,.1f} GiB available; "
                         f"lower --cache (or use --cache-kind sink, which grows only as tokens arrive)")


@dataclass
class Session:
    model: object
    tokenizer: object
    sink_ids: list[int]  # a sinktrain token-sink export's sink tokens, fed first (position 0)
    opts: CacheOptions

    def new_cache(self):
        from sinktrain.stream.families import adapter_for
        from sinktrain.stream.sink_cache import SinkCache
        from sinktrain.stream.static_sink_cache import StaticSinkCache

        s, w = self.opts.sinks, self.opts.cache - self.opts.sinks
        if self.opts.cache_kind == "static":
            adapter = adapter_for(self.model)
            check_static_cache_fits(adapter, self.opts.cache)
            return StaticSinkCache(self.model, s, w, adapter=adapter)
        return SinkCache(self.model, s, w)

    def stop_ids(self) -> set[int]:
        """End-of-sequence ids: the tokenizer's and the generation config's (chat models end a turn with a token,
        e.g. ChatML's <|im_end|>, that only the generation config lists)."""
        ids = set()
        for source in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            ids.update(source if isinstance(source, list) else [] if source is None else [source])
        vocab = self.model.get_input_embeddings().num_embeddings
        bad = next((i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab), None)
        if bad is not None:  # int("x") said only "invalid literal for int() with base 10: 'x'"
            raise ValueError(f"the model's end-of-sequence ids include {bad!r}, which is no token id (0 to "
                             f"{vocab - 1}); fix eos_token_id in its generation_config.json (or config.json)")
        return ids

    def decoder(self):
        from sinktrain.generate.decode import Decoder

        return Decoder(self.model, self.new_cache(), self.opts.prefill_chunk)


def load_session(spec: str, opts: CacheOptions, check_tokenizer=None) -> Session:
    """Check the model (family, RoPE kind, sliding windows against the cache) and its tokenizer
    (`check_tokenizer(tok, sink_ids, config)`, e.g. its chat template; config: the language model's) before loading
    the weights."""
    from sinktrain.model.source import load_model_tokenizer, load_pretrained
    from sinktrain.stream.evaluation import check_source, check_vocabulary
    from sinktrain.stream.families import adapter_class
    from sinktrain.stream.model_info import sink_token_ids

    opts.check()
    source, read = check_source(spec, opts.cache)
    cls = adapter_class(read)
    config = cls.language_config(read)
    if opts.cache_kind == "static":
        from sinktrain.stream.static_sink_cache import check_ring_order

        check_ring_order(cls)
    tok = load_model_tokenizer(source)
    if tok is None:
        raise ValueError(f"{spec} has no tokenizer files; save the tokenizer it was trained with into the model folder")
    check_vocabulary(spec, tok, config, "save the tokenizer it was trained with into the model folder")
    sinks = sink_token_ids(config)
    if len(sinks) > opts.sinks:
        raise ValueError(f"{spec} is a token-sink model with {len(sinks)} sink token(s) but --sinks is {opts.sinks}; "
                         f"use --sinks {len(sinks)} or more so they stay cached")
    if check_tokenizer is not None:
        check_tokenizer(tok, sinks, config)
    trained = getattr(config, "max_position_embeddings", None)
    if trained and opts.cache + 1 > trained:  # positions inside the cache reach C (the query of a full cache)
        print(f"[sinktrain] warning: the cache ({opts.cache} + the query) exceeds the {trained} positions {spec} "
              f"was trained on", file=sys.stderr)
    model = load_pretrained(source, opts.device, opts.dtype, config=read)
    return Session(model, tok, sinks, opts)
