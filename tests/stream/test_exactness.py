"""The two streaming modes against each other, against plain teacher forcing, and against an independent
per-token implementation written here from the definition of the StreamingLLM cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stream_helpers import tiny

from sinktrain.stream import parallel_nll, recompute_nll, reference_nll

TOL = 1e-5  # max |ΔNLL|, fp32: one wrong token must fail, so never a mean


def teacher_forced_nll(model, tokens) -> np.ndarray:
    with torch.no_grad():
        logits = model(input_ids=torch.as_tensor(tokens)[None], use_cache=False).logits[0].float()
    return F.cross_entropy(logits[:-1], torch.as_tensor(tokens[1:]), reduction="none").double().numpy()


@pytest.mark.parametrize("sinks", [0, 1, 4])
def test_parallel_matches_reference_on_trained_model(trained_model, book_tokens, sinks):
    window = 12
    stream = book_tokens[: 8 * window + 20]
    ref = reference_nll(trained_model, stream, sinks, window)
    par = parallel_nll(trained_model, stream, sinks, window, block_size=23)  # block edges inside the stream
    assert np.abs(ref - par).max() < TOL
    # The configuration must matter, else the agreement above proves nothing about eviction.
    assert np.abs(par - teacher_forced_nll(trained_model, stream)).mean() > 100 * TOL


def sequential_residual_model():
    """A GPT-NeoX with use_parallel_residual=False (not Pythia's layout, but a supported GPT-NeoX folder)."""
    from transformers import GPTNeoXForCausalLM

    from sinktrain.model import ModelConfig, hf_config

    cfg = hf_config(ModelConfig(preset="tiny"))
    cfg.use_parallel_residual = False
    torch.manual_seed(4)
    return GPTNeoXForCausalLM(cfg).eval()


@pytest.mark.parametrize("kind", ["none", "softmax1", "logit", "sequential-residual"])
def test_parallel_matches_reference_on_random_models(book_tokens, kind):
    model = sequential_residual_model() if kind == "sequential-residual" else tiny(kind, seed=3)
    if kind == "logit":  # non-trivial learned sink logits, different per head and layer
        with torch.no_grad():
            for layer in model.gpt_neox.layers:
                layer.attention.sink_logit.normal_(0.0, 2.0)
    window = 8
    stream = book_tokens[: 8 * window + 5]
    for sinks in (0, 1, 4):
        ref = reference_nll(model, stream, sinks, window)
        for chunk in (None, 3):  # one attention call per block, or query chunks of 3 inside it
            par = parallel_nll(model, stream, sinks, window, block_size=16, attn_chunk=chunk)
            assert np.abs(ref - par).max() < TOL, (kind, sinks, chunk)


def test_window_longer_than_stream_equals_teacher_forcing(trained_model, book_tokens):
    stream = book_tokens[:90]
    expected = teacher_forced_nll(trained_model, stream)
    for sinks in (0, 1, 4):
        for got in (reference_nll(trained_model, stream, sinks, 100),
                    parallel_nll(trained_model, stream, sinks, 100, block_size=32)):
            assert np.abs(got - expected).max() < TOL
    assert np.abs(parallel_nll(trained_model, stream, 0, None) - expected).max() < TOL  # dense
    assert np.abs(reference_nll(trained_model, stream, 0, None) - expected).max() < TOL
    assert np.abs(recompute_nll(trained_model, stream, cache=len(stream)) - expected).max() < TOL


def test_recompute_uses_the_last_cache_tokens(trained_model, book_tokens):
    cache, stream = 16, book_tokens[:60]
    got = recompute_nll(trained_model, stream, cache, batch_size=7)
    for t in (3, cache - 1, cache + 5, len(stream) - 2):  # t predicts token t+1 from stream[t-C+1 .. t]
        window = stream[max(0, t - cache + 1) : t + 2]
        assert got[t] == pytest.approx(teacher_forced_nll(trained_model, window)[-1], abs=1e-4)


def _rotate(x, pos, inv_freq):
    """GPT-NeoX rotary on the first 2*len(inv_freq) dims, written out independently."""
    ang = pos * inv_freq  # [r/2]
    r = 2 * inv_freq.numel()
    x1, x2 = x[..., : r // 2], x[..., r // 2 : r]
    c, s = torch.cos(ang), torch.sin(ang)
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s, x[..., r:]], dim=-1)


