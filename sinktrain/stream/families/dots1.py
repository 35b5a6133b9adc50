"""dots.llm1 (rednote): the Qwen3 layout (an RMSNorm per head on q and k) with dense MLPs in the first
`first_k_dense_replace` layers, routed plus shared experts after them, and sliding windows on the layers
`layer_types` marks (from `max_window_layers` on)."""

from sinktrain.stream.families.qwen3 import Qwen3Adapter


class Dots1Adapter(Qwen3Adapter):
    family = "dots1"
    model_types = ("dots1",)
    mlp_takes_batches = True
