"""Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): the Qwen3 layout (q/k RMSNorm per head) with a mixture-of-experts
MLP; `config.sliding_window` applies to every layer when `use_sliding_window` is set."""

from sinktrain.stream.families.qwen3 import Qwen3Adapter


class Qwen3MoeAdapter(Qwen3Adapter):
    family = "qwen3_moe"
    model_types = ("qwen3_moe",)
    window_on_every_layer = True
    mlp_takes_batches = True


class HYV3Adapter(Qwen3Adapter):
    """Tencent Hunyuan 3 (`hy_v3`): the same q/k RMSNorms per head before the rotary embedding (Apertus's attention
    module), dense first layers, then routed plus shared experts; no sliding windows."""

    family = "hy_v3"
    model_types = ("hy_v3",)
    mlp_takes_batches = True
