"""Mixtral: the Mistral layout with a sparse mixture-of-experts MLP (each token routed on its own, so a block of
tokens gives each token what it alone would get)."""

from sinktrain.stream.families.base import FamilyAdapter


class MixtralAdapter(FamilyAdapter):
    family = "mixtral"
    model_types = ("mixtral",)
    window_on_every_layer = True
    mlp_takes_batches = True
