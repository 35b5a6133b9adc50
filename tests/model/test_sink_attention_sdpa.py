"""softmax1 / logit through SDPA (one extra all-zero key and value) against their eager formula.

Bounds, fp32: every parameter's gradient within 1e-6 max abs (gradients here are <= ~0.1); logits within 1e-6
relative to the largest logit (max |logits| ~3.5, so ~3.5e-6 abs): float32 rounding of a different summation
order, the same size as transformers' own eager-vs-sdpa gap on these weights (1.7e-6 abs, measured). In fp64 the
two paths agree to 1e-12, so the formulas are the same and only the rounding differs.
"""

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache, GPTNeoXForCausalLM

from sinktrain.model import ModelConfig, SinkConfig, build_model
from sinktrain.model import sink_gptneox as sg
from sinktrain.model.probe import attention_probs
from sinktrain.stream.model_info import cache_kwarg

TOL = 1e-6
KINDS = ["softmax1", "logit"]


def _ids(batch=2, n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 50277, (batch, n), generator=g)


def _model(kind, seed=7):
    model = build_model(ModelConfig(preset="tiny", sink=SinkConfig(kind=kind)), seed=seed)
    if kind == "logit":
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in model.gpt_neox.layers:
                layer.attention.sink_logit.copy_(torch.randn(4, generator=g) * 2)
    return model


def _set_eager(model, eager: bool):
    impl = sg.ATTN_IMPLEMENTATION[model.config.sink_kind]
    model.config._attn_implementation = sg.EAGER_ATTN_IMPLEMENTATION[impl] if eager else impl


def _max_diff(a, b):
    return (a - b).abs().max().item()


def _forward_and_grads(model, ids, **kw):
    model.zero_grad(set_to_none=True)
    out = model(ids, labels=ids, **kw)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_sdpa_path_matches_eager_formula_forward_and_backward(kind, dtype):
    tol = TOL if dtype == torch.float32 else 1e-12
    model = _model(kind).to(dtype)
    assert model.config._attn_implementation == sg.ATTN_IMPLEMENTATION[kind]  # SDPA by default
    ids = _ids()
    logits, grads = _forward_and_grads(model, ids)
    _set_eager(model, True)
    logits_e, grads_e = _forward_and_grads(model, ids)
    assert _max_diff(logits, logits_e) <= tol * logits_e.abs().max().item()
    assert grads.keys() == grads_e.keys() == {n for n, _ in model.named_parameters()}
    if kind == "logit":
        sink_grads = [n for n in grads if n.endswith("sink_logit")]
        assert len(sink_grads) == 2 and all(grads[n].abs().min() > 0 for n in sink_grads)
    worst = max(_max_diff(grads[n], grads_e[n]) for n in grads)
    assert worst <= tol, worst


@pytest.mark.parametrize("kind", KINDS)
def test_sdpa_path_with_left_padding_matches_eager(kind):
    model = _model(kind, seed=8)
    ids = _ids(n=16, seed=1)
    pad = torch.ones_like(ids)
    pad[1, :5] = 0  # second row left-padded by 5
    logits, grads = _forward_and_grads(model, ids, attention_mask=pad)
    _set_eager(model, True)
    logits_e, grads_e = _forward_and_grads(model, ids, attention_mask=pad)
    assert _max_diff(logits, logits_e) <= TOL * logits_e.abs().max().item()
    assert max(_max_diff(grads[n], grads_e[n]) for n in grads) <= TOL
    # padding really changed the second row (the mask got through)
    with torch.no_grad():
        _set_eager(model, False)
        assert _max_diff(model(ids).logits[1, 5:], logits[1, 5:]) > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_cached_decoding_q_shorter_than_k(kind):
    """Prefill, then a 3-token chunk and a 1-token step on the cache: keys longer than queries."""
    model = _model(kind, seed=9).eval()
    ids = _ids(batch=2, n=20, seed=2)
    with torch.no_grad():
        full = model(ids).logits
        for eager in (False, True):
            _set_eager(model, eager)
            kw = {cache_kwarg(model): DynamicCache(config=model.config)}  # `cache` from 5.2x, else past_key_values
            first = model(ids[:, :16], use_cache=True, **kw).logits
            chunk = model(ids[:, 16:19], use_cache=True, **kw).logits
            step = model(ids[:, 19:], use_cache=True, **kw).logits
            got = torch.cat([first, chunk, step], dim=1)
            assert _max_diff(got, full) <= 2e-6  # cached vs one pass: also different matmul shapes


