"""Ministral (8B, `ministral`): Mistral's layout with its sliding windows marked per layer in `config.layer_types`.

Ministral 3 (3B, 8B, 14B; `ministral3`): Mistral's layout (`sliding_window`, when set, on every layer) with YaRN,
and queries multiplied by 1 + β·log(1 + ⌊p / P⌋) at position p (Llama 4's attention-temperature scaling, β =
`llama_4_scaling_beta`, P = the YaRN `original_max_position_embeddings`, 16,384 in the released models). That
factor is exactly 1 below P, so the adapter streams caches (and dense baselines) that stay below P and refuses
longer ones."""

from sinktrain.stream.families.base import FamilyAdapter


class MinistralAdapter(FamilyAdapter):
    family = "ministral"
    model_types = ("ministral",)


class Llama4QueryScaling:
    """Mixed in before an adapter whose queries are multiplied by Llama 4's attention-temperature factor (Ministral 3,
    Mistral Small 4): cache positions, and dense baselines, must stay below P, where the factor is exactly 1."""

    @classmethod
    def position_limit(cls, config):
        rope = getattr(config, "rope_parameters", None) or {}
        if rope.get("llama_4_scaling_beta") and rope.get("original_max_position_embeddings"):
            return int(rope["original_max_position_embeddings"]), "query scaling (llama_4_scaling_beta)"
        return super().position_limit(config)


class Ministral3Adapter(Llama4QueryScaling, FamilyAdapter):
    family = "ministral3"
    model_types = ("ministral3",)
    window_on_every_layer = True
