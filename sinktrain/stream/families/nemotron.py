"""Nemotron (NVIDIA Nemotron-4, Minitron): the Llama layout with LayerNorm1P norms (weight + 1), a squared-ReLU MLP
without a gate and partial rotary (the model's rotation function passes the other dims through)."""

from sinktrain.stream.families.base import FamilyAdapter


class NemotronAdapter(FamilyAdapter):
    family = "nemotron"
    model_types = ("nemotron",)
