"""Exact block-parallel mode: the reference mode's per-token NLLs without decoding token by token.

Query t sees K(t) = {0..t} while t <= C, else the sinks {0..s-1} plus the recent {t-w..t}. Split it in two:
  band   u in [max(s, t-w), t]: inside the cache these keys are contiguous and end at the query, so their
         cache-index distance to the query is t-u, exactly their text distance: ordinary causal sliding-window
         attention at text positions (rotary only sees differences).
  sinks  j < min(s, t+1): key at cache index j, query at cache index p(t) = min(t, C), so the sink scores need
         the query rotated at p(t) instead of at t.
Both score sets go through one softmax. We do it with one SDPA call by widening the head dim: the query is
[q_rot@t, q_rot@p(t), q_pass], a band key [k_rot@u, 0, k_pass], a sink key [0, k_rot@j, k_pass]; the dot
product then is the right score for either kind of key. softmax1 / logit models get one more key (all zeros,
zero value) whose additive mask carries their extra logit (0, or the learned per-head `sink_logit`).
Grouped-query attention repeats each K/V head for its group of query heads. ALiBi models (MPT, BLOOM) rotate nothing;
their per-head bias -m·(distance inside the cache) joins the mask: t - u for a band key, p(t) - j for a sink.

A token's K/V at layer l depend only on its own K(t), so computing the stream layer by layer, block of queries
by block, reproduces the KV cache exactly. Memory stays bounded: per layer we keep the s sink K/V and the
last w tokens' K/V (un-rotated; rotated per block relative to the block's first key so angles stay small
however long the stream is), plus the current block's hidden states. A layer that attends to an earlier
layer's K/V (Gemma 4's shared layers) uses that layer's sinks and band. Head counts and widths are read off
each layer's q/k/v (Gemma 4's differ by layer type; multi-head latent attention has narrower values).

Everything family-specific (where q/k/v, norms, rotary and the head live) comes from a `FamilyAdapter`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from sinktrain.stream.families import FamilyAdapter, adapter_for
from sinktrain.stream.families.base import soft_cap


def _cat_last(*parts: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts, dim=-1)


@torch.no_grad()
def parallel_logits(model, tokens, sinks: int, window: int | None, block_size: int = 1024,
                    adapter: FamilyAdapter | None = None,
                    attn_chunk: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield (a, b, logits [b-a, vocab]) for query blocks a..b-1 of tokens[:-1] (query t predicts tokens[t+1]).
    `attn_chunk`: queries per attention call inside a block (default max(64, window); see `_attend`)."""
    ad = adapter or adapter_for(model)
    weight = model.get_input_embeddings().weight
    device, dtype = weight.device, weight.dtype
    ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=device)
    n_tok = int(ids.shape[0])
    if window is None:  # dense attention: nothing is ever evicted
        sinks, window = 0, n_tok
    s, w = sinks, window
    capacity = s + w
    bound = ad.position_bound
    if bound is not None and sinks + window < n_tok:  # (dense: positions stay below n_tok, checked by the caller)
        # Band rotary positions run up to block + w - 1 (relative to the band's start); keep them exact.
        block_size = max(1, min(block_size, bound - w))
    kind = ad.softmax_sink_kind()
    softcap = ad.attention_softcap()
    layers = ad.layers
    kinds = ad.rotary_kinds()
    sources = [ad.kv_source(layer) for layer in layers]  # per layer, the index of the layer whose K/V it reuses
    reused = set(sources) - {None}
    runs = [not ad.skips(layer) for layer in layers]
    scales = [ad.attention_scale(layer) if run else None for layer, run in zip(layers, runs)]
    slopes = ad.alibi_slopes()
    slopes = None if slopes is None else slopes.to(device=device, dtype=dtype)
    # Per layer, sequence-major like the projections ([tokens, kv_heads, head_dim]), un-rotated:
    sink_k: list[torch.Tensor | None] = [None] * len(layers)  # the <= s sink tokens
    sink_v: list[torch.Tensor | None] = [None] * len(layers)
    tail_k: list[torch.Tensor | None] = [None] * len(layers)  # last <= w non-sink tokens before the block
    tail_v: list[torch.Tensor | None] = [None] * len(layers)
    tail_start = 0  # text index of the first tail token
    neg_inf = float("-inf")

    for a in range(0, n_tok - 1, block_size):
        b = min(a + block_size, n_tok - 1)
        n_q = b - a
        t = torch.arange(a, b, device=device)
        band_start = tail_start
        u = torch.arange(band_start, b, device=device)
        band_ok = (u[None, :] <= t[:, None]) & (u[None, :] >= t[:, None] - w) & (u[None, :] >= s)
        band_mask = torch.zeros(n_q, u.numel(), dtype=dtype, device=device).masked_fill_(~band_ok, neg_inf)
        n_sinks = min(s, b)
        j = torch.arange(n_sinks, device=device)
        sink_mask = torch.zeros(n_q, n_sinks, dtype=dtype, device=device).masked_fill_(j[None, :] > t[:, None], neg_inf)
        mask = torch.cat([sink_mask, band_mask], dim=-1)
        if slopes is not None:  # ALiBi: -m_h · (distance inside the cache), per head
            dist = torch.cat([torch.clamp(t, max=capacity)[:, None] - j[None, :], t[:, None] - u[None, :]], dim=-1)
            mask = mask - slopes[:, None, None] * dist.to(dtype)  # [heads, q, keys]
        if kind != "none":
            mask = torch.cat([mask, mask.new_zeros(*mask.shape[:-1], 1)], dim=-1)
        mask = mask[None] if mask.dim() == 3 else mask[None, None]  # [1, 1 or heads, q, keys]
        # cos/sin once per block and rotary kind (the same positions in every layer), from the model's rotary
        # module: (query, key) for the band, then for the sinks.
        rot = {rk: [ad.cos_sin(p, dtype, rk) for p in (t - band_start, u - band_start, torch.clamp(t, max=capacity), j)]
               for rk in dict.fromkeys(kinds)}
        rdims = {rk: ad.rotated_dims(cs[0][0]) for rk, cs in rot.items()}  # leading dims each kind rotates

        x = ad.embed(ids[a:b])  # [q, hidden]
        block_kv = {}  # this block's band K/V of the layers that others reuse
        for li, layer in enumerate(layers):
            if not runs[li]:
                continue
            # q [q, heads, head_dim], k [q, kv_heads, head_dim], v [q, kv_heads, value dim], un-rotated (k, v: None
            # in a layer that reuses another's)
            q, k, v = ad.qkv(layer, x)
            own = sources[li] is None
            src = li if own else sources[li]
            if own:
                if a < s:  # block holds sink tokens: they are keys of this very block already
                    grab = slice(0, min(b, s) - a)
                    sink_k[li] = k[grab] if sink_k[li] is None else torch.cat([sink_k[li], k[grab]])
                    sink_v[li] = v[grab] if sink_v[li] is None else torch.cat([sink_v[li], v[grab]])
                band_k = k if tail_k[li] is None else torch.cat([tail_k[li], k])
                band_v = v if tail_v[li] is None else torch.cat([tail_v[li], v])
                if li in reused:
                    block_kv[li] = band_k, band_v
                # Keep the last w non-sink tokens' K/V for the next block.
                keep_from = max(min(s, b), b - w)
                tail_k[li], tail_v[li] = band_k[keep_from - band_start:], band_v[keep_from - band_start:]
            else:
                band_k, band_v = block_kv[src]
            # heads, K/V heads and value widths from this layer's tensors (Gemma 4's and Laguna's differ by layer)
            H, KV, Dv, r = q.shape[1], band_k.shape[1], band_v.shape[-1], rdims[kinds[li]]
            rot_q_band, rot_k_band, rot_q_sink, rot_k_sink = rot[kinds[li]]
            q_band = ad.apply_rotary(q, *rot_q_band, seq_major=True)
            k_band = ad.apply_rotary(band_k, *rot_k_band, seq_major=True)
            if n_sinks:
                q_sink = ad.apply_rotary(q, *rot_q_sink, seq_major=True)
                k_sink = ad.apply_rotary(sink_k[src], *rot_k_sink, seq_major=True)
                query = _cat_last(q_band[..., :r], q_sink[..., :r], q[..., r:])
                sink_keys = _cat_last(k_sink.new_zeros(n_sinks, KV, r), k_sink[..., :r], k_sink[..., r:])
                band_keys = _cat_last(k_band[..., :r], k_band.new_zeros(k_band.shape[0], KV, r), k_band[..., r:])
                keys = torch.cat([sink_keys, band_keys])
                values = torch.cat([sink_v[src], band_v])
            else:
                query, keys, values = q_band, k_band, band_v
            layer_mask = mask
            if kind != "none":
                keys = torch.cat([keys, keys.new_zeros(1, KV, keys.shape[-1])])
                values = torch.cat([values, values.new_zeros(1, KV, Dv)])
                if kind == "logit":
                    layer_mask = mask.expand(1, H, -1, -1).clone()  # (ALiBi models have no logit sink)
                    layer_mask[..., -1] = ad.sink_logit(layer).to(dtype)[None, :, None]
            # SDPA's fast kernels want as many K/V heads as query heads and one head dim for q, k and v;
            # otherwise it falls back to its slow path (2x slower on CPU): repeat K/V per group (HF's
            # repeat_kv order) and zero-pad V (or, were V wider, q and k) to one width, then drop the padding.
            if KV != H:
                keys, values = keys.repeat_interleave(H // KV, dim=1), values.repeat_interleave(H // KV, dim=1)
            width = max(query.shape[-1], Dv)
            if width > query.shape[-1]:
                query, keys = F.pad(query, (0, width - query.shape[-1])), F.pad(keys, (0, width - keys.shape[-1]))
            values = F.pad(values, (0, width - Dv))
            out = _attend(query, keys, values, layer_mask, scales[li], n_sinks, band_start, a, w,
                          extra=kind != "none", chunk=attn_chunk, softcap=softcap)[..., :Dv]
            x = ad.residual(layer, x, out.reshape(n_q, H * Dv))
        tail_start = max(min(s, b), b - w)
        yield a, b, ad.logits(x)


def _attend(query, keys, values, mask, scale, n_sinks: int, band_start: int, a: int, w: int, extra: bool,
            chunk: int | None = None, softcap: float | None = None) -> torch.Tensor:
    """SDPA of a block's queries [q, H, D'] against its keys [sinks | band | extra?], query chunk by chunk.

    Query t sees at most the w+1 band keys ending at t, yet the block's band spans w + the whole block: one
    SDPA call would score every query against every band key and mask most of them away (5x the useful work
    at block 1024, w 252). A chunk of queries gets only the band keys its first query can reach, about
    chunk + w of them. Same scores, same softmax: the keys left out were masked to -inf anyway. `softcap`:
    scores become cap·tanh(score / cap) before the mask, which SDPA cannot do: then the attention is written
    out as the model's own eager attention does it (softmax in float32). -> [q, H, D']"""
    n_q, n_keys = query.shape[0], keys.shape[0]
    n_band = n_keys - n_sinks - int(extra)
    chunk = chunk or max(64, w)
    outs = []
    for qa in range(0, n_q, chunk):
        qb = min(qa + chunk, n_q)
        lo = min(n_band, max(0, a + qa - w - band_start))  # the first band key query a+qa can see
        hi = min(n_band, a + qb - band_start)  # one past the last band key query a+qb-1 can see
        cols = [slice(0, n_sinks), slice(n_sinks + lo, n_sinks + hi)] + ([slice(n_keys - 1, n_keys)] if extra else [])
        k = torch.cat([keys[c] for c in cols]).transpose(0, 1)[None]
        v = torch.cat([values[c] for c in cols]).transpose(0, 1)[None]
        m = torch.cat([mask[..., qa:qb, c] for c in cols], dim=-1)
        q = query[qa:qb].transpose(0, 1)[None]
        if softcap is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=scale)
        else:
            scores = soft_cap(q @ k.transpose(-1, -2) * scale, softcap) + m
            out = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype) @ v
        outs.append(out[0].transpose(0, 1))
    return torch.cat(outs)


def parallel_nll(model, tokens, sinks: int, window: int | None, block_size: int = 1024, progress=None,
                 adapter: FamilyAdapter | None = None, attn_chunk: int | None = None) -> np.ndarray:
    """Per-token NLL [N-1] of tokens[1:], equal to `reference_nll` for the same (sinks, window)."""
    targets = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    nll = np.empty(len(targets) - 1, dtype=np.float64)
    for a, b, logits in parallel_logits(model, tokens, sinks, window, block_size, adapter, attn_chunk):
        nll[a:b] = F.cross_entropy(logits.float(), targets[a + 1 : b + 1].to(logits.device),
                                   reduction="none").double().cpu().numpy()
        if progress is not None:
            progress(b - a)
    return nll
