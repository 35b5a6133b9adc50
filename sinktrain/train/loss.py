"""Causal-LM loss without the [tokens x vocab] fp32 logits: a fused output-head + cross-entropy.

`causal_lm_loss(model, input_ids, labels, impl)` is the mean next-token cross-entropy of a transformers
causal LM (stock GPTNeoXForCausalLM or sinktrain's SinkGPTNeoXForCausalLM), equal in value and gradients to
`model(input_ids=..., labels=..., use_cache=False).loss`:

  off      the stock path: the model computes all logits [B, T, V], upcasts them to fp32, cross-entropy.
  chunked  the model body gives the final hidden states [B, T, d]; they are shifted (position t predicts
           labels[t + 1]), ignored positions (-100) dropped, and the output head and the cross-entropy run
           `chunk_tokens` tokens at a time in one autograd.Function that also computes the gradients of
           hidden states and head weight during the forward (as Liger's fused linear cross-entropy does), so
           at most [chunk_tokens, V] fp32 logits exist at once. Pure PyTorch, any device.
  liger    the same on CUDA through liger-kernel's Triton LigerFusedLinearCrossEntropyFunction.
  auto     liger on CUDA where liger-kernel imports (not under fp16, below), else chunked.

Mixed precision follows what the stock head does: under autocast the head's matmul runs in the autocast
dtype (the logits are then upcast to fp32, as transformers' loss does); without autocast in the common dtype
of hidden states and weight. Gradients come back in the inputs' dtypes; the head-weight gradient is
accumulated over chunks in fp32. So with fp32 weights under bf16 autocast `chunked` gives the head weight an
fp32 gradient where stock (and liger) round it to bf16 once: the two differ by that rounding (~2e-3 relative),
every other gradient is the same.

fp16 (DeepSpeed's fp16 engine, or fp16 autocast): the gradients are computed in the forward, before any loss
scale can reach them, and (softmax - onehot) / n is mostly below fp16's smallest normal 6e-5 (1/V / n is ~1e-9
for a 32k-token micro-batch). So `chunked` casts the block as 2^10 (softmax - onehot), divides by 2^10 n after
the head's matmuls, and keeps every gradient in fp32 until backward has multiplied it by the incoming gradient
(the loss scale). liger-kernel keeps them in fp16 scaled by 1/n: `auto` uses `chunked` under fp16, and `liger`
refuses it.

No valid target (every label -100, or sequences of one token): the stock mean over zero tokens is nan with
all gradients zero, and `off`/`chunked`/`liger`/`auto` all return exactly that.
"""

from __future__ import annotations

import torch
from torch import nn

