"""Laguna (`laguna`) and Mellum (`mellum`, JetBrains, built on Laguna's layer): the Llama layout (pre-norms) with
- query heads that may differ per layer (`num_attention_heads_per_layer`; the evaluator reads them off each
  layer's tensors);
- an RMSNorm on each head's query and key (before the rotary embedding);
- in Laguna, the attention output gated by softplus(`g_proj` of the normed input), per head or per channel
  (`gating`), before `o_proj`;
- a rotary set per layer type (Gemma 3's module called with the layer type) on part of each head, and sliding
  windows on the layers `layer_types` marks;
- a dense first layer, then routed plus shared experts (`mlp_layer_types`)."""

import torch.nn.functional as F

from sinktrain.stream.families.base import FamilyAdapter


class LagunaAdapter(FamilyAdapter):
    family = "laguna"
    model_types = ("laguna", "mellum")
    mlp_takes_batches = True
    rotary_per_layer_type = True

    def qkv(self, layer, x):
        attn, n, d = layer.self_attn, x.shape[0], self.head_dim
        h = layer.input_layernorm(x)
        q, k, v = (proj(h).view(n, -1, d) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        return attn.q_norm(q), attn.k_norm(k), v

    def residual(self, layer, x, attn_out):
        attn = layer.self_attn
        if hasattr(attn, "g_proj"):
            gate = F.softplus(attn.g_proj(layer.input_layernorm(x)).float()).to(attn_out.dtype)
            if attn.gate_per_head:
                attn_out = (attn_out.view(x.shape[0], -1, self.head_dim) * gate[..., None]).flatten(1)
            else:
                attn_out = attn_out * gate
        x = x + attn.o_proj(attn_out)
        return x + self.mlp(layer, layer.post_attention_layernorm(x))
