"""attention_sink_stats against layer-0 attention computed by hand from the weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sinktrain.stream import attention_sink_stats


def layer0_attention(model, ids):
    gn = model.gpt_neox
    heads = model.config.num_attention_heads
    hd = model.config.hidden_size // heads
    inv = gn.rotary_emb.inv_freq.double()
    r = 2 * inv.numel()
    layer = gn.layers[0]
    x = gn.embed_in.weight[ids].double()
    ln = layer.input_layernorm
    h = F.layer_norm(x, (x.shape[-1],), ln.weight.double(), ln.bias.double(), 1e-5)
    qkv = (h @ layer.attention.query_key_value.weight.double().T + layer.attention.query_key_value.bias.double())
    qkv = qkv.view(len(ids), heads, 3 * hd).transpose(0, 1)
    q, k = qkv[..., :hd], qkv[..., hd : 2 * hd]
    ang = torch.arange(len(ids)).double()[:, None] * inv[None]
    c, s = ang.cos(), ang.sin()

    def rot(t):
        a, b = t[..., : r // 2], t[..., r // 2 : r]
        return torch.cat([a * c - b * s, b * c + a * s, t[..., r:]], -1)

    scores = rot(q) @ rot(k).transpose(-1, -2) / hd**0.5
    causal = torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), -1)  # [heads, q, k]


def test_first_k_mass_matches_hand_computation(trained_model, book_tokens):
    ids = torch.as_tensor(book_tokens[:40])
    stats = attention_sink_stats(trained_model, ids, first_k=3)
    assert stats.shape == (2, 4)
    probs = layer0_attention(trained_model, ids)
    expected = probs[:, 3:, :3].sum(-1).mean(-1)  # per head, over queries that see beyond the first 3
    assert torch.allclose(stats[0].double(), expected, atol=1e-5)
    assert ((stats > 0) & (stats < 1)).all()
    with pytest.raises(ValueError, match="first_k"):
        attention_sink_stats(trained_model, ids[:3], first_k=3)
