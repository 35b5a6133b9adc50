"""GLM-4-0414 (`glm4`: GLM-4-9B/32B-0414, GLM-Z1): the first GLM's layer (q/k/v biases, fused gate/up MLP, rotary
on interleaved pairs of the first half of each head's dims) with an RMSNorm on each branch's output before it
joins the residual (`post_self_attn_layernorm`, `post_mlp_layernorm`), besides the usual pre-norms."""

from sinktrain.stream.families.base import FamilyAdapter


class Glm4Adapter(FamilyAdapter):
    family = "glm4"
    model_types = ("glm4",)

    def residual(self, layer, x, attn_out):
        x = x + layer.post_self_attn_layernorm(layer.self_attn.o_proj(attn_out))
        return x + layer.post_mlp_layernorm(self.mlp(layer, layer.post_attention_layernorm(x)))
