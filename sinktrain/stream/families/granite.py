"""IBM Granite (3.x dense): the Llama layout with four scalars from the config: the embeddings are multiplied by
`embedding_multiplier`, each branch by `residual_multiplier` before it joins the residual, the logits divided by
`logits_scaling`, and the attention scale is `attention_multiplier` (the attention module's `scaling`)."""

from sinktrain.stream.families.base import FamilyAdapter


class GraniteAdapter(FamilyAdapter):
    family = "granite"
    model_types = ("granite",)
    required_config_keys = FamilyAdapter.required_config_keys + (
        "embedding_multiplier", "residual_multiplier", "logits_scaling", "attention_multiplier")

    def embed(self, ids):
        return self.backbone.embed_tokens(ids) * self.config.embedding_multiplier

    def residual(self, layer, x, attn_out):
        m = self.config.residual_multiplier
        x = x + layer.self_attn.o_proj(attn_out) * m
        return x + layer.mlp(layer.post_attention_layernorm(x)) * m

    def logits(self, x):
        return super().logits(x) / self.config.logits_scaling
