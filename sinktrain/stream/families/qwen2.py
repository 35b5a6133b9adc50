"""Qwen2: the Llama layout with biases on q/k/v (the Linear layers carry them) and optional per-layer
sliding windows (`config.layer_types`, read by the base adapter from each attention module).

Qwen2-VL and Qwen2.5-VL hold the same language model (`qwen2_vl_text`, `qwen2_5_vl_text`) with multimodal RoPE:
a rotary angle set per axis (time, height, width), each taking its own slice of the frequencies. Text tokens sit
at the same position on all three axes, so their rotation is ordinary RoPE at that position; the rotary module
still wants the three axes' positions (transformers 5.17 requires them), which `multimodal_cos_sin` hands it."""

import torch

from sinktrain.stream.families.base import FamilyAdapter


class Qwen2Adapter(FamilyAdapter):
    family = "qwen2"
    model_types = ("qwen2",)


def multimodal_cos_sin(adapter: FamilyAdapter, positions: torch.Tensor, dtype: torch.dtype):
    """cos, sin [n, rotary_dim] of a multimodal-RoPE module for text at integer positions [n]: the same position
    on each of the three axes."""
    probe = torch.empty(0, dtype=dtype, device=positions.device)
    cos, sin = adapter.rotary_module(probe, positions[None, None].expand(3, 1, -1))
    return cos[0], sin[0]


class Qwen2VLTextAdapter(Qwen2Adapter):
    family = "qwen2_vl"
    model_types = ("qwen2_vl_text", "qwen2_5_vl_text")

    def cos_sin(self, positions, dtype, kind=None):
        return multimodal_cos_sin(self, positions, dtype)
