"""Adept Persimmon-8B (`persimmon`), also the language model of Fuyu-8B (`fuyu`, image_text.py): GPT-NeoX's packed
per-head q/k/v under Llama's names, LayerNorms, a LayerNorm per head on q and k (before the rotary embedding),
partial rotary applied by the attention module itself (the model's apply_rotary_pos_emb sees only the rotary dims),
and a sequential residual."""

from sinktrain.stream.families.base import FamilyAdapter


class PersimmonAdapter(FamilyAdapter):
    family = "persimmon"
    model_types = ("persimmon",)
    rotary_on_leading_slice = True

    def qkv(self, layer, x):
        attn = layer.self_attn
        fused = attn.query_key_value(layer.input_layernorm(x)).view(x.shape[0], self.num_heads, 3, self.head_dim)
        q, k, v = fused.unbind(2)
        if attn.qk_layernorm:
            q, k = attn.q_layernorm(q), attn.k_layernorm(k)
        return q, k, v

    def residual(self, layer, x, attn_out):
        x = x + layer.self_attn.dense(attn_out)
        return x + self.mlp(layer, layer.post_attention_layernorm(x))

    def final_norm(self, x):
        return self.backbone.final_layernorm(x)
