"""GLM-4 (the first `glm` release, e.g. glm-4-9b-chat-hf): the Llama layout with q/k/v biases, a fused gate/up MLP and
rotary on interleaved pairs of the first half of each head's dims (the model's own rotation function knows both)."""

from sinktrain.stream.families.base import FamilyAdapter


class GlmAdapter(FamilyAdapter):
    family = "glm"
    model_types = ("glm",)
