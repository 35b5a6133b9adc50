"""Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): the Qwen3 layout (q/k RMSNorm per head) with a mixture-of-experts
MLP; `config.sliding_window` applies to every layer when `use_sliding_window` is set."""

from sinktrain.stream.families.base import LearnedSinkLogits
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


class FlintAdapter(LearnedSinkLogits, Qwen3Adapter):
    """Flint (`flint`): Qwen3-MoE's layer with a learned sink logit per head on every layer (gpt-oss's kind), rotary
    on the sliding-window layers only and none (NoPE) on the full-attention ones."""

    family = "flint"
    model_types = ("flint",)
    mlp_takes_batches = True

    def rotary_kinds(self):
        return [None if attn.sliding_window is not None else "nope" for attn in map(self.attention, self.layers)]
