"""OLMoE: OLMo's clamped q/k/v (olmo.py) after an RMSNorm over the whole query and key projections (all heads at
once, before the rotary embedding), and a mixture-of-experts MLP."""

from sinktrain.stream.families.olmo import OlmoAdapter


class OlmoeAdapter(OlmoAdapter):
    family = "olmoe"
    model_types = ("olmoe",)
    qk_norm_across_heads = True
    window_on_every_layer = True
    mlp_takes_batches = True
