"""Model facts the evaluator reads beyond the architecture: sinktrain's sink-token metadata, and the
transformers cache keyword (renamed between transformers 5.17 and 5.24)."""

from __future__ import annotations

import inspect


def sink_token_ids(config) -> list[int]:
    """Learnable sink-token ids recorded by `sinktrain export` in config.json's `sinktrain` block
    (`sink_token_ids`, or `sink: {token_ids}`); [] for vanilla and stock models."""
    meta = getattr(config, "sinktrain", None) or {}
    if not isinstance(meta, dict):
        return []
    ids = meta.get("sink_token_ids")
    if ids is None and isinstance(meta.get("sink"), dict):
        ids = meta["sink"].get("token_ids")
    return [int(i) for i in (ids or [])]


def cache_kwarg(model) -> str:
    """Name of the forward's cache argument: `cache` (transformers >= 5.2x) or `past_key_values` (5.17)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
