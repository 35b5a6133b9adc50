"""OLMo 2: no norm before attention or MLP; an RMSNorm after each instead, on the branch before it joins the
residual (`post_attention_layernorm`, `post_feedforward_layernorm`), and an RMSNorm over the whole query and key
projections (all heads at once, not per head) before the rotary embedding."""

from sinktrain.stream.families.base import FamilyAdapter


class Olmo2Adapter(FamilyAdapter):
    family = "olmo2"
    model_types = ("olmo2",)
    qk_norm_across_heads = True

    def attention_input(self, layer, x):
        return x

    def residual(self, layer, x, attn_out):
        x = x + layer.post_attention_layernorm(layer.self_attn.o_proj(attn_out))
        return x + layer.post_feedforward_layernorm(self.mlp(layer, x))
