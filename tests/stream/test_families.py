"""Every supported family streams exactly: parallel == reference (max |ΔNLL| <= 1e-5, fp32) on tiny random
models, the self-check passes, and Llama agrees with an independent float64 per-token implementation."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from family_helpers import FAMILY_CASES, VOCAB, family_model, llama_streaming_nll_f64

from sinktrain.stream import parallel_nll, reference_nll
from sinktrain.stream.evaluation import self_check
from sinktrain.stream.families import adapter_for

TOL = 1e-5  # max |ΔNLL| over all tokens: one wrong token must fail
# Gemma 4 and 3n attend with scale 1 over RMS-normed q and k, so its scores reach about the head width: there the fp32
# rounding of cos/sin, which the two modes take at different positions, moves these tiny models' NLLs by up to
# 3.6e-5 (benchmarks/stream_family_fp32_gaps.py).
# Their exactness is checked in float64 below (no difference at all).
FP32_TOL = {"gemma4-shared-kv": 1e-4, "gemma4-plain": 1e-4, "gemma4-multimodal": 1e-4, "gemma3n-altup": 1e-4,
            "gemma4-unified": 1e-4, "gemma4-unified-multimodal": 1e-4}


def random_tokens(n: int, seed: int = 0) -> np.ndarray:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).numpy()


@pytest.mark.parametrize("case", list(FAMILY_CASES))
def test_parallel_matches_reference(case):
    model = family_model(case, seed=1)  # tests/generate/test_sink_cache.py leaves these models' SinkCache to this test
    stream = random_tokens(50)  # 30 evictions at 4+16; each of the three caches decodes token by token
    window = 16
    teacher = F.cross_entropy(model(input_ids=torch.as_tensor(stream)[None]).logits[0, :-1].float(),
                              torch.as_tensor(stream[1:]), reduction="none").detach().double().numpy()
    tol = FP32_TOL.get(case, TOL)
    for sinks in (0, 1, 4):
        ref = reference_nll(model, stream, sinks, window)
        par = parallel_nll(model, stream, sinks, window, block_size=37)  # block edges inside the stream
        assert np.abs(ref - par).max() <= tol, (case, sinks, np.abs(ref - par).max())
        # attention in query chunks smaller than the block, each with only the band keys it can reach
        chunked = parallel_nll(model, stream, sinks, window, block_size=37, attn_chunk=5)
        assert np.abs(ref - chunked).max() <= tol, (case, sinks, np.abs(ref - chunked).max())
        # Eviction must change the numbers, else the agreement proves nothing about it.
        assert np.abs(par - teacher).mean() > 1e-3, (case, sinks)
    dense = parallel_nll(model, stream, 0, None, block_size=37)
    assert np.abs(dense - teacher).max() <= TOL


@pytest.mark.parametrize("case", list(FAMILY_CASES))
def test_self_check_passes_and_catches_a_wrong_adapter(case):
    model = family_model(case, seed=2)
    adapter = adapter_for(model)
    stream = random_tokens(80, seed=3)
    assert self_check(model, adapter, stream, cache=64, dtype="float32") <= 1e-5
    # A transformers release that re-laid a module would look like this: the attention output reaches o_proj
    # one element out of place. (Not a scaled branch: a post-norm family's norm undoes a scale.)
    adapter.residual = lambda layer, x, attn, _res=adapter.residual: _res(layer, x, attn.roll(1, dims=-1))
    with pytest.raises(RuntimeError, match=f"the {adapter.family} family adapter"):
        self_check(model, adapter, stream, cache=64, dtype="float32")


@pytest.mark.parametrize("layout", [dict(), dict(num_key_value_heads=4, tie_word_embeddings=False)])
@pytest.mark.parametrize("sinks", [0, 2])
def test_llama_against_independent_float64(layout, sinks):
    model = family_model("llama-gqa-tied", seed=4, **layout)
    stream = random_tokens(60, seed=5)
    window = 10
    truth = llama_streaming_nll_f64(model, stream, sinks, window)
    for got in (parallel_nll(model, stream, sinks, window, block_size=17), reference_nll(model, stream, sinks, window)):
        assert np.abs(got - truth).max() <= TOL


@pytest.mark.parametrize("case, overrides", [("gemma4-shared-kv", dict(enable_moe_block=False)),
                                             ("gemma4-plain", {}), ("gemma3n-altup", {}), ("gemma4-unified", {})])
def test_gemma4_and_3n_modes_agree_in_float64(case, overrides):
    """With the model in float64 and its rotary angles computed in float64 (transformers computes them in fp32
    whatever the dtype), the two modes are the same arithmetic. (Gemma 4 without experts: their grouped matrix
    product has no float64 kernel.)"""
    model = family_model(case, seed=1, **overrides).double()
    rotary = model.model.rotary_emb

    def forward(self, x, position_ids, layer_type):
        angles = position_ids[..., None].double() * getattr(self, f"{layer_type}_inv_freq").double()
        emb, scale = torch.cat([angles, angles], dim=-1), getattr(self, f"{layer_type}_attention_scaling")
        return (emb.cos() * scale).to(x.dtype), (emb.sin() * scale).to(x.dtype)

    rotary.forward = types.MethodType(forward, rotary)
    stream = random_tokens(110)
    for sinks in (0, 4):
        ref = reference_nll(model, stream, sinks, 16)
        assert np.abs(ref - parallel_nll(model, stream, sinks, 16, block_size=37)).max() <= 1e-9
