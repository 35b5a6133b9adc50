"""sinktrain.train.loss: the chunked fused head + cross-entropy equals the stock causal-LM loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from sinktrain.train.loss import causal_lm_loss, chunked_linear_cross_entropy

V, D = 512, 64


def tiny_gptneox(seed=0, bias=False):
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(vocab_size=V, hidden_size=D, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128, use_cache=False,
                        tie_word_embeddings=False, hidden_dropout=0.0, attention_dropout=0.0)
    model = GPTNeoXForCausalLM(cfg)
    if bias:  # GPT-NeoX has no head bias; the loss must still handle one
        head = torch.nn.Linear(D, V, bias=True)
        torch.nn.init.normal_(head.bias, std=0.5)
        head.weight.data.copy_(model.lm_head.weight)
        model.set_output_embeddings(head)
    return model.train()


def batch(b=2, t=37, seed=1, vocab=V):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (b, t), generator=g)
    return ids, ids.clone()


def loss_and_grads(model, ids, labels, impl, **kw):
    model.zero_grad(set_to_none=True)
    loss = causal_lm_loss(model, ids, labels, impl=impl, **kw)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return loss.detach(), grads


def assert_same_as_stock(model, ids, labels, chunk_tokens, atol=1e-6):
    ref, ref_grads = loss_and_grads(model, ids, labels, "off")
    # The stock path is the model's own loss.
    with torch.no_grad():
        torch.testing.assert_close(ref, model(input_ids=ids, labels=labels, use_cache=False).loss, atol=0, rtol=0)
    loss, grads = loss_and_grads(model, ids, labels, "chunked", chunk_tokens=chunk_tokens)
    assert abs(loss.item() - ref.item()) <= atol, (loss.item(), ref.item())
    assert grads.keys() == ref_grads.keys()
    for name, g in ref_grads.items():
        assert grads[name].dtype == g.dtype
        diff = (grads[name] - g).abs().max().item()
        assert diff <= atol, f"{name}: max |grad diff| {diff:.3g}"
        assert g.abs().max() > 0 or name.endswith("sink_logit"), name  # the comparison is not vacuous
    return loss


def n_valid(labels):
    return int((labels[:, 1:] != -100).sum())


def test_chunked_equals_stock_with_several_ragged_chunks():
    model = tiny_gptneox()
    ids, labels = batch(b=2, t=37)  # 72 predicted tokens -> chunks of 10: 7 full + a ragged one of 2
    assert n_valid(labels) % 10 and n_valid(labels) // 10 >= 3
    assert_same_as_stock(model, ids, labels, chunk_tokens=10)


@pytest.mark.parametrize("chunk_tokens", [1, 7, 71, 72, 4096])
def test_chunked_equals_stock_with_ignored_labels_at_start_and_middle(chunk_tokens):
    model = tiny_gptneox(seed=2)
    ids, labels = batch(b=2, t=37, seed=3)
    labels[:, :3] = -100       # e.g. sink tokens: never predicted
    labels[0, 15:22] = -100    # padding / a masked span in the middle
    labels[1, -1] = -100
    assert n_valid(labels) == 2 * 36 - 2 * 2 - 7 - 1
    assert_same_as_stock(model, ids, labels, chunk_tokens=chunk_tokens)


def test_chunked_handles_a_head_bias():
    model = tiny_gptneox(seed=4, bias=True)
    ids, labels = batch(b=2, t=21, seed=5)
    labels[:, 4] = -100
    assert_same_as_stock(model, ids, labels, chunk_tokens=9)


def test_chunked_equals_stock_on_sink_logit_model():
    from sinktrain.model import ModelConfig, SinkConfig, build_model
    from sinktrain.model.sink_gptneox import SinkGPTNeoXForCausalLM

    model = build_model(ModelConfig(preset="tiny", sink=SinkConfig(kind="logit")), seed=6).train()
    assert isinstance(model, SinkGPTNeoXForCausalLM)
    with torch.no_grad():  # non-zero sink logits, so their gradients are exercised too
        for layer in model.gpt_neox.layers:
            layer.attention.sink_logit.normal_(0, 1)
    ids, labels = batch(b=1, t=40, seed=7, vocab=50277)
    labels[:, :1] = -100
    assert_same_as_stock(model, ids, labels, chunk_tokens=16)
    assert all(p.grad.abs().max() > 0 for n, p in model.named_parameters() if n.endswith("sink_logit"))


def test_function_against_cross_entropy_for_every_chunk_size():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(23, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(30, 8, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(30, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 30, (23,), generator=g)
    ref = F.cross_entropy(F.linear(h, w, b), t)
    ref_grads = torch.autograd.grad(3.0 * ref, (h, w, b))  # backward must scale by the incoming gradient
    for chunk in (1, 2, 5, 22, 23, 100):
        loss = chunked_linear_cross_entropy(h, w, b, t, chunk_tokens=chunk)
        torch.testing.assert_close(loss, ref, atol=1e-12, rtol=0)
        for got, want in zip(torch.autograd.grad(3.0 * loss, (h, w, b)), ref_grads):
            torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunked_linear_cross_entropy(h, w, b, t, chunk_tokens=0)


def test_fp16_gradients_survive_until_the_loss_scale():
    """DeepSpeed's fp16 engine: fp16 hidden states and head, the loss scaled by 2^12 before backward. The chunked
    loss computes its gradients in the forward, so (softmax - onehot) / n must not be rounded to fp16 there:
    with 4096 tokens and 8192 words most entries are ~3e-8, below fp16's smallest subnormal."""
    g = torch.Generator().manual_seed(3)
    n, v, d, scale = 4096, 8192, 32, 2.0 ** 12
    h = (torch.randn(n, d, generator=g) * 0.5).half().requires_grad_()
    w = (torch.randn(v, d, generator=g) * 0.05).half().requires_grad_()
    t = torch.randint(0, v // 2, (n,), generator=g)  # the upper half of the vocabulary is never a target
    h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    want = torch.autograd.grad(F.cross_entropy(h64 @ w64.t(), t), (h64, w64))

    def rel_errors(loss):
        got = torch.autograd.grad(loss * scale, (h, w))  # what the loss scaler does
        assert all(x.dtype == torch.float16 for x in got)
        return [((x.double() / scale - y).norm() / y.norm()).item() for x, y in zip(got, want)]

    chunked = rel_errors(chunked_linear_cross_entropy(h, w, None, t, chunk_tokens=1024))
    stock = rel_errors(F.cross_entropy((h @ w.t()).float(), t))
    assert chunked[0] < 2e-3 and chunked[1] < 2e-3, chunked  # before the fix: 0.12 for h (1.0 for w on CUDA)
    assert chunked[0] <= stock[0] and chunked[1] <= stock[1], (chunked, stock)


class _Shapes(TorchDispatchMode):
    """Records the shape of every tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(o, torch.Tensor):
                self.shapes.append(tuple(o.shape))
        return out


def _largest_logits_rows(model, ids, labels, impl, chunk_tokens):
    """The most rows of any [rows, V]-sized tensor made in forward + backward (the [V, D] weight aside)."""
    model.zero_grad(set_to_none=True)
    with _Shapes() as rec:
        causal_lm_loss(model, ids, labels, impl=impl, chunk_tokens=chunk_tokens).backward()
    rows = [torch.Size(s).numel() // V for s in rec.shapes if V in s and s not in ((V, D), (D, V))]
    return max(rows)


def test_chunked_never_materialises_all_logits():
    model = tiny_gptneox()
    ids, labels = batch(b=2, t=37)
    assert _largest_logits_rows(model, ids, labels, "off", 10) == 2 * 37  # the recorder does see the logits
    assert _largest_logits_rows(model, ids, labels, "chunked", 10) == 10


def test_bf16_autocast_smoke():
    model = tiny_gptneox(seed=8)
    ids, labels = batch(b=2, t=33, seed=9)
    labels[:, :2] = -100
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref, ref_grads = loss_and_grads(model, ids, labels, "off")
        loss, grads = loss_and_grads(model, ids, labels, "chunked", chunk_tokens=8)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert abs(loss.item() - ref.item()) < 2e-2, (loss.item(), ref.item())
    for name, g in ref_grads.items():
        assert grads[name].dtype == g.dtype == torch.float32
        scale = g.abs().max().item()
        assert (grads[name] - g).abs().max().item() <= 2e-2 * scale + 1e-6, name


def test_bf16_weights_give_bf16_grads():
    model = tiny_gptneox(seed=10).to(torch.bfloat16)
    ids, labels = batch(b=1, t=30, seed=11)
    ref, ref_grads = loss_and_grads(model, ids, labels, "off")
    loss, grads = loss_and_grads(model, ids, labels, "chunked", chunk_tokens=8)
    assert abs(loss.item() - ref.item()) < 2e-2
    assert all(g.dtype == torch.bfloat16 for g in grads.values())
    head = "lm_head.weight"
    assert (grads[head].float() - ref_grads[head].float()).abs().max() <= 2e-2 * ref_grads[head].abs().max()


def test_all_labels_ignored_matches_stock_nan_and_zero_grads():
    model = tiny_gptneox(seed=12)
    ids, labels = batch(b=2, t=10)
    labels[:] = -100
    ref, ref_grads = loss_and_grads(model, ids, labels, "off")
    loss, grads = loss_and_grads(model, ids, labels, "chunked", chunk_tokens=4)
    assert torch.isnan(ref) and torch.isnan(loss)
    for name, g in ref_grads.items():
        assert torch.equal(grads[name], g) and not g.any(), name


def test_unknown_impl_lists_the_choices():
    model = tiny_gptneox()
    ids, labels = batch(b=1, t=5)
    with pytest.raises(ValueError, match="unknown loss impl 'fused'; choose one of off, chunked, liger, auto"):
        causal_lm_loss(model, ids, labels, impl="fused")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_liger_without_cuda_says_how_to_fix_it():
    model = tiny_gptneox()
    ids, labels = batch(b=1, t=5)
    with pytest.raises(ValueError, match=r"impl='liger' needs a CUDA model .*use impl='chunked'"):
        causal_lm_loss(model, ids, labels, impl="liger")


def test_liger_refuses_fp16_and_auto_takes_chunked():
    model = tiny_gptneox(seed=15).half()
    ids, labels = batch(b=1, t=12, seed=16)
    with pytest.raises(ValueError, match=r"impl='liger' under fp16 .* use impl='chunked' \(or 'auto'\) with fp16"):
        causal_lm_loss(model, ids, labels, impl="liger")
    ref, ref_grads = loss_and_grads(model, ids, labels, "chunked", chunk_tokens=5)
    loss, grads = loss_and_grads(model, ids, labels, "auto", chunk_tokens=5)
    assert torch.equal(loss, ref) and all(torch.equal(grads[n], g) for n, g in ref_grads.items())


def test_auto_on_cpu_is_chunked():
    model = tiny_gptneox(seed=13)
    ids, labels = batch(b=1, t=20, seed=14)
    ref, ref_grads = loss_and_grads(model, ids, labels, "chunked", chunk_tokens=6)
    loss, grads = loss_and_grads(model, ids, labels, "auto", chunk_tokens=6)
    assert torch.equal(loss, ref) and all(torch.equal(grads[n], g) for n, g in ref_grads.items())


_MEMORY_PROBE = """
import resource, sys, time, torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
from sinktrain.train.loss import causal_lm_loss
torch.set_num_threads(1)
impl, chunk = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=50304, hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=1024, max_position_embeddings=2048, use_cache=False))
ids = torch.randint(0, 50304, (1, 2048))
causal_lm_loss(model, ids[:, :8], ids[:, :8], impl=impl, chunk_tokens=chunk).backward()  # warm up allocator, kernels
model.zero_grad(set_to_none=False)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
loss = causal_lm_loss(model, ids, ids, impl=impl, chunk_tokens=chunk)
loss.backward()
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{impl:8s} chunk={chunk:5d}  peak RSS above model+grads {(peak - base) / 1024:7.1f} MiB  "
      f"fwd+bwd {dt:5.2f} s  loss {loss.item():.5f}")
"""


def print_cpu_memory_comparison():
    """Rough CPU peak memory, stock vs chunked (V=50304, T=2048, B=1, d=256, 2 layers), one subprocess each:
    `PYTHONPATH=. python tests/train/test_loss.py`."""
    import subprocess
    import sys

    for impl, chunk in (("off", 4096), ("chunked", 4096), ("chunked", 1024), ("chunked", 256)):
        out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, impl, str(chunk)], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip()[-2000:])


if __name__ == "__main__":
    print_cpu_memory_comparison()