@pytest.mark.parametrize("kind", KINDS)
def test_attention_function_without_mask_is_sdpa_is_causal(kind):
    """No mask means what it means to transformers' SDPA integration (whose mask builder these names use): SDPA's
    is_causal, aligned top-left (query i sees keys 0..i; a static cache's empty slots come last), and every key
    for a single query. The fast path (no mask tensor) against the eager formula given that mask explicitly."""
    g = torch.Generator().manual_seed(3)
    module = torch.nn.Module()
    module.sink_logit = torch.nn.Parameter(torch.randn(3, generator=g))
    fn, fn_eager = {"softmax1": (sg.softmax1_attention, sg.softmax1_attention_eager),
                    "logit": (sg.logit_attention, sg.logit_attention_eager)}[kind]
    for q_len, k_len in [(6, 6), (3, 7), (1, 5)]:
        q = torch.randn(2, 3, q_len, 8, generator=g)
        k, v = (torch.randn(2, 3, k_len, 8, generator=g) for _ in range(2))
        hidden = torch.ones(q_len, k_len, dtype=torch.bool).triu(1) if q_len > 1 else torch.zeros(1, k_len).bool()
        causal = torch.zeros(q_len, k_len).masked_fill(hidden, torch.finfo(torch.float32).min)[None, None]
        out, w = fn(module, q, k, v, None, scaling=8**-0.5)
        out_e, w_e = fn_eager(module, q, k, v, causal, scaling=8**-0.5)
        out_e_none, _ = fn_eager(module, q, k, v, None, scaling=8**-0.5)  # the eager formula reads None alike
        assert w is None and w_e.shape == (2, 3, q_len, k_len)
        assert _max_diff(out, out_e) <= TOL and _max_diff(out_e_none, out_e) == 0
        # the mask given explicitly (bool, or float and longer than the keys) gives the same
        out_b, _ = fn(module, q, k, v, ~hidden[None, None], scaling=8**-0.5)
        longer = F.pad(causal, (0, 4), value=-1e30)
        out_l, _ = fn(module, q, k, v, longer, scaling=8**-0.5)
        assert _max_diff(out_b, out_e) <= TOL and _max_diff(out_l, out_e) <= TOL


def test_dropping_the_extra_column_would_be_caught():
    """The SDPA path is not vanilla SDPA: the extra key takes weight (softmax1), b_h per head moves it (logit)."""
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 3, 6, 8, generator=g) * 2 for _ in range(3))
    module = torch.nn.Module()
    vanilla = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
    out, _ = sg.softmax1_attention(module, q, k, v, None, scaling=8**-0.5)
    assert _max_diff(out, vanilla) > 1e-2
    module.sink_logit = torch.nn.Parameter(torch.tensor([float("-inf"), 0.0, 3.0]))
    out, _ = sg.logit_attention(module, q, k, v, None, scaling=8**-0.5)
    assert _max_diff(out[:, :, 0], vanilla[:, :, 0]) <= TOL  # b = -inf: exactly vanilla for that head
    assert _max_diff(out[:, :, 1], vanilla[:, :, 1]) > 1e-2
    s1, _ = sg.softmax1_attention(module, q, k, v, None, scaling=8**-0.5)
    assert _max_diff(out[:, :, 1], s1[:, :, 1]) <= TOL  # b = 0 is softmax1
    assert out[:, :, 2].abs().max() < s1[:, :, 2].abs().max()  # b = 3 drains more weight into the sink


