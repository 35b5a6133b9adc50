"""OLMo 3: OLMo 2's layer (post-norms, q/k RMSNorm over all heads) with three of every four layers sliding windows
(4,096 tokens in the released models), and a rotary module called with the layer type: each type keeps its own
frequencies (the long-context models scale only the full-attention layers' with YaRN)."""

from sinktrain.stream.families.olmo2 import Olmo2Adapter


class Olmo3Adapter(Olmo2Adapter):
    family = "olmo3"
    model_types = ("olmo3",)
    rotary_per_layer_type = True
