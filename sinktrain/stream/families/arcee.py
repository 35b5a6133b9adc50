"""Arcee (AFM-4.5B): the Llama layout with a squared-ReLU MLP without a gate (the MLP module's business)."""

from sinktrain.stream.families.base import FamilyAdapter


class ArceeAdapter(FamilyAdapter):
    family = "arcee"
    model_types = ("arcee",)
