"""GPT-NeoX: Pythia and sinktrain exports (packed per-head q/k/v, partial rotary, parallel residual with two
LayerNorms, untied head; sinktrain's softmax1/logit variants add a value-less column to the softmax)."""

from sinktrain.stream.families.base import FamilyAdapter


class GPTNeoXAdapter(FamilyAdapter):
    family = "gpt_neox"
    model_types = ("gpt_neox", "sinktrain_gpt_neox")

    @property
    def backbone(self):
        return self.model.gpt_neox

    def attention(self, layer):
        return layer.attention

    def embed(self, ids):
        return self.backbone.embed_in(ids)

    def qkv(self, layer, x):
        qkv = layer.attention.query_key_value(layer.input_layernorm(x))
        return qkv.view(x.shape[0], self.num_heads, 3 * self.head_dim).chunk(3, dim=-1)

    def residual(self, layer, x, attn_out):
        attn_out = layer.attention.dense(attn_out)
        if self.config.use_parallel_residual:
            return x + attn_out + self.mlp(layer, layer.post_attention_layernorm(x))
        x = x + attn_out
        return x + self.mlp(layer, layer.post_attention_layernorm(x))

    def final_norm(self, x):
        return self.backbone.final_layer_norm(x)

    def softmax_sink_kind(self):
        kind = getattr(self.config, "sink_kind", None)
        return kind if kind in ("softmax1", "logit") else "none"

    def sink_logit(self, layer):
        return layer.attention.sink_logit
