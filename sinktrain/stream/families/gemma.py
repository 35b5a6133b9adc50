"""Gemma (the first generation): the Llama layout. Its differences live inside modules the adapter calls
anyway: the embedding multiplies by sqrt(hidden_size), RMSNorm scales by (1 + weight), the MLP is GeGLU.
Gemma 2 and 3 are other families (attention logit soft-capping, per-layer rotary bases) and are refused."""

from sinktrain.stream.families.base import FamilyAdapter


class GemmaAdapter(FamilyAdapter):
    family = "gemma"
    model_types = ("gemma",)
