"""gpt-oss: trained with a learned attention sink per head, an extra softmax logit that takes attention and
gives no value (sinktrain's `logit` sink kind: the parallel mode's extra all-zero key carries it). Otherwise
the Llama layout with q/k/v biases, a mixture-of-experts MLP that also returns its router scores, YaRN rotary
whose cos/sin hold one angle per pair of dims (the first and second halves of a head rotate together, so all of
the head is rotary), and sliding-window layers of 128 on every other layer, so caches stay below 128."""

from sinktrain.stream.families.base import FamilyAdapter, LearnedSinkLogits


class GptOssAdapter(LearnedSinkLogits, FamilyAdapter):
    family = "gpt_oss"
    model_types = ("gpt_oss",)
    mlp_takes_batches = True

    def rotated_dims(self, cos):
        return 2 * int(cos.shape[-1])  # one angle per (i, i + head_dim/2) pair

    def mlp(self, layer, h):
        out, _router_scores = layer.mlp(h[None])
        return out[0]
