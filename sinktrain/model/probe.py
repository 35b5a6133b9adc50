"""Attention probabilities out of a model, for sink statistics (training's sink score, the evaluator's plots).

sdpa and flash kernels never materialise attention weights, so the probe switches the model to transformers'
eager attention for the one forward pass and switches it back. The sink variants (softmax1, logit) run SDPA too;
they switch to their own eager formula (`EAGER_ATTN_IMPLEMENTATION`), which returns the weights.
"""

from __future__ import annotations

import contextlib

import torch

from sinktrain.model import sink_gptneox as attention


@contextlib.contextmanager
def eager_attention(model):
    cfg = model.config
    old = cfg._attn_implementation
    if old in attention.EAGER_ATTN_IMPLEMENTATION:
        cfg._attn_implementation = attention.EAGER_ATTN_IMPLEMENTATION[old]
    elif old not in attention.EAGER_ATTN_IMPLEMENTATION.values():
        cfg._attn_implementation = "eager"
    try:
        yield model
    finally:
        cfg._attn_implementation = old


@contextlib.contextmanager
def no_lasting_hooks(model):
    """Take off the forward hooks a forward leaves behind. transformers installs its output-capturing hooks on
    the first forward that asks for attentions, keeps them, and marks the model as hooked. A block compiled after
    that traces the hooks into its graph and takes its parameters in another order, so it fires its gradient hooks
    in another order: during training only rank 0 probes, and DeepSpeed reduces in hook order (docs/train.md)."""
    flag = "_output_capturing_hooks_installed"
    before = {m: (set(m._forward_hooks), hasattr(m, flag)) for m in model.modules()}
    try:
        yield model
    finally:
        for m, (hooks, flagged) in before.items():
            for key in set(m._forward_hooks) - hooks:
                del m._forward_hooks[key]
                m._forward_hooks_with_kwargs.pop(key, None)
                m._forward_hooks_always_called.pop(key, None)
            if not flagged and flag in vars(m):
                delattr(m, flag)


@torch.no_grad()
def attention_probs(model, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """Per-layer attention probabilities [batch, heads, q, k] (fp32) of a causal forward over `input_ids`."""
    with eager_attention(model), no_lasting_hooks(model):
        out = model(input_ids=input_ids, output_attentions=True, use_cache=False)
    return [a.float() for a in out.attentions]


def sink_score(model, input_ids: torch.Tensor, first_k: int = 1) -> torch.Tensor:
    """Mean attention weight on the first `first_k` positions, per layer [num_layers].

    Averaged over batch, heads and the query positions that can see beyond the first k keys
    (q >= first_k), so early queries that can only look at position 0 do not inflate it.
    """
    scores = []
    for a in attention_probs(model, input_ids):
        on_first = a[..., first_k:, :first_k].sum(-1)  # [b, h, q - k]
        scores.append(on_first.mean())
    return torch.stack(scores)
