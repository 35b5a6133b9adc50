"""Llama family: Llama 2/3, SmolLM/SmolLM2, TinyLlama (pre-norm, sequential residual, grouped-query attention).

The base adapter's defaults are this layout; this file only names the family."""

from sinktrain.stream.families.base import FamilyAdapter


class LlamaAdapter(FamilyAdapter):
    family = "llama"
    model_types = ("llama",)
