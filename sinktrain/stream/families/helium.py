"""Helium (Kyutai, Helium-1 2B): the Llama layout (optional q/k/v biases)."""

from sinktrain.stream.families.base import FamilyAdapter


class HeliumAdapter(FamilyAdapter):
    family = "helium"
    model_types = ("helium",)
