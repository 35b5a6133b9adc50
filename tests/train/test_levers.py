"""Each speed lever is a switch that leaves the loss and the gradients as the plain path has them (CPU, fp32),
and keeps the parameter names (so checkpoints and exports do not change)."""

from __future__ import annotations

import pytest
import torch

from sinktrain.train import load_train_config
from train_helpers import RECIPES

SINKS = {"vanilla": "{kind: none, num_tokens: 0}", "token": "{kind: token, num_tokens: 1}",
         "zerosink": "{kind: softmax1, num_tokens: 0}", "logit": "{kind: logit, num_tokens: 0}"}


def module(sink: str, *sets: str):
    from sinktrain.train.module import SinkLM

    cfg = load_train_config(RECIPES / "tiny-cpu.yaml", [f"model.sink={SINKS[sink]}", "data.dir=unused", *sets],
                            run_dir="unused")
    return SinkLM(cfg)


def loss_and_grads(m, tokens):
    m.train()
    m.zero_grad(set_to_none=True)
    loss = m.loss(*m.inputs_and_labels(tokens))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def assert_same(a, b, atol):
    (la, ga), (lb, gb) = a, b
    assert abs(float(la - lb)) <= atol, (float(la), float(lb))
    assert ga.keys() == gb.keys()
    worst = max(float((ga[k] - gb[k]).abs().max()) for k in ga)
    assert worst <= atol, worst


TOKENS = torch.randint(0, 50000, (3, 40), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("sink", ["vanilla", "token", "zerosink", "logit"])
@pytest.mark.parametrize("lever, atol", [("speed.activation_checkpointing=true", 1e-6),
                                         ("speed.fused_loss=chunked", 1e-6)])
def test_lever_gives_the_plain_loss_and_gradients(sink, lever, atol):
    plain, switched = module(sink), module(sink, lever, "speed.loss_chunk_tokens=16")
    assert list(dict(plain.named_parameters())) == list(dict(switched.named_parameters()))
    assert_same(loss_and_grads(plain, TOKENS), loss_and_grads(switched, TOKENS), atol)


@pytest.mark.parametrize("fused, ckpt", [("off", "false"), ("chunked", "false"), ("chunked", "true")])
def test_compile_gives_the_plain_loss_and_gradients_and_keeps_parameter_names(fused, ckpt):
    plain = module("token", f"speed.fused_loss={fused}")
    compiled = module("token", "speed.compile=true", f"speed.fused_loss={fused}",
                      f"speed.activation_checkpointing={ckpt}")
    assert compiled.state_dict().keys() == plain.state_dict().keys()  # no "_orig_mod." anywhere
    assert all(block._compiled_call_impl is not None for block in compiled.model.base_model.layers)
    # inductor's fused kernels reassociate float sums: equal to fp32 rounding, not bit for bit
    assert_same(loss_and_grads(plain, TOKENS), loss_and_grads(compiled, TOKENS), 2e-5)


@pytest.mark.parametrize("sink", ["vanilla", "token", "zerosink"])
def test_compiled_training_passes_no_attention_mask(sink, monkeypatch):
    """Traced, transformers cannot rule out packed sequences and builds a [B, 1, T, T] mask (no flash kernels);
    speed.compile leaves the mask to an eager call, which sees one unbroken range of positions and passes None."""
    from torch._dynamo.utils import counters
    from transformers.models.gpt_neox import modeling_gpt_neox

    masks = []
    real = modeling_gpt_neox.create_causal_mask

    def spy(*args, **kwargs):
        mask = real(*args, **kwargs)
        masks.append(mask)
        return mask

    monkeypatch.setattr(modeling_gpt_neox, "create_causal_mask", spy)
    torch._dynamo.reset()
    counters.clear()
    m = module(sink, "speed.compile=true", "speed.fused_loss=chunked")
    loss_and_grads(m, TOKENS)
    assert masks == [None]
    assert counters["stats"]["unique_graphs"] == 1  # both blocks run one compiled graph


def test_the_sink_probe_does_not_change_the_compiled_training_graph():
    """The probe runs on rank 0 alone. Compiled blocks fire their gradient hooks in the order of their compiled
    graph's inputs, and DeepSpeed reduces in hook order: a probe that compiled the blocks first left rank 0 with
    another order than the other ranks. The probe runs eagerly, so training compiles the same with or without it."""
    from sinktrain.train.metrics import probe_sink

    def hook_order(probe_first: bool) -> list[str]:
        torch._dynamo.reset()  # the blocks of both modules share one code object, so one compile cache
        m = module("vanilla", "speed.compile=true", "speed.fused_loss=chunked")
        if probe_first:
            probe = probe_sink(m, TOKENS[:1, :16])
            assert len(probe["sink_score"]) == m.cfg.model.arch.num_layers and probe["sink_dependence"] is not None
        order = []
        for name, p in m.named_parameters():
            p.register_post_accumulate_grad_hook(lambda _, name=name: order.append(name))
        loss_and_grads(m, TOKENS)
        return order

    assert hook_order(probe_first=True) == hook_order(probe_first=False)


def test_fused_adamw_takes_the_same_step_as_the_plain_one():
    torch.manual_seed(0)
    params = [torch.randn(64, 32), torch.randn(32)]
    grads = [torch.randn_like(p) for p in params]
    results = []
    for fused in (None, True):
        ps = [p.clone().requires_grad_(True) for p in params]
        opt = torch.optim.AdamW([{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "weight_decay": 0.0}],
                                lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=fused)
        for _ in range(3):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
        results.append([p.detach() for p in ps])
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-7, rtol=0)


def test_bf16_mixed_clips_the_gradients_of_a_fused_optimizer():
    """Lightning's bf16-mixed refuses to clip for a fused AdamW (as it must under fp16's loss scale); on the GPU
    that stopped every single-device/DDP bf16 run. sinktrain's plugin clips, to the plain norm."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    from sinktrain.train.strategy import build_plugins

    cfg = load_train_config(RECIPES / "tiny-cpu.yaml", ["data.dir=unused", "trainer.precision=bf16-mixed"],
                            run_dir="unused")
    (plugin,) = build_plugins(cfg)
    p = torch.nn.Parameter(torch.ones(10))
    p.grad = torch.full((10,), 3.0)
    optimizer = torch.optim.AdamW([p], fused=True)
    with pytest.raises(RuntimeError, match="does not allow for gradient clipping"):
        MixedPrecision("bf16-mixed", "cpu").clip_gradients(optimizer, 1.0)
    plugin.clip_gradients(optimizer, 1.0)
    assert torch.linalg.vector_norm(p.grad).item() == pytest.approx(1.0, rel=1e-5)
