"""softmax1 / logit attention: the eager formula vs the SDPA path (one extra zero key), one layer's attention.

    python benchmarks/sink_attention_memory.py                       # CPU, fp32, B=2 H=4 T=512 D=64
    python benchmarks/sink_attention_memory.py --device cuda --dtype bfloat16 --batch 8 --heads 12 --seq 2048

Per path, forward + backward of the attention function alone (q, k, v and sink_logit require grad): `*_sdpa`
with no mask, as a training forward (no padding) passes it (SDPA's is_causal, no mask tensor); `*_sdpa_masked`
and `*_eager` with transformers' additive causal mask (a padded batch's path). Reported: median wall time, the
bytes autograd keeps for backward (unique storages, what training holds per layer until its backward) and, on
CUDA, the peak allocated during forward + backward above what was allocated before. Prints one JSON object per
line. vanilla = stock SDPA (no sink), for reference. Also checks the SDPA outputs and gradients against the eager
formula's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from sinktrain.model import sink_gptneox as sg

from _args import int_at_least, torch_device


def saved_bytes(fn):
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", type=torch_device, default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64", "bfloat16", "float16"))
    p.add_argument("--batch", type=int_at_least(1), default=2)
    p.add_argument("--heads", type=int_at_least(1), default=4)
    p.add_argument("--seq", type=int_at_least(1), default=512)
    p.add_argument("--head-dim", type=int_at_least(1), default=64)
    p.add_argument("--repeats", type=int_at_least(1), default=5)
    a = p.parse_args(argv)
    dev, dt = torch.device(a.device), getattr(torch, a.dtype)
    B, H, T, D = a.batch, a.heads, a.seq, a.head_dim
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=dt, generator=g).requires_grad_() for _ in range(3))
    module = torch.nn.Module()
    module.sink_logit = torch.nn.Parameter(torch.randn(H, device=dev, generator=g))
    mask = torch.zeros(B, 1, T, T, device=dev, dtype=dt).masked_fill(
        torch.ones(T, T, dtype=torch.bool, device=dev).triu(1), torch.finfo(dt).min)
    scaling = D**-0.5
    paths = {
        "vanilla_sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling),
        "softmax1_eager": lambda: sg.softmax1_attention_eager(module, q, k, v, mask, scaling)[0],
        "softmax1_sdpa_masked": lambda: sg.softmax1_attention(module, q, k, v, mask, scaling)[0],
        "softmax1_sdpa": lambda: sg.softmax1_attention(module, q, k, v, None, scaling)[0],
        "logit_eager": lambda: sg.logit_attention_eager(module, q, k, v, mask, scaling)[0],
        "logit_sdpa_masked": lambda: sg.logit_attention(module, q, k, v, mask, scaling)[0],
        "logit_sdpa": lambda: sg.logit_attention(module, q, k, v, None, scaling)[0],
    }
    grad_out = torch.randn(B, T, H, D, device=dev, dtype=dt, generator=g)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    results = {}
    for name, fn in paths.items():
        if name == "vanilla_sdpa":
            fn0 = fn
            fn = lambda fn0=fn0: fn0().transpose(1, 2)  # noqa: E731
        leaves = [q, k, v, module.sink_logit]
        for _ in range(2):  # warm-up
            for t in leaves:
                t.grad = None
            fn().backward(grad_out)
        times = []
        for _ in range(a.repeats):
            for t in leaves:
                t.grad = None
            sync()
            t0 = time.perf_counter()
            fn().backward(grad_out)
            sync()
            times.append(time.perf_counter() - t0)
        for t in leaves:
            t.grad = None
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        out, kept = saved_bytes(fn)
        out.backward(grad_out)
        peak = torch.cuda.max_memory_allocated() - base if dev.type == "cuda" else None
        results[name] = (out.detach().float(), [None if t.grad is None else t.grad.float() for t in leaves])
        row = {"path": name, "device": str(dev), "dtype": a.dtype, "B": B, "H": H, "T": T, "D": D,
               "ms": round(1e3 * statistics.median(times), 2), "saved_for_backward_MiB": round(kept / 2**20, 1)}
        if peak is not None:
            row["peak_MiB"] = round(peak / 2**20, 1)
        print(json.dumps(row), flush=True)
    for kind in ("softmax1", "logit"):
        for path in (f"{kind}_sdpa", f"{kind}_sdpa_masked"):
            (o_e, g_e), (o_s, g_s) = results[f"{kind}_eager"], results[path]
            gd = [(x - y).abs().max().item() for x, y in zip(g_s, g_e) if x is not None and y is not None]
            print(json.dumps({"check": path, "out_max_abs_diff": (o_s - o_e).abs().max().item(),
                              "grad_max_abs_diff": max(gd), "sink_logit_grad": None if g_s[3] is None else
                              g_s[3].abs().sum().item()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
