"""GPT-NeoX with a sink built into attention: softmax-off-by-one (Zero Sink) and a learned per-head sink logit.

This file is self-contained (torch + transformers only) on purpose: `sinktrain export` copies it verbatim into
softmax1/logit model folders, whose config.json `auto_map` points at it, so
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` works without sinktrain installed.
Inside sinktrain, `import sinktrain.model` registers the same classes, so no remote code is needed there.

Both are "softmax over the real keys plus one extra column that carries no value":
  softmax1: the extra logit is 0, so weight_i = exp(x_i) / (1 + sum_j exp(x_j))   (Miller 2023; paper's Zero Sink)
  logit:    the extra logit is a learned scalar b_h per head per layer            (gpt-oss style)
With b_h = -inf the extra column gets zero weight and `logit` is exactly vanilla attention.

They are registered with transformers' AttentionInterface (and the additive-mask builder) under the names
below, so a GPT-NeoX model whose config says `attn_implementation="sinktrain_softmax1"` routes every layer
through them; nothing else in the stock model changes. `SinkGPTNeoXForCausalLM` is that model: a stock
GPT-NeoX plus, for `logit`, one learned scalar per head per layer.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface, AutoConfig, AutoModelForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

SOFTMAX1 = "sinktrain_softmax1"
LOGIT = "sinktrain_logit"
ATTN_IMPLEMENTATION = {"softmax1": SOFTMAX1, "logit": LOGIT}


def softmax_with_extra_logit(scores: torch.Tensor, extra: torch.Tensor | float) -> torch.Tensor:
    """Softmax over the last dim of `scores` with one more logit `extra` whose column is then dropped.

    `extra` broadcasts against scores[..., :1] (e.g. shape [heads, 1, 1] for per-head logits).
    Computed as a softmax over the concatenation, which is numerically stable (max-subtracted).
    """
    extra_col = torch.as_tensor(extra, dtype=scores.dtype, device=scores.device).expand_as(scores[..., :1])
    return torch.softmax(torch.cat([scores, extra_col], dim=-1), dim=-1)[..., :-1]


def _sink_attention(module, query, key, value, attention_mask, scaling, extra, dropout=0.0):
    # Same shapes and order of operations as transformers' eager attention, so `logit` with b = -inf
    # reproduces it exactly. Scores in fp32 as eager's softmax does.
    scores = torch.matmul(query, key.transpose(2, 3)).float() * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[..., : key.shape[-2]].float()
    weights = softmax_with_extra_logit(scores, extra).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return out, weights


def softmax1_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    return _sink_attention(module, query, key, value, attention_mask, scaling, 0.0, dropout)


def logit_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    # module.sink_logit: [num_heads] learned parameter added by SinkGPTNeoXForCausalLM.
    extra = module.sink_logit.float().view(1, -1, 1, 1)
    return _sink_attention(module, query, key, value, attention_mask, scaling, extra, dropout)


def register() -> None:
    """Make both functions (and the additive float mask they expect) known to transformers. Idempotent."""
    AttentionInterface.register(SOFTMAX1, softmax1_attention)
    AttentionInterface.register(LOGIT, logit_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(SOFTMAX1, eager_mask)
    ALL_MASK_ATTENTION_FUNCTIONS.register(LOGIT, eager_mask)


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
