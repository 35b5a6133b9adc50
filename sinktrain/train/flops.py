"""Model FLOPs per token and device peaks, for MFU.

Training FLOPs per token (forward + backward = 3 × forward, 2 FLOPs per multiply-add), PaLM appendix B:
    6 · N_nonembed                 every weight matrix in the blocks
  + 6 · d · V                      the output (unembedding) matmul; the input embedding is a lookup, free
  + 12 · L · d · T                 attention scores and weighted values (PaLM's 12·L·H·Q·T with H·Q = d)
For Pythia-160M at T = 2048: 510.3M + 231.8M + 226.5M = 968.6 MFLOP/token (the figure in PAPER.md).
MFU = tokens/s × FLOPs/token / (devices × peak).
"""

from __future__ import annotations

from sinktrain.model import ModelConfig


def nonembedding_params(cfg: ModelConfig) -> int:
    """Parameters in the transformer blocks and final norm (Pythia's convention: both embeddings excluded)."""
    a = cfg.arch
    d, f, L = a.hidden_size, a.intermediate_size, a.num_layers
    per_layer = (
        2 * 2 * d  # two LayerNorms (weight + bias)
        + 3 * d * d + 3 * d  # fused QKV
        + d * d + d  # attention out
        + d * f + f  # MLP in
        + f * d + d  # MLP out
    )
    sink_logits = a.num_heads * L if cfg.sink.kind == "logit" else 0
    return L * per_layer + 2 * d + sink_logits


def total_params(cfg: ModelConfig) -> int:
    """All parameters: the blocks plus the input embedding and the (untied) output head."""
    return nonembedding_params(cfg) + 2 * cfg.arch.vocab_size * cfg.arch.hidden_size


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    a = cfg.arch
    t = seq_len or cfg.seq_len
    return 6.0 * nonembedding_params(cfg) + 6.0 * a.hidden_size * a.vocab_size + 12.0 * a.num_layers * a.hidden_size * t


def compute_dtype(precision: str):
    """The matmul dtype a Lightning precision string trains in (what the device's peak depends on)."""
    import torch

    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float32


def device_peak_tflops(override: float | None = None, precision: str = "bf16-mixed") -> float | None:
    """Per-device dense peak TFLOP/s for `precision`: the override, else Lightning's table
    (`get_available_flops`, which tells H100 SXM from PCIe and fp32 from tf32), else None (CPU, or a GPU
    name the table does not know, e.g. a bare "NVIDIA H200": then set logging.peak_tflops)."""
    if override:
        return float(override)
    import torch

    if not torch.cuda.is_available():
        return None
    import warnings

    from lightning.fabric.utilities.throughput import get_available_flops

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "FLOPs not found for ...": we return None and say so in the docs
        flops = get_available_flops(torch.device("cuda", torch.cuda.current_device()), compute_dtype(precision))
    return flops / 1e12 if flops else None


def mfu(tokens_per_s: float, flops_token: float, devices: int, peak_tflops: float | None) -> float | None:
    if not peak_tflops:
        return None
    return tokens_per_s * flops_token / (devices * peak_tflops * 1e12)
