"""Qwen2: the Llama layout with biases on q/k/v (the Linear layers carry them) and optional per-layer
sliding windows (`config.layer_types`, read by the base adapter from each attention module).

Qwen2-VL, Qwen2.5-VL and Qwen2.5-Omni's thinker hold the same language model (`qwen2_vl_text`, `qwen2_5_vl_text`,
`qwen2_5_omni_text`) with multimodal RoPE:
a rotary angle set per axis (time, height, width), each taking its own slice of the frequencies. Text tokens sit
at the same position on all three axes, so their rotation is ordinary RoPE at that position; the rotary module
still wants the three axes' positions (transformers 5.17 requires them), which `MultimodalRope` hands it."""

import torch

from sinktrain.stream.families.base import FamilyAdapter


class Qwen2Adapter(FamilyAdapter):
    family = "qwen2"
    model_types = ("qwen2",)


class MultimodalRope:
    """Mixed in before a family's adapter: cos, sin of a multimodal-RoPE module for text, the same position on
    each of the three axes."""

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype, kind=None):
        probe = torch.empty(0, dtype=dtype, device=positions.device)
        cos, sin = self.rotary_module(probe, positions[None, None].expand(3, 1, -1))
        return cos[0], sin[0]


class Qwen2VLTextAdapter(MultimodalRope, Qwen2Adapter):
    family = "qwen2_vl"
    model_types = ("qwen2_vl_text", "qwen2_5_vl_text", "qwen2_5_omni_text")
