"""Qwen2: the Llama layout with biases on q/k/v (the Linear layers carry them) and optional per-layer
sliding windows (`config.layer_types`, read by the base adapter from each attention module)."""

from sinktrain.stream.families.base import FamilyAdapter


class Qwen2Adapter(FamilyAdapter):
    family = "qwen2"
    model_types = ("qwen2",)
