"""Xiaomi MiMo-V2-Flash (`mimo_v2_flash`): the Llama layout with a mixture of experts after a dense first layer and
two kinds of attention layer (`layer_types`):
- sliding-window layers (129 keys, a query's own included, so caches of at most 128) with twice the K/V heads and a
  learned sink logit per head (gpt-oss's kind; the full-attention layers have none: their extra logit is -inf,
  which leaves the softmax exactly as without it);
- full-attention layers with a rotary base of their own (one rotary module called with the layer type).
Every layer rotates the leading third of each head (partial rotary), has values narrower than queries and keys
(`v_head_dim`) and multiplies them by `attention_value_scale`."""

import torch

from sinktrain.stream.families.base import FamilyAdapter, LearnedSinkLogits


class MiMoV2FlashAdapter(LearnedSinkLogits, FamilyAdapter):
    family = "mimo_v2_flash"
    model_types = ("mimo_v2_flash",)
    mlp_takes_batches = True
    rotary_per_layer_type = True

    def __init__(self, model):
        super().__init__(model)
        self.value_dim = int(self.config.v_head_dim)

    def qkv(self, layer, x):
        attn, n = layer.self_attn, x.shape[0]
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(n, self.num_heads, self.head_dim)
        k = attn.k_proj(h).view(n, -1, self.head_dim)  # (K/V heads differ by layer kind)
        v = attn.v_proj(h).view(n, -1, self.value_dim) * attn.v_scale
        return q, k, v

    def sink_logit(self, layer):
        sinks = self.attention(layer).sinks
        if sinks is None:
            return torch.full((self.num_heads,), float("-inf"), device=self.model.device)
        return sinks
