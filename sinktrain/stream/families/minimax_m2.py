"""MiniMax-M2: the Llama layout with an RMSNorm over all heads' queries and one over the keys (before the rotary
embedding), rotary on the first `rotary_dim` dims of each head, and a mixture-of-experts MLP."""

from sinktrain.stream.families.base import FamilyAdapter


class MiniMaxM2Adapter(FamilyAdapter):
    family = "minimax_m2"
    model_types = ("minimax_m2",)
    qk_norm_across_heads = True
    mlp_takes_batches = True
