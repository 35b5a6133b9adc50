"""ERNIE 4.5 (Baidu): the Llama layout with rotary on interleaved pairs of dims (the model's own rotation function
knows the layout). The mixture-of-experts models (ERNIE-4.5-21B-A3B, -300B-A47B) put routed plus shared experts in
the layers from `moe_layer_start_index` on, every `moe_layer_interval`.

ERNIE 4.5 VL (`ernie4_5_vl_moe_text`, inside the `ernie4_5_vl_moe` image-text model) holds the MoE language model
with multimodal RoPE (its own frequency order; text sits at one position on all three axes, see qwen2.py) and a
text and a vision set of experts per MoE layer: text routes to the text experts only."""

from sinktrain.stream.families.base import FamilyAdapter
from sinktrain.stream.families.qwen2 import MultimodalRope


class Ernie4_5Adapter(FamilyAdapter):
    family = "ernie4_5"
    model_types = ("ernie4_5",)


class Ernie4_5MoeAdapter(Ernie4_5Adapter):
    family = "ernie4_5_moe"
    model_types = ("ernie4_5_moe",)
    mlp_takes_batches = True


class Ernie4_5VLMoeTextAdapter(MultimodalRope, Ernie4_5MoeAdapter):
    family = "ernie4_5_vl_moe"
    model_types = ("ernie4_5_vl_moe_text",)

    def mlp(self, layer, h):
        out = layer.mlp(h[None])  # (its MoE layers also return their router logits)
        return (out[0] if isinstance(out, tuple) else out)[0]


class PaddleOCRTextAdapter(MultimodalRope, Ernie4_5Adapter):
    """PaddleOCR-VL's language model (`paddleocr_vl_text`, ERNIE-4.5-0.3B): ERNIE 4.5's layer with Qwen2.5-Omni's
    attention, so multimodal RoPE on rotate-half pairs (the model's own rotation) and optional q/k/v/o biases."""

    family = "paddleocr_vl"
    model_types = ("paddleocr_vl_text",)
