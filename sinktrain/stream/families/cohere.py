"""Cohere (Command R, Command R+, Aya 23; `cohere`): one LayerNorm (weight only) feeds both branches, added in
parallel (x + attn + mlp), an optional LayerNorm per head on q and k, rotary on interleaved pairs of dims (the
model's own rotation function knows the layout), and the logits multiplied by `logit_scale`.

Cohere 2 (Command R7B, Command A; `cohere2`): the same layer without q/k norms; three of every four layers are
sliding windows with rotary, and the full-attention layers use no position encoding at all (NoPE). Its mixture of
experts (`cohere2_moe`) has the same layer with experts for the MLP where `mlp_layer_types` says, and rotary on its
dense prefix layers too when these are all full attention."""

from sinktrain.stream.families.base import FamilyAdapter


class CohereAdapter(FamilyAdapter):
    family = "cohere"
    model_types = ("cohere",)

    def qk_norm(self, attn, q, k):
        return (attn.q_norm(q), attn.k_norm(k)) if getattr(attn, "use_qk_norm", False) else (q, k)

    def residual(self, layer, x, attn_out):
        return x + layer.self_attn.o_proj(attn_out) + self.mlp(layer, layer.input_layernorm(x))

    def logits(self, x):
        return super().logits(x) * self.model.logit_scale


class Cohere2Adapter(CohereAdapter):
    family = "cohere2"
    model_types = ("cohere2",)

    def rotary_kinds(self):
        return [None if t == "sliding_attention" else "nope" for t in self.config.layer_types]


class Cohere2MoeAdapter(Cohere2Adapter):
    family = "cohere2_moe"
    model_types = ("cohere2_moe",)
    mlp_takes_batches = True

    def rotary_kinds(self):
        # Rotary on the sliding layers, and on the dense prefix layers when they are all full attention (the
        # attention module's `force_rope`).
        return [None if attn.sliding_window is not None or attn.force_rope else "nope"
                for attn in map(self.attention, self.layers)]
