"""Microsoft BitNet b1.58 (`bitnet`): the Llama layout with an RMSNorm on the attention output before `o_proj`
(`attn_sub_norm`; the MLP's own `ffn_sub_norm` sits inside the module the adapter calls). Its ternary weights, when
a checkpoint keeps them packed, live inside the projection modules too."""

from sinktrain.stream.families.base import FamilyAdapter


class BitNetAdapter(FamilyAdapter):
    family = "bitnet"
    model_types = ("bitnet",)

    def residual(self, layer, x, attn_out):
        attn = layer.self_attn
        x = x + attn.o_proj(attn.attn_sub_norm(attn_out))
        return x + self.mlp(layer, layer.post_attention_layernorm(x))
