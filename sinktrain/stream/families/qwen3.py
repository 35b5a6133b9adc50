"""Qwen3: the Llama layout plus an RMSNorm on each head's query and key, applied before the rotary embedding."""

from sinktrain.stream.families.base import FamilyAdapter


class Qwen3Adapter(FamilyAdapter):
    family = "qwen3"
    model_types = ("qwen3",)

    def qk_norm(self, attn, q, k):
        return attn.q_norm(q), attn.k_norm(k)
