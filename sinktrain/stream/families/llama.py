"""Llama family: Llama 2/3, SmolLM/SmolLM2, TinyLlama (pre-norm, sequential residual, grouped-query attention).

The base adapter's defaults are this layout; this file only names the family. Model types of their own whose
layers are this layout too (their differences live inside modules the adapter calls anyway): InternLM3
(`internlm3`), IQuest-Coder (`iquestcoder`), Meta's Code World Model (`cwm`: Llama 3 rotary, sliding-window layers
marked in `layer_types`), Jais 2 (`jais2`: LayerNorms, an MLP without a gate) and EXAONE 3 / 3.5 (`exaone`, which
transformers loads into Llama's modules) and Aria's language model (`aria_text`: routed plus shared experts inside
its `mlp` module)."""

from sinktrain.stream.families.base import FamilyAdapter


class LlamaAdapter(FamilyAdapter):
    family = "llama"
    model_types = ("llama", "internlm3", "iquestcoder", "cwm", "jais2", "exaone", "aria_text")


class DeepseekOcr2TextAdapter(FamilyAdapter):
    """DeepSeek-OCR 2's language model (`deepseek_ocr2_text`): Llama's attention and rotary in DeepSeek-V2's layer, a
    dense MLP or routed plus shared experts where `mlp_layer_types` says."""

    family = "deepseek_ocr2"
    model_types = ("deepseek_ocr2_text",)
    mlp_takes_batches = True
