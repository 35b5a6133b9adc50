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

# Dense bf16/fp16 tensor-core peaks in TFLOP/s, matched by substring of torch.cuda.get_device_name().
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "A6000": 154.8,
    "L40S": 362.0,
    "A10G": 125.0,
    "V100": 125.0,
}


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


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    a = cfg.arch
    t = seq_len or cfg.seq_len
    return 6.0 * nonembedding_params(cfg) + 6.0 * a.hidden_size * a.vocab_size + 12.0 * a.num_layers * a.hidden_size * t


def device_peak_tflops(override: float | None = None) -> float | None:
    """Per-device peak: the override, else the table entry for this CUDA device, else None (CPU, unknown GPU)."""
    if override:
        return float(override)
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, peak in PEAK_TFLOPS.items():
        if key in name:
            return peak
    return None


def mfu(tokens_per_s: float, flops_token: float, devices: int, peak_tflops: float | None) -> float | None:
    if not peak_tflops:
        return None
    return tokens_per_s * flops_token / (devices * peak_tflops * 1e12)