@pytest.mark.parametrize("kind", KINDS)
def test_model_differs_from_vanilla_sdpa_on_same_weights(kind):
    model = _model(kind).eval()
    vanilla = GPTNeoXForCausalLM(model.config.__class__.__base__(**model.config.to_dict())).eval()
    vanilla.config._attn_implementation = "sdpa"
    vanilla.load_state_dict(model.state_dict(), strict=False)
    ids = _ids()
    with torch.no_grad():
        assert _max_diff(vanilla(ids).logits, model(ids).logits) > 1e-3
        if kind == "logit":
            for layer in model.gpt_neox.layers:
                layer.attention.sink_logit.fill_(float("-inf"))
            expected = vanilla(ids).logits  # b = -inf: vanilla up to fp32 rounding (logits relative, as above)
            assert _max_diff(expected, model(ids).logits) <= TOL * expected.abs().max().item()


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_queries_with_fp32_mask(kind):
    """bf16 (as under autocast) with transformers' fp32 mask: mask goes to the query dtype, finfo.min stays finite."""
    g = torch.Generator().manual_seed(5)
    module = torch.nn.Module()
    module.sink_logit = torch.nn.Parameter(torch.randn(4, generator=g))
    q, k, v = (torch.randn(2, 4, 10, 16, generator=g) for _ in range(3))
    mask = torch.zeros(2, 1, 10, 10).masked_fill(torch.ones(10, 10, dtype=torch.bool).triu(1),
                                                  torch.finfo(torch.float32).min)
    mask[1, ..., :3] = torch.finfo(torch.float32).min  # padding: rows 0-2 of sample 1 see nothing
    fn, fn_eager = (sg.softmax1_attention, sg.softmax1_attention_eager) if kind == "softmax1" else \
        (sg.logit_attention, sg.logit_attention_eager)
    out, _ = fn(module, q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, scaling=0.25)
    ref, _ = fn_eager(module, q, k, v, mask, scaling=0.25)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert _max_diff(out.float(), ref) < 0.05
    if kind == "logit":
        out.float().sum().backward()
        assert torch.isfinite(module.sink_logit.grad).all() and module.sink_logit.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_probe_and_output_attentions_still_get_weights(kind):
    model = _model(kind).eval()
    ids = _ids(n=12)
    probs = attention_probs(model, ids)
    assert model.config._attn_implementation == sg.ATTN_IMPLEMENTATION[kind]  # switched back
    assert len(probs) == 2 and probs[0].shape == (2, 4, 12, 12)
    assert (probs[0].sum(-1) < 1).all()  # the sink column took some weight
    # No hooks left behind (a compiled block would trace them, sinktrain/model/probe.py), and a second probe,
    # which has transformers install them again, gets the same weights.
    assert not any(m._forward_hooks for m in model.modules())
    assert all(_max_diff(a, p) == 0 for a, p in zip(attention_probs(model, ids), probs))
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    for a, p in zip(out.attentions, probs):
        assert _max_diff(a, p) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_attention_function_equals_the_eager_formula_within_1e6_forward_and_backward(kind):
    """The issue's bar, at the attention function itself (fp32, transformers' causal mask, unit-scale inputs
    and upstream gradient): output within 1e-6 absolute (measured 3.6e-7); the gradients of q, k, v (and
    sink_logit), which reach 2-4 here, within 1e-6 relative to their largest entry (measured at most 1.2e-6
    abs on a largest entry of 3.9, i.e. 3e-7 relative: a few fp32 ulps)."""
    g = torch.Generator().manual_seed(11)
    fn, fn_eager = {"softmax1": (sg.softmax1_attention, sg.softmax1_attention_eager),
                    "logit": (sg.logit_attention, sg.logit_attention_eager)}[kind]
    B, H, T, D = 2, 4, 64, 16
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    hidden = torch.ones(T, T, dtype=torch.bool).triu(1)
    causal = torch.zeros(T, T).masked_fill(hidden, torch.finfo(torch.float32).min)[None, None]
    results = []
    # transformers' causal mask through SDPA with a mask; no mask (SDPA's is_causal, the training path); eager
    for f, mask in ((fn, causal), (fn, None), (fn_eager, causal)):
        module = torch.nn.Module()
        module.sink_logit = torch.nn.Parameter(torch.randn(H, generator=torch.Generator().manual_seed(5)))
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out, _ = f(module, *leaves, mask, scaling=D**-0.5)
        (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(9))).sum().backward()
        grads = [t.grad for t in leaves] + ([module.sink_logit.grad] if kind == "logit" else [])
        results.append((out.detach(), grads))
    out_e, grads_e = results[-1]
    for out, grads in results[:-1]:
        assert _max_diff(out, out_e) <= TOL
        for a, b in zip(grads, grads_e):
            assert _max_diff(a, b) <= TOL * b.abs().max().item()


@pytest.mark.parametrize("kind", KINDS)
def test_training_forward_passes_no_mask_tensor_to_sdpa(kind, monkeypatch):
    """A forward without padding (training) reaches SDPA with is_causal and no mask tensor, which leaves SDPA
    free to pick a flash kernel (they take no mask); a padded batch still gets its mask."""
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((kwargs.get("attn_mask") is None, kwargs.get("is_causal", False)))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model = _model(kind)
    ids = _ids()
    model(ids, labels=ids).loss.backward()
    assert calls and all(call == (True, True) for call in calls), calls
    calls.clear()
    pad = torch.ones_like(ids)
    pad[1, :5] = 0
    model(ids, attention_mask=pad)
    assert calls and all(call == (False, False) for call in calls), calls
