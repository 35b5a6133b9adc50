"""Falcon (7B, 40B, 180B; `falcon`), one of the paper's four streamed families (Figure 3).

One fused q/k/v projection whose layout depends on the generation (split with the model's own `_split_heads`):
- Falcon-7B: multi-query (one K/V head), attention and MLP in parallel from one LayerNorm;
- Falcon-40B / 180B (`new_decoder_architecture`): K/V groups, each key broadcast to its group's query heads, and
  two LayerNorms (`ln_attn`, `ln_mlp`) feeding the two parallel branches;
- the original RW layout: multi-head, sequential residual.
Rotary on the whole head; the final LayerNorm is `ln_f`. Falcon-RW with ALiBi instead of rotary is refused."""

from sinktrain.stream.families.base import BloomStyleLayout, FamilyAdapter


class FalconAdapter(BloomStyleLayout, FamilyAdapter):
    family = "falcon"
    model_types = ("falcon",)

    def __init__(self, model):
        super().__init__(model)
        # K/V heads as _split_heads returns them: one (multi-query) or every query head (the new architecture
        # broadcasts each group's key and value to its query heads; the classic layout is multi-head).
        c = self.config
        self.num_kv_heads = 1 if c.multi_query and not c.new_decoder_architecture else self.num_heads

    @classmethod
    def unsupported(cls, config) -> str | None:
        if getattr(config, "alibi", False):
            return ("the model uses ALiBi position biases instead of rotary embeddings (Falcon-RW), which the "
                    "streaming evaluator does not implement; use a rotary Falcon (7B, 40B, 180B)")
        return None

    def embed(self, ids):
        return self.backbone.word_embeddings(ids)

    def _two_norms(self) -> bool:
        return bool(self.config.new_decoder_architecture and self.config.num_ln_in_parallel_attn == 2)

    def attention_input(self, layer, x):
        return layer.ln_attn(x) if self._two_norms() else layer.input_layernorm(x)

    def qkv(self, layer, x):
        attn = layer.self_attention
        q, k, v = attn._split_heads(attn.query_key_value(self.attention_input(layer, x))[None])
        return q[0], k[0], v[0]

    def residual(self, layer, x, attn_out):
        c = self.config
        attn_out = layer.self_attention.dense(attn_out)
        if c.new_decoder_architecture or c.parallel_attn:  # both branches read x, their sum is added to it
            mlp_in = layer.ln_mlp(x) if self._two_norms() else layer.input_layernorm(x)
            return x + attn_out + self.mlp(layer, mlp_in)
        x = x + attn_out
        return x + self.mlp(layer, layer.post_attention_layernorm(x))
