"""FlexOlmo (AI2): OLMo 2's layer (post-norms, q/k RMSNorm over all heads) with a mixture-of-experts MLP."""

from sinktrain.stream.families.olmo2 import Olmo2Adapter


class FlexOlmoAdapter(Olmo2Adapter):
    family = "flex_olmo"
    model_types = ("flex_olmo",)
    mlp_takes_batches = True
