"""GLM-4.5 / GLM-4.6 / GLM-4.5-Air (`glm4_moe`): unlike the dense GLM-4, the Llama layout (pre-norms only), with
q/k/v biases, rotary on the first half of each head, an RMSNorm per head on q and k where `use_qk_norm` is set,
dense MLPs in the first `first_k_dense_replace` layers and a mixture of routed plus shared experts after them.
Solar Open (Upstage) is the same decoder without the q/k norms, Sarvam-MoE (`sarvam_moe`) the same with them.
GLM-4.5V (`glm4v_moe_text`) holds it, without q/k norms, with Qwen-VL's multimodal RoPE (see qwen2.py)."""

from sinktrain.stream.families.base import FamilyAdapter
from sinktrain.stream.families.qwen2 import MultimodalRope


class Glm4MoeAdapter(FamilyAdapter):
    family = "glm4_moe"
    model_types = ("glm4_moe", "solar_open", "sarvam_moe")
    mlp_takes_batches = True

    def qk_norm(self, attn, q, k):
        return (attn.q_norm(q), attn.k_norm(k)) if getattr(attn, "use_qk_norm", False) else (q, k)


class Glm4vMoeTextAdapter(MultimodalRope, Glm4MoeAdapter):
    family = "glm4v_moe"
    model_types = ("glm4v_moe_text",)
