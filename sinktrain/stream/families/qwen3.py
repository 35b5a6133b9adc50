"""Qwen3: the Llama layout plus an RMSNorm on each head's query and key, applied before the rotary embedding.
Qwen3-VL holds the same language model (`qwen3_vl_text`) with multimodal RoPE, ordinary RoPE for text (qwen2.py)."""

from sinktrain.stream.families.base import FamilyAdapter
from sinktrain.stream.families.qwen2 import MultimodalRope


class Qwen3Adapter(FamilyAdapter):
    family = "qwen3"
    model_types = ("qwen3",)

    def qk_norm(self, attn, q, k):
        return attn.q_norm(q), attn.k_norm(k)


class Qwen3VLTextAdapter(MultimodalRope, Qwen3Adapter):
    family = "qwen3_vl"
    model_types = ("qwen3_vl_text",)


class Qwen3VLMoeTextAdapter(Qwen3VLTextAdapter):
    """Qwen3-VL-30B-A3B, Qwen3-VL-235B-A22B: Qwen3-VL's language model with a mixture-of-experts MLP; Qwen3-Omni's
    thinker holds the same (`qwen3_omni_moe_text`)."""

    family = "qwen3_vl_moe"
    model_types = ("qwen3_vl_moe_text", "qwen3_omni_moe_text")
    mlp_takes_batches = True
