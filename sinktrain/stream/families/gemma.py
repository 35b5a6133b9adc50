"""Gemma (the first generation): the Llama layout. Its differences live inside modules the adapter calls
anyway: the embedding multiplies by sqrt(hidden_size), RMSNorm scales by (1 + weight), the MLP is GeGLU.
Gemma 2 and 3 have adapters of their own (gemma2.py, gemma3.py)."""

from sinktrain.stream.families.base import FamilyAdapter


class GemmaAdapter(FamilyAdapter):
    family = "gemma"
    model_types = ("gemma",)
