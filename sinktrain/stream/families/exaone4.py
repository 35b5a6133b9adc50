"""EXAONE 4.0 (LG AI Research, 1.2B and 32B): OLMo 2's post-norm residual (no norm before attention or MLP; an
RMSNorm on each branch's output), an RMSNorm on each head's query and key, and, where the config sets a sliding
window, three of every four layers sliding windows with rotary while the full-attention layers use no position
encoding at all (NoPE). Without a sliding window every layer uses rotary.

K-EXAONE (`exaone_moe`): the same attention in the Llama layout (pre-norms), with a mixture of experts where
`mlp_layer_types` says. Aleph Alpha's Kolibri-1 (`kolibri1`): the same attention in GLM-4's layout (pre-norms and an
RMSNorm on each branch's output), routed plus shared experts in every layer, four of every five layers sliding
windows (513 keys, so caches of at most 512)."""

from sinktrain.stream.families.base import FamilyAdapter
from sinktrain.stream.families.glm4 import Glm4Adapter
from sinktrain.stream.families.olmo2 import Olmo2Adapter


class ExaoneAttention:
    """Mixed in before FamilyAdapter: EXAONE's q/k norms and rotary layers."""

    def qk_norm(self, attn, q, k):
        return attn.q_norm(q), attn.k_norm(k)

    def rotary_kinds(self):
        if self.config.sliding_window is None:
            return super().rotary_kinds()
        return [None if t == "sliding_attention" else "nope" for t in self.config.layer_types]


class Exaone4Adapter(ExaoneAttention, FamilyAdapter):
    family = "exaone4"
    model_types = ("exaone4",)
    residual = Olmo2Adapter.residual  # the same post-norm residual form

    def attention_input(self, layer, x):
        return x


class ExaoneMoeAdapter(ExaoneAttention, FamilyAdapter):
    family = "exaone_moe"
    model_types = ("exaone_moe",)
    mlp_takes_batches = True


class Kolibri1Adapter(ExaoneAttention, FamilyAdapter):
    family = "kolibri1"
    model_types = ("kolibri1",)
    mlp_takes_batches = True
    residual = Glm4Adapter.residual
