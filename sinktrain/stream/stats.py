"""Attention-sink statistics from a plain causal forward pass (the model's own attention probabilities)."""

from __future__ import annotations

import numpy as np
import torch

from sinktrain.model.probe import attention_probs, sink_dependence

# The model types whose forward takes a custom [b, 1, q, k] attention mask as given, checked against evicting the
# same positions from their own KV cache (tests/model/test_sink_dependence.py); the others get no dependence.
DEPENDENCE_MODEL_TYPES = ("gpt_neox", "sinktrain_gpt_neox", "llama")


def _as_batch(model, tokens) -> torch.Tensor:
    ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=model.get_input_embeddings().weight.device)
    return ids[None] if ids.dim() == 1 else ids


@torch.no_grad()
def attention_sink_stats(model, tokens, first_k: int = 4) -> torch.Tensor:
    """Mean attention weight on the first `first_k` positions, per layer and head: [num_layers, num_heads] (NaN pads
    the layers with fewer heads where the count differs by layer, as in Laguna).

    One causal forward over `tokens` ([n] or [batch, n], at most the model's context); averaged over batch and
    over the queries q >= first_k (earlier queries can only look at the first tokens and would inflate it).
    """
    ids = _as_batch(model, tokens)
    if first_k < 1 or ids.shape[-1] <= first_k:
        raise ValueError(f"first_k must be >= 1 and below the number of tokens ({ids.shape[-1]}), got {first_k}")
    probs = attention_probs(model, ids)  # per layer [b, h, q, k]
    rows = [p[:, :, first_k:, :first_k].sum(-1).mean(dim=(0, 2)) for p in probs]
    width = max(r.numel() for r in rows)
    return torch.stack([torch.nn.functional.pad(r, (0, width - r.numel()), value=float("nan")) for r in rows]).cpu()


@torch.no_grad()
def attention_maps(model, tokens) -> list[np.ndarray]:
    """Head-averaged attention probabilities [q, k] per layer for one causal forward (the paper's Fig. 2)."""
    probs = attention_probs(model, _as_batch(model, tokens)[:1])
    return [p[0].mean(0).cpu().numpy() for p in probs]


@torch.no_grad()
def first_tokens_dependence(model, tokens, hidden: int) -> float | None:
    """model.probe.sink_dependence over `tokens` ([n]): the nats the second half loses with the first `hidden`
    positions hidden from it; None for a model type outside DEPENDENCE_MODEL_TYPES or fewer than 2 * hidden + 2
    tokens."""
    ids = _as_batch(model, tokens)
    if model.config.model_type not in DEPENDENCE_MODEL_TYPES or ids.shape[-1] // 2 <= hidden:
        return None
    return sink_dependence(model, ids, hidden=hidden)
