"""AFMoE (Arcee Trinity): the Llama layout with
- an RMSNorm per head on q and k;
- rotary on the sliding-window layers only, none (NoPE) on the full-attention layer of every four;
- the attention output gated per channel, times sigmoid(`gate_proj` of the normed input), before `o_proj`;
- a norm before and after each branch (`input_layernorm` / `post_attention_layernorm`, `pre_mlp_layernorm` /
  `post_mlp_layernorm`);
- with `mup_enabled`, embeddings times sqrt(hidden_size);
- a mixture of routed plus shared experts after `num_dense_layers` dense ones."""

import torch

from sinktrain.stream.families.base import FamilyAdapter


class AfmoeAdapter(FamilyAdapter):
    family = "afmoe"
    model_types = ("afmoe",)
    mlp_takes_batches = True

    def embed(self, ids):
        x = super().embed(ids)
        return x * self.config.hidden_size**0.5 if self.config.mup_enabled else x

    def qk_norm(self, attn, q, k):
        return attn.q_norm(q), attn.k_norm(k)

    def rotary_kinds(self):
        return [None if attn.is_local_attention else "nope" for attn in map(self.attention, self.layers)]

    def residual(self, layer, x, attn_out):
        attn = layer.self_attn
        gate = torch.sigmoid(attn.gate_proj(layer.input_layernorm(x)))
        x = x + layer.post_attention_layernorm(attn.o_proj(attn_out * gate))
        return x + layer.post_mlp_layernorm(self.mlp(layer, layer.pre_mlp_layernorm(x)))
