"""Sink variants: stock-loadable models, the learnable sink token, softmax-off-by-one, the learned sink logit."""

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, GPTNeoXForCausalLM

from sinktrain.model import ModelConfig, SinkConfig, build_model, lm_labels, prepend_sink_tokens
from sinktrain.model import sink_gptneox
from sinktrain.model.sink_gptneox import softmax1_attention, softmax1_attention_eager, softmax_with_extra_logit


def _ids(batch=2, n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 50277, (batch, n), generator=g)


def test_none_and_token_models_are_stock_gptneox(tmp_path):
    for kind, n in [("none", 0), ("token", 2)]:
        cfg = ModelConfig(preset="tiny", sink=SinkConfig(kind=kind, num_tokens=n))
        model = build_model(cfg, seed=3).eval()
        model.save_pretrained(tmp_path / kind)
        loaded = GPTNeoXForCausalLM.from_pretrained(tmp_path / kind).eval()
        assert type(loaded) is GPTNeoXForCausalLM
        ids = prepend_sink_tokens(_ids(), cfg.sink_token_ids)
        with torch.no_grad():
            torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=1e-5, rtol=0)


def test_token_variant_prepends_sinks_and_takes_no_loss_on_them():
    cfg = ModelConfig(preset="tiny", sink=SinkConfig(kind="token", num_tokens=2))
    model = build_model(cfg, seed=1).eval()
    text = _ids(n=10)
    ids = prepend_sink_tokens(text, cfg.sink_token_ids)
    assert ids.shape == (2, 12) and ids[:, :2].tolist() == [[50277, 50278]] * 2
    assert torch.equal(ids[:, 2:], text)
    with torch.no_grad():
        out = model(ids, labels=lm_labels(ids, cfg.num_sink_tokens))
        logits = model(ids).logits
    # Independent loss: predict text token k from position k-1, for text positions 2..11 only
    # (position 2, the first text token, is predicted from the last sink).
    manual = F.cross_entropy(logits[:, 1:-1].reshape(-1, logits.shape[-1]), ids[:, 2:].reshape(-1))
    torch.testing.assert_close(out.loss, manual, atol=1e-6, rtol=0)


def test_softmax1_equals_explicit_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 7, generator=g, dtype=torch.float64) * 3
    explicit = x.exp() / (1 + x.exp().sum(-1, keepdim=True))
    torch.testing.assert_close(softmax_with_extra_logit(x, 0.0), explicit, atol=1e-12, rtol=0)


