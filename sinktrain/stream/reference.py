"""Reference mode: a real transformers KV cache, one token per forward pass, StreamingLLM eviction.

Token t is decoded with the cache kept after step t-1 plus itself: its query sits at cache index n (the
cache length) and the cached keys at indices 0..n-1, whatever their positions in the text. Afterwards the
cache is evicted back to C = s + w entries by dropping the oldest non-sink entry (index s).

transformers' DynamicCache stores keys already rotated. As StreamingLLM's own implementation does, we keep
each layer's keys un-rotated beside the cache and write them back rotated at their current cache indices
before every step, so an eviction (which shifts later keys one index down) needs no accumulated re-rotation.
The rotation is the model's own (through its family adapter). Ground truth for the block-parallel mode; slow
by design.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import DynamicCache

from sinktrain.stream.families import FamilyAdapter, adapter_for
from sinktrain.stream.model_info import cache_kwarg


@torch.no_grad()
def reference_nll(model, tokens, sinks: int, window: int | None, progress=None,
                  adapter: FamilyAdapter | None = None) -> np.ndarray:
    """Per-token NLL [N-1] of tokens[1:] (entry i: NLL of tokens[i+1]) under a cache of `sinks` first tokens
    plus the `window` most recent ones; window=None keeps everything (dense attention)."""
    ad = adapter or adapter_for(model)
    device = model.get_input_embeddings().weight.device
    dtype = model.get_input_embeddings().weight.dtype
    ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=device)
    n_tok = int(ids.shape[0])
    capacity = None if window is None else sinks + window
    kw = cache_kwarg(model)
    cache = DynamicCache(config=model.config)
    raw_keys: list[torch.Tensor] | None = None  # per layer, un-rotated [1, heads, n, head_dim]
    nll = np.empty(n_tok - 1, dtype=np.float64)
    for t in range(n_tok - 1):  # the last token predicts nothing, so it is never decoded
        n = 0 if raw_keys is None else raw_keys[0].shape[-2]
        if raw_keys is not None:
            pos = torch.arange(n, device=device)
            for layer, raw in zip(cache.layers, raw_keys):
                layer.keys = ad.rotate(raw[0], pos)[None]
        # Explicit additive mask (the query sees every cached key and itself) and explicit position.
        mask = torch.zeros(1, 1, 1, n + 1, dtype=dtype, device=device)
        out = model(input_ids=ids[None, t : t + 1], position_ids=torch.tensor([[n]], device=device),
                    attention_mask=mask, use_cache=True, **{kw: cache})
        logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        nll[t] = -float(logp[ids[t + 1]])
        # The model appended this token's key rotated at index n: store it un-rotated.
        new_pos = torch.tensor([n], device=device)
        new_raw = [ad.unrotate(layer.keys[0, :, -1:, :], new_pos)[None] for layer in cache.layers]
        raw_keys = new_raw if raw_keys is None else [torch.cat([r, k], dim=-2) for r, k in zip(raw_keys, new_raw)]
        if capacity is not None and n + 1 > capacity:
            drop = sinks  # oldest recent entry; with s = 0 that is the oldest entry of all
            for i, layer in enumerate(cache.layers):
                raw_keys[i] = torch.cat([raw_keys[i][..., :drop, :], raw_keys[i][..., drop + 1 :, :]], dim=-2)
                layer.values = torch.cat([layer.values[..., :drop, :], layer.values[..., drop + 1 :, :]], dim=-2)
                layer.keys = torch.cat([layer.keys[..., :drop, :], layer.keys[..., drop + 1 :, :]], dim=-2)
        if progress is not None:
            progress(1)
    return nll
