"""Gemma 2: the Gemma layout plus
- a norm on each branch before it joins the residual (`post_attention_layernorm`, `post_feedforward_layernorm`)
  and one before the MLP (`pre_feedforward_layernorm`);
- soft-capped attention scores, cap·tanh(score / cap) before the mask and softmax (the parallel mode then
  computes attention itself: SDPA has no soft-capping), and soft-capped logits;
- the attention scale 1/sqrt(query_pre_attn_scalar) (the module's `scaling`);
- sliding-window layers every other layer (`config.layer_types`, window 4096 in the released models)."""

from sinktrain.stream.families.base import FamilyAdapter, soft_cap


class Gemma2Adapter(FamilyAdapter):
    family = "gemma2"
    model_types = ("gemma2",)

    def residual(self, layer, x, attn_out):
        x = x + layer.post_attention_layernorm(layer.self_attn.o_proj(attn_out))
        return x + layer.post_feedforward_layernorm(self.mlp(layer, layer.pre_feedforward_layernorm(x)))

    def attention_softcap(self):
        return self.config.attn_logit_softcapping

    def logits(self, x):
        return soft_cap(super().logits(x), self.config.final_logit_softcapping)
