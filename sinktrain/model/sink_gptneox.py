"""GPT-NeoX with a sink built into attention: softmax-off-by-one (Zero Sink) and a learned per-head sink logit.

This file is self-contained (torch + transformers only) on purpose: `sinktrain export` copies it verbatim into
softmax1/logit model folders, whose config.json `auto_map` points at it, so
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` works without sinktrain installed.
Inside sinktrain, `import sinktrain.model` registers the same classes, so no remote code is needed there.

Both are "softmax over the real keys plus one extra column that carries no value":
  softmax1: the extra logit is 0, so weight_i = exp(x_i) / (1 + sum_j exp(x_j))   (Miller 2023; paper's Zero Sink)
  logit:    the extra logit is a learned scalar b_h per head per layer            (gpt-oss style)
With b_h = -inf the extra column gets zero weight and `logit` is exactly vanilla attention (bit for bit
through the eager formula, up to float rounding through SDPA).

They are registered with transformers' AttentionInterface (and a mask builder) under the names below, so a
GPT-NeoX model whose config says `attn_implementation="sinktrain_softmax1"` routes every layer through them;
nothing else in the stock model changes. Those run `scaled_dot_product_attention` with one extra all-zero
key/value (see `_sink_sdpa`; no mask tensor for an unpadded batch); the `*_eager` names run the explicit formula,
which materialises the [B, H, q, k] weights and returns them (the attention probe, `output_attentions=True`).
`SinkGPTNeoXForCausalLM` is that model: a stock GPT-NeoX plus, for `logit`, one learned scalar per head per layer.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface, AutoConfig, AutoModelForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask, sdpa_mask

SOFTMAX1 = "sinktrain_softmax1"
LOGIT = "sinktrain_logit"
ATTN_IMPLEMENTATION = {"softmax1": SOFTMAX1, "logit": LOGIT}
# The same attention through the eager formula, which also returns the weights [B, H, q, k]. The default
# names above run SDPA (weights None) unless a forward asks for `output_attentions`; the probe switches a
# model to these names for its forward so the weights come out either way.
EAGER_ATTN_IMPLEMENTATION = {SOFTMAX1: f"{SOFTMAX1}_eager", LOGIT: f"{LOGIT}_eager"}


def softmax_with_extra_logit(scores: torch.Tensor, extra: torch.Tensor | float) -> torch.Tensor:
    """Softmax over the last dim of `scores` with one more logit `extra` whose column is then dropped.

    `extra` broadcasts against scores[..., :1] (e.g. shape [heads, 1, 1] for per-head logits).
    Computed as a softmax over the concatenation, which is numerically stable (max-subtracted).
    """
    extra_col = torch.as_tensor(extra, dtype=scores.dtype, device=scores.device).expand_as(scores[..., :1])
    return torch.softmax(torch.cat([scores, extra_col], dim=-1), dim=-1)[..., :-1]


def _sink_attention(module, query, key, value, attention_mask, scaling, extra, dropout=0.0):
    # Same shapes and order of operations as transformers' eager attention, so `logit` with b = -inf
    # reproduces it exactly. Scores in fp32 as eager's softmax does (fp64 stays fp64, for exactness tests).
    acc = torch.promote_types(query.dtype, torch.float32)
    scores = torch.matmul(query, key.transpose(2, 3)).to(acc) * scaling
    q_len, k_len = query.shape[-2], key.shape[-2]
    if attention_mask is None and q_len > 1:  # no mask: causal, as SDPA's is_causal (see _sink_sdpa)
        attention_mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril()[None, None]
    if attention_mask is not None and attention_mask.dtype == torch.bool:  # True = attend
        attention_mask = torch.zeros(attention_mask.shape, dtype=acc, device=query.device).masked_fill_(
            ~attention_mask, torch.finfo(acc).min)
    if attention_mask is not None:
        scores = scores + attention_mask[..., :k_len].to(acc)
    weights = softmax_with_extra_logit(scores, extra).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return out, weights


def _mask_with_extra_column(attention_mask, q_len: int, k_len: int, dtype, device) -> torch.Tensor | None:
    """Additive mask [b, 1, q, k + 1] in `dtype`: the causal/padding part for the k real keys, then 0 (visible
    to every query) for the extra key.

    `attention_mask` is transformers' additive float mask ([b, 1, q, >= k], only the first k columns apply, as
    in the eager formula) or a bool mask (True = attend); None (a single decoding query: every key visible)
    needs no mask. The rows are allocated 8-aligned and sliced, so CUDA's memory-efficient kernel need not pad a
    copy.
    """
    if attention_mask is None:
        return None
    width = (k_len + 1 + 7) // 8 * 8
    real = attention_mask[..., :k_len]
    mask = torch.zeros(*real.shape[:-1], width, dtype=dtype, device=device)[..., : k_len + 1]
    if real.dtype == torch.bool:
        mask[..., :k_len].masked_fill_(~real, float("-inf"))
    else:
        mask[..., :k_len] = real
        if real.dtype != dtype:
            # fp32's finfo.min overflows to -inf in bf16/fp16; keep masked entries finite as the eager path does
            mask.clamp_(min=torch.finfo(dtype).min)
    return mask


def _sink_sdpa(module, query, key, value, attention_mask, scaling, sink_logit=None, dropout=0.0):
    """The sink attention through `scaled_dot_product_attention`: never materialises [B, H, q, k] scores here
    (whether the kernel does is up to the backend SDPA picks).

    One extra key and value, both all-zero, join the real ones and every query sees that key. Its score is
    q . 0 = 0, so softmax over the k + 1 columns is softmax-with-extra-logit 0 (softmax1) and the zero value adds
    nothing to the output.

    No mask (transformers' SDPA mask builder, registered for these names, returns None for plain causal
    attention; None then means SDPA's `is_causal`, aligned top-left, and for a single query: every key): the
    extra key goes first and an all-zero dummy query too, so SDPA's own causal mask shows query i the extra key
    plus keys 0..i and the dummy's output is dropped. Without a mask tensor SDPA may pick its flash kernels,
    which take no mask: training runs this path. A given mask (padding, a cache) gets one more, visible column.

    For `logit` the extra score must be b_h per head. Putting b_h in the mask's extra column would make the
    mask per head ([B, H, q, k + 1]) and require grad: SDPA then falls back to its math path on CPU (its
    flash kernel takes no mask that requires grad), and the CUDA kernels that do support a mask gradient
    compute it full size, [B, H, q, k + 1], so memory is O(T^2) again. Instead the head dim is widened by one
    column: queries get a 1 there, real keys a 0, the extra key b_h / scaling. The extra score is then exactly
    scaling * (1 * b_h / scaling) = b_h, real scores are unchanged, the mask stays head-independent without
    grad, and b_h's gradient comes back through dK, which every backend computes. The widened dim is padded
    with zeros to a multiple of 8 (and V to the same dim) so the fast kernels' alignment rules still hold.
    """
    b, h, q_len, d = query.shape
    k_len = key.shape[-2]
    dtype = query.dtype
    key, value = key.to(dtype), value.to(dtype)
    causal = attention_mask is None and q_len > 1
    mask = None if causal else _mask_with_extra_column(attention_mask, q_len, k_len, dtype, query.device)
    extra_value = value.new_zeros(b, value.shape[1], 1, d)
    if sink_logit is None:
        extra_key = key.new_zeros(b, key.shape[1], 1, d)
    else:
        pad = (d // 8 + 1) * 8 - d  # >= 1 new columns; column d carries the sink logit
        query = torch.cat([query, query.new_ones(b, h, q_len, 1), query.new_zeros(b, h, q_len, pad - 1)], dim=-1)
        extra = (sink_logit.float() / scaling).to(dtype).view(1, h, 1, 1).expand(b, h, 1, 1)
        extra_key = torch.cat([key.new_zeros(b, h, 1, d), extra, key.new_zeros(b, h, 1, pad - 1)], dim=-1)
        key = torch.nn.functional.pad(key, (0, pad))
        value, extra_value = (torch.nn.functional.pad(x, (0, pad)) for x in (value, extra_value))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    dropout = dropout if module.training else 0.0
    if causal:
        query = torch.cat([query.new_zeros(b, h, 1, query.shape[-1]), query], dim=2)
        key, value = torch.cat([extra_key, key], dim=2), torch.cat([extra_value, value], dim=2)
        out = sdpa(query, key, value, dropout_p=dropout, is_causal=True, scale=scaling)[:, :, 1:]
    else:
        key, value = torch.cat([key, extra_key], dim=2), torch.cat([value, extra_value], dim=2)
        out = sdpa(query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)
    return out[..., :d].transpose(1, 2).contiguous(), None


def softmax1_attention_eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    return _sink_attention(module, query, key, value, attention_mask, scaling, 0.0, dropout)


def logit_attention_eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    # module.sink_logit: [num_heads] learned parameter added by SinkGPTNeoXForCausalLM.
    extra = module.sink_logit.float().view(1, -1, 1, 1)
    return _sink_attention(module, query, key, value, attention_mask, scaling, extra, dropout)


def softmax1_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """SDPA; the eager formula when the forward asked for the attention weights."""
    if kwargs.get("output_attentions"):
        return softmax1_attention_eager(module, query, key, value, attention_mask, scaling, dropout)
    return _sink_sdpa(module, query, key, value, attention_mask, scaling, None, dropout)


def logit_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """SDPA; the eager formula when the forward asked for the attention weights."""
    if kwargs.get("output_attentions"):
        return logit_attention_eager(module, query, key, value, attention_mask, scaling, dropout)
    return _sink_sdpa(module, query, key, value, attention_mask, scaling, module.sink_logit, dropout)


def register() -> None:
    """Make the functions, and the mask each expects, known to transformers. Idempotent. The SDPA names get
    transformers' SDPA mask (None for plain causal attention, else bool), the eager names its additive mask."""
    for name, fn, mask in [(SOFTMAX1, softmax1_attention, sdpa_mask), (LOGIT, logit_attention, sdpa_mask),
                           (EAGER_ATTN_IMPLEMENTATION[SOFTMAX1], softmax1_attention_eager, eager_mask),
                           (EAGER_ATTN_IMPLEMENTATION[LOGIT], logit_attention_eager, eager_mask)]:
        AttentionInterface.register(name, fn)
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, mask)


