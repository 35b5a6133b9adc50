"""Sliding window with re-computation (the paper's strong but slow baseline).

Token t+1 is predicted from a fresh forward pass over the last C tokens ending at t (positions 0..C-1,
ordinary causal attention, no cache). Tokens with t < C-1 see the whole prefix, so one causal forward over
the first C tokens gives them all. The windows are batched (`batch_size` windows per forward pass).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def recompute_nll(model, tokens, cache: int, batch_size: int = 64, progress=None) -> np.ndarray:
    """Per-token NLL [N-1] of tokens[1:] where entry i is predicted from tokens[max(0, i-cache+1) .. i]."""
    device = model.get_input_embeddings().weight.device
    ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=device)
    n_tok = int(ids.shape[0])
    nll = np.empty(n_tok - 1, dtype=np.float64)
    head = min(cache, n_tok) - 1  # predictions made from a prefix shorter than the window
    if head > 0:
        logits = model(input_ids=ids[None, : head + 1], use_cache=False).logits[0, :head].float()
        nll[:head] = F.cross_entropy(logits, ids[1 : head + 1], reduction="none").double().cpu().numpy()
        if progress is not None:
            progress(head)
    # Full windows: ending at t = cache-1 .. n_tok-2.
    windows = ids[: n_tok - 1].unfold(0, cache, 1) if n_tok - 1 >= cache else ids[:0].view(0, cache)
    for i in range(0, windows.shape[0], batch_size):
        batch = windows[i : i + batch_size]
        # Only the last position's logits are needed: skip the LM head on the other C-1 (its cost dominates
        # small models).
        logits = model(input_ids=batch, use_cache=False, logits_to_keep=1).logits[:, -1].float()
        t_last = cache - 1 + i + torch.arange(batch.shape[0], device=device)
        nll[t_last.cpu().numpy()] = F.cross_entropy(logits, ids[t_last + 1], reduction="none").double().cpu().numpy()
        if progress is not None:
            progress(batch.shape[0])
    return nll
