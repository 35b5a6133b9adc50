"""Phi-3 / Phi-4: the Llama layout with q, k and v packed in one projection (`qkv_proj`, in that order),
partial rotary where `partial_rotary_factor` < 1, and `config.sliding_window` on every layer when set
(Phi-3-mini-4k: 2047). LongRoPE checkpoints (Phi-3 128k, Phi-3.5, Phi-4-mini) stream at caches below their original
context (base.position_limit). Phi-4-multimodal (`phi4_multimodal`) is the same language model; its image and audio
embeddings replace only their placeholder tokens, which text has none of (its LoRA adapters load separately)."""

from sinktrain.stream.families.base import FamilyAdapter


class Phi3Adapter(FamilyAdapter):
    family = "phi3"
    model_types = ("phi3", "phi4_multimodal")
    window_on_every_layer = True

    def qkv(self, layer, x):
        n, H, KV, D = x.shape[0], self.num_heads, self.num_kv_heads, self.head_dim
        qkv = layer.self_attn.qkv_proj(layer.input_layernorm(x))
        q, k, v = qkv.split([H * D, KV * D, KV * D], dim=-1)
        return q.view(n, H, D), k.view(n, KV, D), v.view(n, KV, D)