IGNORE_INDEX = -100
IMPLS = ("off", "chunked", "liger", "auto")
FP16_BLOCK_SCALE = 2.0 ** 10


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """mean_i CE(hidden[i] @ weight.T (+ bias), targets[i]) over all rows, in chunks of rows.

    hidden [N, d], weight [V, d], bias [V] or None, targets [N] (all valid: the caller drops ignored rows).
    Forward computes the loss and, chunk by chunk, the gradients for hidden / weight / bias (softmax minus
    one-hot, over N); backward only scales those by the incoming gradient. Peak extra memory: one
    [chunk, V] fp32 logits block (worked on in place; plus its compute-dtype copy under autocast) and the
    gradients themselves.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_tokens: int, compute_dtype: torch.dtype):
        n = hidden.shape[0]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        device = hidden.device
        with torch.autocast(device_type=device.type, enabled=False):
            w = weight.to(compute_dtype)
            b = bias.to(compute_dtype) if bias is not None else None
            acc = torch.promote_types(compute_dtype, torch.float32)  # fp32, or fp64 for fp64 inputs
            # Every gradient stays in `acc` until backward has applied the loss scale (see the module docstring).
            grad_h = torch.zeros(hidden.shape, dtype=acc, device=device) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=acc, device=device) if need_w else None
            grad_b = torch.zeros(bias.shape, dtype=acc, device=device) if need_b else None
            loss_sum = torch.zeros((), dtype=acc, device=device)
            inv_n = 1.0 / n if n else 0.0
            # fp16 cannot hold (softmax - onehot) / n: scale the block by 2^10 instead (|entries| <= 1, so the
            # head's products stay far below fp16's 65504) and apply 1 / (2^10 n) to the fp32 results.
            pre, post = (FP16_BLOCK_SCALE, inv_n / FP16_BLOCK_SCALE) if compute_dtype == torch.float16 else (inv_n, 1.0)
            for start in range(0, n, chunk_tokens):
                end = min(start + chunk_tokens, n)
                h = hidden[start:end].to(compute_dtype)
                t = targets[start:end]
                logits = h @ w.t()
                if b is not None:
                    logits = logits + b
                logits = logits.to(acc)  # [c, V], the only vocabulary-sized block: everything below is in place
                target_logit = logits.gather(1, t[:, None]).squeeze(1)
                row_max = logits.amax(dim=-1, keepdim=True)
                e = logits.sub_(row_max).exp_()  # exp(logits - max); torch.logsumexp would allocate a 2nd block
                sum_e = e.sum(dim=-1, keepdim=True)
                lse = (row_max + sum_e.log()).squeeze(1)
                loss_sum += (lse - target_logit).sum()
                if need_h or need_w or need_b:
                    # d(mean CE)/d(logits) = (softmax - onehot) / n = g * post
                    g = e.div_(sum_e)
                    g[torch.arange(end - start, device=device), t] -= 1.0
                    g.mul_(pre)
                    if need_b:
                        grad_b += g.sum(0) * post
                    g_c = g.to(compute_dtype)  # the head's backward matmuls run in the forward's dtype
                    # Keep the fp32 block only where the weight gradient needs it (low precision on CPU).
                    g_acc = g if compute_dtype != acc and not h.is_cuda else None
                    del logits, e, g
                    if need_h:
                        grad_h[start:end] = _matmul_acc(g_c, w, g_acc, acc, transpose=False) * post
                    if need_w:
                        grad_w += _matmul_acc(g_c, h, g_acc, acc) * post
                    del g_c, g_acc
            # Mean over zero tokens is 0/0 = nan, as in torch's cross_entropy(reduction="mean").
            loss = loss_sum / n
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        # Scale first (grad_out is the loss scale under fp16), round to the inputs' dtypes after.
        grads = [g if g is None or torch.equal(grad_out, torch.ones_like(grad_out)) else g * grad_out.to(g.dtype)
                 for g in ctx.saved_tensors]
        grads = [g.to(dtype) if g is not None else None for g, dtype in zip(grads, ctx.dtypes)]
        return grads[0], grads[1], grads[2], None, None, None


def _matmul_acc(g_c: torch.Tensor, h: torch.Tensor, g_acc: torch.Tensor | None, acc: torch.dtype,
                transpose: bool = True) -> torch.Tensor:
    """g_c.T @ h (or g_c @ h) with an `acc`-dtype result: the head-weight gradient is summed over chunks
    unrounded, and no gradient is rounded to fp16 before the loss scale reaches it.

    Low-precision inputs on CUDA: one tensor-core matmul with an fp32 output (torch.mm out_dtype). Elsewhere
    (CPU has no such kernel) the fp32 gradient block `g_acc` (or g_c upcast) times the upcast other side.
    """
    a = g_c.t() if transpose else g_c
    if g_c.dtype == acc:
        return a @ h
    if h.is_cuda:
        try:
            return torch.mm(a, h, out_dtype=acc)
        except (TypeError, RuntimeError, NotImplementedError):
            pass
    a = g_acc if g_acc is not None else g_c.to(acc)
    return (a.t() if transpose else a) @ h.to(acc)


def _body(model: nn.Module) -> nn.Module:
    """The transformer without its output head (GPTNeoXForCausalLM.gpt_neox)."""
    body = getattr(model, "base_model", None)
    if body is None or body is model:
        raise ValueError(f"{type(model).__name__} exposes no base_model to run without its output head")
    return body


def _shifted_valid(model, input_ids, labels, model_kwargs):
    """Final hidden states of the positions whose next label is valid, those labels, and the head."""
    out = _body(model)(input_ids=input_ids, use_cache=False, **model_kwargs)
    hidden = out.last_hidden_state[:, :-1]
    targets = labels[:, 1:].to(device=hidden.device, dtype=torch.long)
    mask = targets != IGNORE_INDEX
    head = model.get_output_embeddings()
    return hidden[mask], targets[mask], head.weight, getattr(head, "bias", None)


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def chunked_linear_cross_entropy(hidden, weight, bias, targets, chunk_tokens: int = 4096) -> torch.Tensor:
    """Mean CE of (hidden @ weight.T + bias) against targets (no ignored rows), `chunk_tokens` rows at a time."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    return ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, int(chunk_tokens),
                                           _compute_dtype(hidden, weight))


