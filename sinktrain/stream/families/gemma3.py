"""Gemma 3 (text: 270M, 1B; `gemma3_text`): Gemma 2's layout with an RMSNorm on each head's query and key (before
the rotary embedding), no attention soft-capping, and two rotary embeddings: sliding-window layers use a local
base (10k) and the full-attention layers a global one (1M, linearly scaled in the larger models), from one rotary
module called with the layer type. Five of every six layers are sliding windows of 512 tokens (1B; 1024 in the
larger ones), so caches stay below that. The multimodal checkpoints (4B and up, `gemma3`) hold the same language
model; they stream text through it (image_text.py)."""

from sinktrain.stream.families.gemma2 import Gemma2Adapter


class Gemma3Adapter(Gemma2Adapter):
    family = "gemma3"
    model_types = ("gemma3_text",)

    def qk_norm(self, attn, q, k):
        return attn.q_norm(q), attn.k_norm(k)

    rotary_per_layer_type = True

    def attention_softcap(self):
        return None  # Gemma 3's attention passes no soft-cap, whatever its config says
