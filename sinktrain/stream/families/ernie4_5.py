"""ERNIE 4.5 dense (Baidu, e.g. ERNIE-4.5-0.3B): the Llama layout with rotary on interleaved pairs of dims (the
model's own rotation function knows the layout)."""

from sinktrain.stream.families.base import FamilyAdapter


class Ernie4_5Adapter(FamilyAdapter):
    family = "ernie4_5"
    model_types = ("ernie4_5",)