def test_softmax1_attention_function_on_random_inputs():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=g) for _ in range(3))
    causal = torch.full((6, 6), float("-inf")).triu(1)
    out, w = softmax1_attention_eager(torch.nn.Module(), q, k, v, causal[None, None], scaling=8**-0.5)
    out_sdpa, w_sdpa = softmax1_attention(torch.nn.Module(), q, k, v, causal[None, None], scaling=8**-0.5)
    assert w_sdpa is None
    s = (q @ k.transpose(-1, -2)).double() * 8**-0.5
    e = torch.where(causal.bool(), torch.zeros_like(s), s.exp())
    weights = e / (1 + e.sum(-1, keepdim=True))
    torch.testing.assert_close(w.double(), weights, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.double(), (weights @ v.double()).transpose(1, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(out_sdpa.double(), (weights @ v.double()).transpose(1, 2), atol=1e-6, rtol=0)


def test_softmax1_very_negative_row_leaves_little_weight_on_real_keys():
    x = torch.full((1, 1, 1, 2048), -30.0)
    assert softmax_with_extra_logit(x, 0.0).sum().item() < 1e-3
    # whereas plain softmax must put all its mass somewhere
    assert abs(torch.softmax(x, -1).sum().item() - 1) < 1e-6


def test_logit_variant_with_minus_inf_equals_vanilla_exactly(tmp_path):
    cfg = ModelConfig(preset="tiny", sink=SinkConfig(kind="logit"))
    sink_model = build_model(cfg, seed=5).eval()
    for layer in sink_model.gpt_neox.layers:
        layer.attention.sink_logit.data.fill_(float("-inf"))
    vanilla = build_model(ModelConfig(preset="tiny"), seed=0, attn_implementation="eager").eval()
    missing, unexpected = vanilla.load_state_dict(sink_model.state_dict(), strict=False)
    assert not missing and all(k.endswith("sink_logit") for k in unexpected)
    ids = _ids()
    with torch.no_grad():
        # SDPA path (the default): equal to vanilla up to float32 rounding of a different kernel
        torch.testing.assert_close(sink_model(ids).logits, vanilla(ids).logits, atol=1e-5, rtol=0)
        # the eager formula: bit for bit
        sink_model.config._attn_implementation = sink_gptneox.EAGER_ATTN_IMPLEMENTATION[sink_gptneox.LOGIT]
        assert torch.equal(sink_model(ids).logits, vanilla(ids).logits)


def test_logit_variant_learns_its_sink_scalar_and_changes_outputs():
    cfg = ModelConfig(preset="tiny", sink=SinkConfig(kind="logit"))
    model = build_model(cfg, seed=5)
    ids = _ids()
    model(ids, labels=ids).loss.backward()
    grads = [layer.attention.sink_logit.grad for layer in model.gpt_neox.layers]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_softmax1_and_logit_load_with_automodel(tmp_path):
    for kind in ["softmax1", "logit"]:
        model = build_model(ModelConfig(preset="tiny", sink=SinkConfig(kind=kind)), seed=2).eval()
        if kind == "logit":
            for i, layer in enumerate(model.gpt_neox.layers):
                layer.attention.sink_logit.data = torch.linspace(-2, 2, 4) + i
        model.save_pretrained(tmp_path / kind)
        loaded = AutoModelForCausalLM.from_pretrained(tmp_path / kind).eval()
        assert loaded.config.model_type == "sinktrain_gpt_neox" and loaded.config.sink_kind == kind
        ids = _ids()
        with torch.no_grad():
            torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=1e-5, rtol=0)
        # and it really is a different function from vanilla attention on the same weights
        vanilla = GPTNeoXForCausalLM(model.config.__class__.__base__(**model.config.to_dict())).eval()
        vanilla.load_state_dict(model.state_dict(), strict=False)
        with torch.no_grad():
            assert (vanilla(ids).logits - model(ids).logits).abs().max() > 1e-3


def test_softmax1_and_logit_folders_load_without_sinktrain_through_remote_code(tmp_path):
    """save_model ships the self-contained architecture file; a process that never imports sinktrain loads it."""
    import subprocess
    import sys

    import numpy as np

    from sinktrain.model import save_model

    for kind in ["softmax1", "logit"]:
        model = build_model(ModelConfig(preset="tiny", sink=SinkConfig(kind=kind)), seed=4).eval()
        if kind == "logit":
            for layer in model.gpt_neox.layers:
                layer.attention.sink_logit.data = torch.tensor([-1.0, 0.5, 2.0, -3.0])
        folder = tmp_path / kind
        save_model(model, folder)
        ids = _ids()
        with torch.no_grad():
            np.save(tmp_path / f"{kind}.npy", model(ids).logits.numpy())
        np.save(tmp_path / "ids.npy", ids.numpy())
        code = f"""
import sys, numpy as np, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
assert not any(k == "sinktrain" or k.startswith("sinktrain.") for k in sys.modules), "sinktrain was imported"
with torch.no_grad():
    got = m(torch.from_numpy(np.load({str(tmp_path / 'ids.npy')!r}))).logits.numpy()
assert np.abs(got - np.load({str(tmp_path / f'{kind}.npy')!r})).max() < 1e-5
print(type(m).__name__, m.config._attn_implementation)
"""
        # run from tmp_path with a clean PYTHONPATH so the repo's own package cannot be picked up by accident
        env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip() == f"SinkGPTNeoXForCausalLM sinktrain_{kind}"
