"""Apertus (Swiss AI, 8B and 70B): the Llama layout with its pre-norms named `attention_layernorm` and
`feedforward_layernorm`, an RMSNorm on each head's query and key before the rotary embedding, and an xIELU MLP
without a gate (the MLP module's business). Apertus 1.5's language model (`apertus1p5_text`) is the same; its
image-audio-text wrapper (`apertus1p5`) streams text through it (image_text.py)."""

from sinktrain.stream.families.base import FamilyAdapter


class ApertusAdapter(FamilyAdapter):
    family = "apertus"
    model_types = ("apertus", "apertus1p5_text")

    def attention_input(self, layer, x):
        return layer.attention_layernorm(x)

    def qk_norm(self, attn, q, k):
        return attn.q_norm(q), attn.k_norm(k)

    def residual(self, layer, x, attn_out):
        x = x + layer.self_attn.o_proj(attn_out)
        return x + self.mlp(layer, layer.feedforward_layernorm(x))