register()


class SinkGPTNeoXConfig(GPTNeoXConfig):
    """GPT-NeoX config plus `sink_kind` (softmax1 | logit)."""

    model_type = "sinktrain_gpt_neox"

    def __init__(self, sink_kind: str = "softmax1", **kwargs):
        self.sink_kind = sink_kind
        super().__init__(**kwargs)


class SinkGPTNeoXForCausalLM(GPTNeoXForCausalLM):
    """GPT-NeoX whose attention softmax has a sink column."""

    config_class = SinkGPTNeoXConfig

    def __init__(self, config: SinkGPTNeoXConfig):
        super().__init__(config)
        if config.sink_kind not in ATTN_IMPLEMENTATION:
            raise ValueError(f"sink_kind must be softmax1 or logit, got {config.sink_kind!r}")
        if config.sink_kind == "logit":
            for layer in self.gpt_neox.layers:
                layer.attention.sink_logit = nn.Parameter(torch.zeros(config.num_attention_heads))
        # Set after the base class has picked its default implementation: every layer reads
        # config._attn_implementation at call time.
        self.config._attn_implementation = ATTN_IMPLEMENTATION[config.sink_kind]
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if hasattr(module, "sink_logit"):
            nn.init.zeros_(module.sink_logit)


AutoConfig.register(SinkGPTNeoXConfig.model_type, SinkGPTNeoXConfig, exist_ok=True)
AutoModelForCausalLM.register(SinkGPTNeoXConfig, SinkGPTNeoXForCausalLM, exist_ok=True)
