"""The independent side of the sink-dependence checks: evict the first positions from the model's own KV cache,
as a streaming cache does, and score the queries that come after."""

from __future__ import annotations

import inspect

import torch


def evicted_nll(model, ids: torch.Tensor, hidden: int, from_query: int) -> float:
    """The queries from `from_query` on, run after the first `hidden` entries left the KV cache of the earlier
    ones (the rest kept at their positions): their mean NLL on the tokens they predict."""
    t = ids.shape[-1]
    cache = model(input_ids=ids[:, :from_query], use_cache=True).past_key_values
    for layer in cache.layers:
        if getattr(layer, "keys", None) is None:  # a layer that reads another layer's keys and values (Gemma 3n)
            continue
        held = layer.keys.shape[-2]
        gone = getattr(layer, "cumulative_length", held) - held  # the first ones a sliding-window layer let go
        cut = max(hidden - gone, 0)
        layer.keys, layer.values = layer.keys[:, :, cut:], layer.values[:, :, cut:]
        if hasattr(layer, "cumulative_length"):  # a sliding-window layer sizes its mask from its own count, which
            layer.cumulative_length -= hidden  # moves with the queries' positions in the cache (one less each)
    # transformers 5.24 renamed the argument (`cache`); the GPU machine's 5.17 knows only the old name.
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    rest = model(input_ids=ids[:, from_query:], **{name: cache}, use_cache=True,
                 position_ids=torch.arange(from_query, t)[None],
                 cache_position=torch.arange(from_query - hidden, t - hidden))
    logp = torch.log_softmax(rest.logits[:, :-1].double(), dim=-1)
    return float(-logp.gather(-1, ids[:, from_query + 1:, None]).mean())


def plain_nll(model, ids: torch.Tensor, from_query: int) -> float:
    """The same queries' mean NLL with nothing evicted."""
    logp = torch.log_softmax(model(input_ids=ids, use_cache=False).logits[:, from_query:-1].double(), dim=-1)
    return float(-logp.gather(-1, ids[:, from_query + 1:, None]).mean())
