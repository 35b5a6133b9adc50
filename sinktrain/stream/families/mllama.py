"""Llama 3.2 Vision (`mllama`; its language model `mllama_text_model`): the Llama layout with cross-attention
layers interleaved (`cross_attention_layers`). Those attend to image states only, and the model's forward skips them
when there are none, as for text, so the evaluator skips them too (`skips`). The sink caches keep an empty layer at
their indices, which is what the model checks before skipping."""

from sinktrain.stream.families.base import FamilyAdapter


class MllamaTextAdapter(FamilyAdapter):
    family = "mllama"
    model_types = ("mllama_text_model",)

    def skips(self, layer):
        return hasattr(layer, "cross_attn")
