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


@torch.no_grad()
def sink_dependence(model, input_ids: torch.Tensor, hidden: int = 1, from_query: int | None = None,
                    sliding_window: int | None = None, every_layer: bool = False) -> float:
    """How much a model leans on its first `hidden` positions, in nats: the mean next-token NLL predicted by the
    queries at and after `from_query` (default: the second half) with those positions hidden from them, minus the
    same NLL with them visible.

    Only those later queries lose the positions: the earlier ones still see them, so the later queries meet keys
    and values computed with the sink present, as they are in a streaming cache after the cache evicted it
    (window attention, StreamingLLM's 0+C; tests check this against evicting it from transformers' own cache).
    About 0 where no sink formed; SmolLM2-135M pays 0.6-0.9 on 512-token windows (docs/train.md). Any causal
    LM that takes transformers' additive [b, 1, q, k] attention mask; `input_ids` is [b, T], T > from_query > hidden.

    A given mask replaces the one the model would build, sliding window included, so a model with a window
    narrower than T needs it here: `sliding_window` W keeps each query's last W keys, its own included, in the
    layers transformers marks "sliding_attention" (a mask per layer type), or in every layer (one mask) with
    `every_layer`.
    """
    t = input_ids.shape[-1]
    from_query = t // 2 if from_query is None else from_query
    if not 0 < hidden < from_query < t:
        raise ValueError(f"sink_dependence needs 0 < hidden ({hidden}) < from_query ({from_query}) < length ({t})")
    q = torch.arange(t, device=input_ids.device)[:, None]
    k = torch.arange(t, device=input_ids.device)[None, :]
    dtype = model.get_input_embeddings().weight.dtype
    targets = input_ids[:, from_query + 1:]  # what the queries from_query .. t-2 predict

    def additive(visible: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(t, t, dtype=dtype, device=input_ids.device).masked_fill_(~visible, torch.finfo(dtype).min)
        return mask[None, None].expand(len(input_ids), 1, t, t)

    def nll(visible: torch.Tensor) -> torch.Tensor:
        mask = additive(visible)
        if sliding_window is not None:
            band = additive(visible & (k > q - sliding_window))
            mask = band if every_layer else {"full_attention": mask, "sliding_attention": band}
        out = model(input_ids=input_ids, attention_mask=mask, use_cache=False, logits_to_keep=t - from_query)
        logits = out.logits[:, :-1]
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        return -logp.gather(-1, targets[..., None]).mean()

    causal = k <= q
    return float(nll(causal & ~((k < hidden) & (q >= from_query))) - nll(causal))
