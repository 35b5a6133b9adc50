"""Which SDPA kernels a decode forward may use: all but cuDNN's while the cache still grows.

On Hopper GPUs torch prefers cuDNN's fused attention for bf16 / fp16 SDPA. cuDNN builds an execution graph for
each shape and caches it by shape. A cache that grows by one key per token (a dense cache, or a sink cache
before it is full) has a new shape at every step, so every step builds a graph: on an H200 (torch 2.11,
Pythia-160M's shape, bf16) 3.0 ms of CPU time per layer, and a dense decode step at cache 1024 took 62 ms
with cuDNN against 8.4 ms without it. Once a sink cache is full, every step has C + 1 keys, the graph is
reused, and cuDNN is the faster kernel (at cache 4096: 8.9 ms a token vs 17.9 ms without it). Figures and
commands: docs/benchmarks.md. On a CPU nothing changes (cuDNN attention is a CUDA backend).
"""

from __future__ import annotations

import contextlib

from torch.nn.attention import SDPBackend, sdpa_kernel

NO_CUDNN = [b for name, b in SDPBackend.__members__.items() if name not in ("ERROR", "CUDNN_ATTENTION")]


def cache_is_full(cache) -> bool:
    """Whether every further step sees the same number of keys (a sink cache at its capacity C)."""
    capacity = getattr(cache, "capacity", None)  # None: a dense cache, which never stops growing
    return capacity is not None and int(cache.get_seq_length()) >= capacity


def decode_attention(cache):
    """A context manager for one forward through `cache`: torch's own kernel choice once the cache is full,
    every kernel but cuDNN's before."""
    return contextlib.nullcontext() if cache_is_full(cache) else sdpa_kernel(NO_CUDNN)
