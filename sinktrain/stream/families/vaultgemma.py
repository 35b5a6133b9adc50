"""VaultGemma (Google's differentially private 1B): Gemma 2's attention (soft-capped scores, 1/sqrt of
`query_pre_attn_scalar`, sliding-window layers where `layer_types` says) and soft-capped logits, but pre-norms only:
`input_layernorm` before the attention, `pre_feedforward_layernorm` before the MLP, no norm on either branch's
output."""

from sinktrain.stream.families.gemma2 import Gemma2Adapter


class VaultGemmaAdapter(Gemma2Adapter):
    family = "vaultgemma"
    model_types = ("vaultgemma",)

    def residual(self, layer, x, attn_out):
        x = x + layer.self_attn.o_proj(attn_out)
        return x + self.mlp(layer, layer.pre_feedforward_layernorm(x))
