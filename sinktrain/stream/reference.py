"""Reference mode: the generation cache (`SinkCache`), one token per forward pass.

Token t is decoded with the cache kept after step t-1 plus itself: its query sits at cache index n (the cache
length) and the cached keys at indices 0..n-1, whatever their positions in the text; the cache then evicts
back to C = s + w entries. All of that lives in `sinktrain.stream.sink_cache.SinkCache`, the same class
`sinktrain generate` and `chat` decode with, so the exact block-parallel mode checks the generation cache
itself. Slow by design.
"""

from __future__ import annotations

import numpy as np
import torch

from sinktrain.model.decode_attention import decode_attention
from sinktrain.stream.families import FamilyAdapter
from sinktrain.stream.model_info import cache_kwarg
from sinktrain.stream.sink_cache import SinkCache


@torch.no_grad()
def reference_nll(model, tokens, sinks: int, window: int | None, progress=None,
                  adapter: FamilyAdapter | None = None, cache: SinkCache | None = None) -> np.ndarray:
    """Per-token NLL [N-1] of tokens[1:] (entry i: NLL of tokens[i+1]) under a cache of `sinks` first tokens
    plus the `window` most recent ones; window=None keeps everything (dense attention). `cache`: an empty
    cache to teacher-force through instead (e.g. the static ring variant)."""
    device = model.get_input_embeddings().weight.device
    ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=device)
    n_tok = int(ids.shape[0])
    kw = cache_kwarg(model)
    cache = cache if cache is not None else SinkCache(model, sinks, window, adapter=adapter)
    nll = np.empty(n_tok - 1, dtype=np.float64)
    for t in range(n_tok - 1):  # the last token predicts nothing, so it is never decoded
        with decode_attention(cache):
            out = model(input_ids=ids[None, t : t + 1], use_cache=True, **{kw: cache})
        logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        nll[t] = -float(logp[ids[t + 1]])
        if progress is not None:
            progress(1)
    return nll