def _liger_available() -> bool:
    try:
        import liger_kernel.ops  # noqa: F401
    except Exception:  # ImportError, or a broken triton/CUDA install raising at import
        return False
    return True


def liger_linear_cross_entropy(hidden, weight, bias, targets) -> torch.Tensor:
    """The same mean CE through liger-kernel's fused Triton kernel (CUDA only; not under fp16)."""
    dtype = _compute_dtype(hidden, weight)
    if dtype == torch.float16:
        raise ValueError("impl='liger' under fp16 keeps its gradients in fp16 before the loss scale reaches them, "
                         "and most of them flush to zero; use impl='chunked' (or 'auto') with fp16")
    if not hidden.is_cuda:
        raise ValueError(f"impl='liger' needs a CUDA model (this one is on {hidden.device.type}); use impl='chunked'")
    try:
        from liger_kernel.ops import LigerFusedLinearCrossEntropyFunction
    except Exception as e:
        raise ValueError(f"impl='liger' needs liger-kernel ({type(e).__name__}: {e}); "
                         "pip install liger-kernel, or use impl='chunked'") from None
    if hidden.shape[0] == 0:  # nothing to predict: liger's chunking divides by zero; stock gives nan
        return chunked_linear_cross_entropy(hidden, weight, bias, targets)
    h, w = hidden.to(dtype), weight.to(dtype)
    b = bias.to(dtype) if bias is not None else None
    with torch.autocast(device_type="cuda", enabled=False):
        loss = LigerFusedLinearCrossEntropyFunction.apply(
            h, w, targets, b, None, IGNORE_INDEX, 0.0, 0.0, "mean", None, False, torch.float32)
    return loss[0] if isinstance(loss, tuple) else loss


def causal_lm_loss(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, impl: str = "off",
                   chunk_tokens: int = 4096, **model_kwargs) -> torch.Tensor:
    """Mean next-token cross-entropy of `model` on `input_ids` against `labels` (not shifted; -100 ignored).

    Equal to `model(input_ids=input_ids, labels=labels, use_cache=False).loss` in value and gradients for
    every impl (see the module docstring); `chunked`/`liger` never build the [B*T, V] logits.
    `model_kwargs` (attention_mask, position_ids, ...) go to the model as they would on the stock path.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown loss impl {impl!r}; choose one of {', '.join(IMPLS)}")
    if impl == "off":
        return model(input_ids=input_ids, labels=labels, use_cache=False, **model_kwargs).loss
    hidden, targets, weight, bias = _shifted_valid(model, input_ids, labels, model_kwargs)
    if impl == "liger" or (impl == "auto" and hidden.is_cuda and _compute_dtype(hidden, weight) != torch.float16
                           and _liger_available()):
        return liger_linear_cross_entropy(hidden, weight, bias, targets)
    return chunked_linear_cross_entropy(hidden, weight, bias, targets, chunk_tokens)
