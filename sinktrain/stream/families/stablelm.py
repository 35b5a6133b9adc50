"""StableLM (StableLM-2, StableLM-3B-4E1T, `stablelm`): the Llama layout with LayerNorms, optional q/k/v biases,
an optional LayerNorm per head on q and k, partial rotary applied by the attention module itself (the model's
apply_rotary_pos_emb sees only the rotary dims), and optionally Phi's parallel residual with one norm."""

from sinktrain.stream.families.base import FamilyAdapter


class StableLmAdapter(FamilyAdapter):
    family = "stablelm"
    model_types = ("stablelm",)
    rotary_on_leading_slice = True

    def qk_norm(self, attn, q, k):  # each per-head norm splits dim 1, the heads of our [n, heads, d] too
        return (attn.q_layernorm(q), attn.k_layernorm(k)) if attn.qk_layernorm else (q, k)

    def residual(self, layer, x, attn_out):
        if not self.config.use_parallel_residual:
            return super().residual(layer, x, attn_out)
        return x + layer.self_attn.o_proj(attn_out) + self.mlp(layer, layer.input_layernorm(x))
