"""Phi-3.5-MoE (`phimoe`): the Llama layout with LayerNorms, q/k/v and output biases, `config.sliding_window` on
every layer when set, and a mixture-of-experts MLP. Its LongRoPE module keeps the short factors at every position
and switches its cos/sin factor (`short_mscale` to `long_mscale`) once a forward reaches the original context, so
caches stay below it as for Phi-3's LongRoPE (base.position_limit)."""

from sinktrain.stream.families.base import FamilyAdapter


class PhimoeAdapter(FamilyAdapter):
    family = "phimoe"
    model_types = ("phimoe",)
    window_on_every_layer = True
    mlp_takes_batches = True
