"""What the evaluator needs to know about a GPT-NeoX model: support check, rotary, sink kind, sink tokens,
and the transformers cache keyword (renamed between transformers 5.17 and 5.24)."""

from __future__ import annotations

import inspect

import torch

SUPPORTED_MODEL_TYPES = ("gpt_neox", "sinktrain_gpt_neox")


def check_supported(config) -> None:
    """Raise ValueError unless `config` is a GPT-NeoX model with default (unscaled) rotary embeddings."""
    mtype = getattr(config, "model_type", None)
    if mtype not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"unsupported architecture {mtype!r}; the streaming evaluator supports GPT-NeoX models "
            f"({', '.join(SUPPORTED_MODEL_TYPES)}), e.g. Pythia or sinktrain exports"
        )
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"unsupported rotary type {rope.get('rope_type')!r}; only default RoPE re-positions exactly")


def attention_sink_kind(model) -> str:
    """'softmax1' / 'logit' for models whose softmax has a value-less extra column, else 'none'."""
    kind = getattr(model.config, "sink_kind", None)
    return kind if kind in ("softmax1", "logit") else "none"


def sink_token_ids(config) -> list[int]:
    """Learnable sink-token ids recorded by `sinktrain export` in config.json's `sinktrain` block
    (`sink_token_ids`, or `sink: {token_ids}`); [] for vanilla and stock models."""
    meta = getattr(config, "sinktrain", None) or {}
    if not isinstance(meta, dict):
        return []
    ids = meta.get("sink_token_ids")
    if ids is None and isinstance(meta.get("sink"), dict):
        ids = meta["sink"].get("token_ids")
    return [int(i) for i in (ids or [])]


def cache_kwarg(model) -> str:
    """Name of the forward's cache argument: `cache` (transformers >= 5.2x) or `past_key_values` (5.17)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class Rotary:
    """GPT-NeoX partial rotary embedding at arbitrary integer positions (same arithmetic as transformers:
    fp32 angles, cos/sin cast to the tensor's dtype, rotate_half on the first `dim` dims of each head)."""

    def __init__(self, model):
        rot = model.gpt_neox.rotary_emb
        self.inv_freq = rot.inv_freq.detach().float()
        self.scaling = float(getattr(rot, "attention_scaling", 1.0))
        self.dim = 2 * self.inv_freq.numel()

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype):
        freqs = positions.to(self.inv_freq.device).float()[:, None] * self.inv_freq.to(positions.device)[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        return (emb.cos() * self.scaling).to(dtype), (emb.sin() * self.scaling).to(dtype)

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x [..., n, head_dim] rotated at positions [n] (rotary dims only; the rest passes through)."""
        cos, sin = self.cos_sin(positions.to(x.device), x.dtype)
        return torch.cat([self.rotate_part(x[..., : self.dim], cos, sin), x[..., self.dim:]], dim=-1)

    @staticmethod
    def rotate_part(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated_half = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated_half * sin
