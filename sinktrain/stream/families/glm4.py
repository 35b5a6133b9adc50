"""GLM-4-0414 (`glm4`: GLM-4-9B/32B-0414, GLM-Z1): the first GLM's layer (q/k/v biases, fused gate/up MLP, rotary
on interleaved pairs of the first half of each head's dims) with an RMSNorm on each branch's output before it
joins the residual (`post_self_attn_layernorm`, `post_mlp_layernorm`), besides the usual pre-norms.

GLM-4.1V and GLM-4.6V (`glm4v_text`; GLM-OCR's `glm_ocr_text`, the same without q/k/v biases) hold this language
model with Qwen-VL's multimodal RoPE (see qwen2.py)."""

from sinktrain.stream.families.base import FamilyAdapter
from sinktrain.stream.families.qwen2 import MultimodalRope


class Glm4Adapter(FamilyAdapter):
    family = "glm4"
    model_types = ("glm4",)

    def residual(self, layer, x, attn_out):
        x = x + layer.post_self_attn_layernorm(layer.self_attn.o_proj(attn_out))
        return x + layer.post_mlp_layernorm(self.mlp(layer, layer.post_attention_layernorm(x)))


class Glm4vTextAdapter(MultimodalRope, Glm4Adapter):
    family = "glm4v"
    model_types = ("glm4v_text", "glm_ocr_text")
