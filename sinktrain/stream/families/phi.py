"""Phi-1/1.5/2 (`phi`): one LayerNorm feeds both branches, added in parallel (x + dense(attn) + mlp(ln(x))),
q/k/v and the output projection (`dense`) carry biases, an optional LayerNorm per head on q and k, partial
rotary applied by the attention module itself (the model's apply_rotary_pos_emb sees only the rotary dims), and
a final LayerNorm named `final_layernorm`."""

from sinktrain.stream.families.base import FamilyAdapter


class PhiAdapter(FamilyAdapter):
    family = "phi"
    model_types = ("phi",)
    rotary_on_leading_slice = True

    def qk_norm(self, attn, q, k):
        return (attn.q_layernorm(q), attn.k_layernorm(k)) if attn.qk_layernorm else (q, k)

    def residual(self, layer, x, attn_out):
        return x + layer.self_attn.dense(attn_out) + self.mlp(layer, layer.input_layernorm(x))

    def final_norm(self, x):
        return self.backbone.final_layernorm(x)
