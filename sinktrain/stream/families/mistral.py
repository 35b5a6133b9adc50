"""Mistral: the Llama layout; every layer's sliding window comes from `config.sliding_window` (None: full)."""

from sinktrain.stream.families.base import FamilyAdapter


class MistralAdapter(FamilyAdapter):
    family = "mistral"
    model_types = ("mistral",)
    window_on_every_layer = True
