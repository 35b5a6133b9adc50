"""ERNIE 4.5 (Baidu): the Llama layout with rotary on interleaved pairs of dims (the model's own rotation function
knows the layout). The mixture-of-experts models (ERNIE-4.5-21B-A3B, -300B-A47B) put routed plus shared experts in
the layers from `moe_layer_start_index` on, every `moe_layer_interval`."""

from sinktrain.stream.families.base import FamilyAdapter


class Ernie4_5Adapter(FamilyAdapter):
    family = "ernie4_5"
    model_types = ("ernie4_5",)


class Ernie4_5MoeAdapter(Ernie4_5Adapter):
    family = "ernie4_5_moe"
    model_types = ("ernie4_5_moe",)
    mlp_takes_batches = True
