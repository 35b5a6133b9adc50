"""Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B): the Qwen2 layout with a mixture-of-experts MLP plus a gated shared
expert (dense MLPs in `mlp_only_layers`), all inside the layer's `mlp` module."""

from sinktrain.stream.families.base import FamilyAdapter


class Qwen2MoeAdapter(FamilyAdapter):
    family = "qwen2_moe"
    model_types = ("qwen2_moe",)
    mlp_takes_batches = True
