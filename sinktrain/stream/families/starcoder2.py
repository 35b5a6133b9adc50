"""StarCoder2: the Llama layout with LayerNorms, biases and a GELU MLP (all inside its modules), and
`config.sliding_window` (4096 in the released models) on every layer."""

from sinktrain.stream.families.base import FamilyAdapter


class Starcoder2Adapter(FamilyAdapter):
    family = "starcoder2"
    model_types = ("starcoder2",)
    window_on_every_layer = True
