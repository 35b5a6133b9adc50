"""Molmo 2's language model (`molmo2_text`, inside the `molmo2` image-text model): the Llama layout with
- q/k RMSNorms over all heads (`qk_norm_type` "olmo") or per head ("qwen3"), before the rotary embedding;
- two rotary tables, the scaled one on the layers `rope_scaling_layers` lists and the unscaled one (the same theta)
  on the others (`rotary_emb`, `rotary_emb_unscaled`);
- with `norm_after`, OLMo 2's post-norm residual (each branch's output normed) instead of pre-norms."""

import torch

from sinktrain.stream.families.base import FamilyAdapter


class Molmo2TextAdapter(FamilyAdapter):
    family = "molmo2"
    model_types = ("molmo2_text",)

    @property
    def qk_norm_across_heads(self):
        return self.config.qk_norm_type == "olmo"

    def qk_norm(self, attn, q, k):
        return (attn.q_norm(q), attn.k_norm(k)) if self.config.qk_norm_type == "qwen3" else (q, k)

    def rotary_kinds(self):
        return list(self.backbone.rope_types)  # "scaled" / "unscaled" per layer

    def cos_sin(self, positions, dtype, kind=None):
        if kind != "unscaled" or positions.numel() == 0:
            return super().cos_sin(positions, dtype, None if kind == "scaled" else kind)
        probe = torch.empty(0, dtype=dtype, device=positions.device)
        cos, sin = self.backbone.rotary_emb_unscaled(probe, positions[None])
        return cos[0], sin[0]

    def attention_input(self, layer, x):
        return x if self.config.norm_after else layer.input_layernorm(x)

    def residual(self, layer, x, attn_out):
        if not self.config.norm_after:
            return super().residual(layer, x, attn_out)
        x = x + layer.input_layernorm(layer.self_attn.o_proj(attn_out))
        return x + layer.post_attention_layernorm(self.mlp(layer, x))
