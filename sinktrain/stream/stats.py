"""Attention-sink statistics from a plain causal forward pass (the model's own attention probabilities)."""

from __future__ import annotations

import numpy as np
import torch

from sinktrain.model.probe import attention_probs, sink_dependence

# Hiding positions with a custom [b, 1, q, k] attention mask is evicting them from the model's own KV cache for
# every family stream-eval supports (tests/stream/test_dependence.py checks each one's tiny model) except these:
# BLOOM fails on a 4D mask (it builds ALiBi from a 2D one), and so do the Qwen Omni thinkers (their multimodal
# position code reads the mask); VideoLLaMA 3 takes one and ignores it (hiding changes nothing: the dependence comes
# out exactly 0); DeepSeek-V3.2 and GLM-5 fail the evicted forward (their sparse-attention indexer keeps keys of
# its own), so the check cannot run. They get no dependence.
NO_DEPENDENCE_MODEL_TYPES = frozenset({"bloom", "video_llama_3", "qwen2_5_omni_thinker", "qwen3_omni_moe_thinker",
                                       "deepseek_v32", "glm_moe_dsa"})


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


def _narrow_layers(adapter, n: int) -> list[tuple[int, str]]:
    """(window, layer type) of each layer whose window drops some of `n` keys (a query's own among them)."""
    windows = type(adapter).sliding_windows(adapter.config)
    types = getattr(adapter.config, "layer_types", None) or ["sliding_attention"] * len(windows)
    return [(w, t) for w, t in zip(windows, types) if w is not None and w < n]


def no_dependence_reason(model, adapter, n: int, hidden: int, length_flag: str = "--attention_tokens") -> str | None:
    """Why first_tokens_dependence gives None over `n` tokens, or None when it gives a value. `length_flag`: the
    option that sets n, named in the fix."""
    if model.config.model_type in NO_DEPENDENCE_MODEL_TYPES:
        return f"it is not checked for model type {model.config.model_type!r} (sinktrain/stream/stats.py says why)"
    if n // 2 <= hidden:
        return f"{n} tokens are too few to hide {hidden} from the later half"
    narrow = _narrow_layers(adapter, n)
    widths = sorted({w for w, _ in narrow})
    if len(widths) > 1:  # the masks go by layer type, one window for all sliding layers
        return (f"sliding-window layers of {len(widths)} widths ({', '.join(map(str, widths))}) are narrower than "
                f"the {n} probe tokens; {length_flag} {widths[0]} gives it")
    if not type(adapter).window_on_every_layer:
        for w, kind in narrow:
            if kind != "sliding_attention":  # Llama 4's chunks: not a band
                return (f"{kind} layers (span {w}) are narrower than the {n} probe tokens; {length_flag} {w} gives "
                        f"it")
    return None


@torch.no_grad()
def first_tokens_dependence(model, adapter, tokens, hidden: int) -> float | None:
    """model.probe.sink_dependence over `tokens` ([n]): the nats the second half loses with the first `hidden`
    positions hidden from it, the model's sliding window (of `adapter`'s family) kept in its sliding layers. None
    where no_dependence_reason names a reason: a model type in NO_DEPENDENCE_MODEL_TYPES, fewer than 2 * hidden + 2
    tokens, or narrower layers that are not one window's sliding layers."""
    ids = _as_batch(model, tokens)
    n = ids.shape[-1]
    if no_dependence_reason(model, adapter, n, hidden) is not None:
        return None
    narrow = _narrow_layers(adapter, n)  # one width, no_dependence_reason made sure
    return sink_dependence(model, ids, hidden=hidden, sliding_window=narrow[0][0] if narrow else None,
                           every_layer=type(adapter).window_on_every_layer)