def definition_nll(model, tokens, sinks, window):
    """Token by token, from the definition: cache after step t-1 = first s tokens + last w tokens; the query's
    keys sit at their index inside the cache, the query at the last index; each token's per-layer K/V are
    computed once, when it is the query."""
    gn = model.gpt_neox
    heads = model.config.num_attention_heads
    hd = model.config.hidden_size // heads
    inv_freq = gn.rotary_emb.inv_freq.double()
    kv = []  # kv[t][layer] = (k unrotated, v), each [heads, hd]
    out = []
    with torch.no_grad():
        for t, tok in enumerate(tokens[:-1]):
            if t <= sinks + window:
                visible = list(range(t + 1))
            else:
                visible = list(range(sinks)) + list(range(t - window, t + 1))
            x = gn.embed_in.weight[int(tok)].double()
            kv.append([])
            for li, layer in enumerate(gn.layers):
                ln1, att = layer.input_layernorm, layer.attention
                h = F.layer_norm(x, (x.numel(),), ln1.weight.double(), ln1.bias.double(), 1e-5)
                qkv = (att.query_key_value.weight.double() @ h + att.query_key_value.bias.double()).view(heads, 3 * hd)
                q, k, v = qkv[:, :hd], qkv[:, hd : 2 * hd], qkv[:, 2 * hd :]
                kv[t].append((k, v))
                keys = torch.stack([_rotate(kv[u][li][0], i, inv_freq) for i, u in enumerate(visible)], dim=1)
                vals = torch.stack([kv[u][li][1] for u in visible], dim=1)
                qr = _rotate(q, len(visible) - 1, inv_freq)
                p = torch.softmax((keys @ qr[:, :, None])[..., 0] / hd**0.5, dim=-1)
                att = (p[:, :, None] * vals).sum(1).reshape(-1)
                att = layer.attention.dense.weight.double() @ att + layer.attention.dense.bias.double()
                ln2 = layer.post_attention_layernorm
                m = F.layer_norm(x, (x.numel(),), ln2.weight.double(), ln2.bias.double(), 1e-5)
                up, down = layer.mlp.dense_h_to_4h, layer.mlp.dense_4h_to_h
                mlp = down.weight.double() @ F.gelu(up.weight.double() @ m + up.bias.double()) + down.bias.double()
                x = x + att + mlp  # Pythia's parallel residual
            ln = gn.final_layer_norm
            final = F.layer_norm(x, (x.numel(),), ln.weight.double(), ln.bias.double(), 1e-5)
            logits = model.get_output_embeddings().weight.double() @ final
            out.append(float(-torch.log_softmax(logits, -1)[int(tokens[t + 1])]))
    return np.array(out)


@pytest.mark.parametrize("sinks", [0, 2])
def test_independent_definition_agrees_with_both_modes(trained_model, book_tokens, sinks):
    assert len(trained_model.gpt_neox.layers) == 2 and trained_model.config.use_parallel_residual
    window, stream = 6, book_tokens[:50]
    expected = definition_nll(trained_model, stream, sinks, window)
    assert np.abs(reference_nll(trained_model, stream, sinks, window) - expected).max() < TOL
    assert np.abs(parallel_nll(trained_model, stream, sinks, window, block_size=13) - expected).max() < TOL


@pytest.mark.parametrize("sinks, window, block", [(4, 5, 2), (3, 1, 3), (0, 1, 7)])
def test_blocks_smaller_than_the_sinks_and_one_token_windows(book_tokens, sinks, window, block):
    model = tiny("softmax1", seed=6)
    stream = book_tokens[:40]
    ref = reference_nll(model, stream, sinks, window)
    assert np.abs(ref - parallel_nll(model, stream, sinks, window, block_size=block)).max() < TOL
