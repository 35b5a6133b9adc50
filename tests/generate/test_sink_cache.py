"""The generation cache against the exact block-parallel evaluator, the static ring against the dynamic cache,
and `model.generate(past_key_values=SinkCache(...))` against sinktrain's own decode loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import DynamicCache
from family_helpers import family_model
from stream_helpers import tiny

from sinktrain.generate.decode import Decoder, Sampler
from sinktrain.stream import parallel_nll, reference_nll
from sinktrain.stream.model_info import cache_kwarg
from sinktrain.stream.sink_cache import SinkCache
from sinktrain.stream.static_sink_cache import StaticSinkCache

TOL = 1e-5  # max |ΔNLL| in fp32 over every token: one wrong token must fail
# Gemma 4's and 3n's scale-1 attention over normed q/k turns fp32 cos/sin rounding into up to 3e-5 (see
# test_families.py, which checks their modes in float64).
KIND_TOL = {"gemma4": 1e-4, "gemma3n": 1e-4}


def random_tokens(n: int, vocab: int, seed: int = 0) -> np.ndarray:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).numpy()


FAMILY_KINDS = {
    "llama": "llama-gqa-tied",
    "gemma3": "gemma3-two-ropes",  # a rotary table per layer type
    "gpt-oss": "gpt-oss-sinks",  # learned sink logits, YaRN
    "olmo3": "olmo3-two-ropes",  # a rotary table per layer type, YaRN on one of them
    "cohere2": "cohere2-nope",  # rotary on interleaved pairs; a layer without position encoding
    "mistral3": "mistral3-ministral3",  # an image-text wrapper: the language model one level down, its own head
    "qwen2.5-vl": "qwen2.5-vl",  # another wrapper, whose rotary module wants a position per axis
    "longrope": "phi3-longrope",  # partial rotary with a rotary scaling m != 1: un-rotation divides only those dims
    "phimoe": "phimoe-longrope",  # a module whose cos/sin factor (short_mscale) is not its attention_scaling
    "deepseek": "deepseek-v3-mla",  # latent attention: the cache's value slot holds the rotated key part
    "llama4": "llama4-nope-chunked",  # complex-number rotary (conjugate to un-rotate), q/k L2-normed after it
    "deepseek-v2": "deepseek-v2-mla",  # complex rotary, head-major, in the value slot
    "deepseek-v3.2": "deepseek-v3.2-dsa",  # sparse attention: the indexer's keys cached beside the latent
    "glm5": "glm5-dsa-shared",  # the same with interleaved indexer rotary, and layers that reuse the top-k
    "longcat": "longcat-flash-shortcut",  # two attention sublayers per decoder layer, each a cache layer of its own
    "granite-swa": "granite-swa-sinks",  # learned sink logits, a rotary table per base, a NoPE layer
    "gemma4": "gemma4-shared-kv",  # layers without K/V of their own, keys as values, per-layer head widths
    "gemma3n": "gemma3n-altup",  # AltUp's copies of the residual stream around shared K/V layers
    "mllama": "mllama-cross-layers",  # cross-attention layers that text skips: their cache layers stay empty
    "falcon": "falcon-40b-groups",  # fused q/k/v whose K/V groups are broadcast to the query heads
    "mpt": "mpt-alibi",  # ALiBi: no rotary at all, a per-head bias on cache distances
    "bloom": "bloom-alibi",
}


def model_for(kind: str):
    if kind in FAMILY_KINDS:
        return family_model(FAMILY_KINDS[kind], seed=1)
    model = tiny("token" if kind == "token" else kind, seed=3, **({"num_tokens": 1} if kind == "token" else {}))
    if kind == "logit":  # learned sink logits that differ per head and layer
        with torch.no_grad():
            for layer in model.gpt_neox.layers:
                layer.attention.sink_logit.normal_(0.0, 2.0)
    return model


KINDS = ["none", "token", "softmax1", "logit", *FAMILY_KINDS]
RING_REFUSED = {"mpt", "bloom"}  # ALiBi biases a key by its index, which the ring does not keep in order


@pytest.mark.parametrize("kind", KINDS)
def test_teacher_forced_through_both_caches_equals_parallel(kind):
    """Token by token through SinkCache and StaticSinkCache: per-token NLL == stream-eval --mode parallel. The family
    models (the same ones, seed 1) go through SinkCache in tests/stream/test_families.py, whose reference mode
    decodes with it: here they go through the ring only."""
    model = model_for(kind)
    stream = random_tokens(75, 500)
    window = 12
    for sinks in (0, 1, 4):
        par = parallel_nll(model, stream, sinks, window, block_size=29)
        tol = KIND_TOL.get(kind, TOL)
        if kind not in FAMILY_KINDS:
            dyn = reference_nll(model, stream, sinks, window, cache=SinkCache(model, sinks, window))
            assert np.abs(dyn - par).max() <= tol, (kind, sinks)
        if kind in RING_REFUSED:
            with pytest.raises(ValueError, match="keeps its entries in ring order, but the model's ALiBi bias"):
                StaticSinkCache(model, sinks, window)
        else:
            ring = reference_nll(model, stream, sinks, window, cache=StaticSinkCache(model, sinks, window))
            assert np.abs(ring - par).max() <= tol, (kind, sinks)
        # 60 evictions must have changed the numbers, or the agreement says nothing about them.
        assert np.abs(par - parallel_nll(model, stream, 0, None)).mean() > 1e-3


@pytest.mark.parametrize("kind", ["none", "token", "softmax1", "llama"])
def test_static_ring_generates_the_same_tokens(kind):
    model = model_for(kind)
    prompt = random_tokens(9, 500, seed=2).tolist()
    sinks, window, n = 2, 13, 70  # the ring wraps four times
    dyn = list(Decoder(model, SinkCache(model, sinks, window)).stream(prompt, n, Sampler()))
    ring = list(Decoder(model, StaticSinkCache(model, sinks, window)).stream(prompt, n, Sampler()))
    assert dyn == ring
    assert len(set(dyn)) > 3  # not a degenerate repetition of one token


@pytest.mark.parametrize("kind", ["none", "softmax1", "logit", "llama", "mistral3", "qwen2.5-vl", "mpt", "deepseek",
                                  "llama4", "gemma4", "mllama", "glm5", "longcat"])
def test_hf_generate_with_the_cache_equals_the_decode_loop(kind):
    """model.generate(past_key_values=SinkCache) past the cache size gives sinktrain's tokens; a dense
    DynamicCache run diverges once eviction starts (so the cache is really used)."""
    model = model_for(kind)
    prompt = random_tokens(10, 500, seed=4).tolist()
    n = 50
    ours = list(Decoder(model, SinkCache(model, 2, 14)).stream(prompt, n, Sampler()))
    logits = {}
    ring = [] if kind in RING_REFUSED else [StaticSinkCache(model, 2, 14)]
    for cache in (SinkCache(model, 2, 14), *ring, DynamicCache(config=model.config)):
        out = model.generate(torch.tensor([prompt]), **{cache_kwarg(model): cache}, max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, use_cache=True, output_logits=True,
                             return_dict_in_generate=True)
        logits[type(cache).__name__] = torch.stack(out.logits)
        if not isinstance(cache, DynamicCache):
            assert out.sequences[0, len(prompt):].tolist() == ours, type(cache).__name__
    # Dense attention differs once eviction starts (token 17 on), so the sink cache was really used.
    assert (logits["SinkCache"][20:] - logits["DynamicCache"][20:]).abs().max() > 1e-3
    assert torch.allclose(logits["SinkCache"][:5], logits["DynamicCache"][:5], atol=1e-4)


@pytest.mark.parametrize("cache_class", [SinkCache, StaticSinkCache])
def test_padded_batches_are_refused_and_unpadded_rows_decode_as_alone(cache_class):
    """transformers reads a 2D padding mask by cache index, which eviction shifts (pads kept as sinks): a mask with
    zeros is refused in one line; a batch of unpadded rows gives each row its tokens decoded alone."""
    model = model_for("llama")
    rows = [random_tokens(6, 500, seed=s).tolist() for s in (5, 6)]
    kw = dict(max_new_tokens=30, min_new_tokens=30, do_sample=False, use_cache=True, pad_token_id=0)
    padded = torch.tensor([rows[0], [0, 0, *rows[1][2:]]])
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    with pytest.raises(ValueError) as e:
        model.generate(padded, attention_mask=mask, **{cache_kwarg(model): cache_class(model, 2, 10)}, **kw)
    assert str(e.value) == ("a sink cache cannot follow padding (the attention mask has zeros): batch rows must be "
                            "unpadded; run rows of different lengths one at a time")
    out = model.generate(torch.tensor(rows), attention_mask=torch.ones(2, 6, dtype=torch.long),
                         **{cache_kwarg(model): cache_class(model, 2, 10)}, **kw)
    for row, got in zip(rows, out[:, 6:].tolist()):
        assert got == list(Decoder(model, SinkCache(model, 2, 10)).stream(row, 30, Sampler()))


@pytest.mark.parametrize("case", ["deepseek-v3.2-dsa", "glm5-dsa-shared"])
@pytest.mark.parametrize("cache_class", [SinkCache, StaticSinkCache])
def test_sparse_attention_selects_from_the_cached_indexer_keys(case, cache_class):
    """DeepSeek sparse attention with fewer top-k keys (5) than the cache holds (12), which the evaluator refuses
    but a generation cache allows. With one attention layer a cached entry's K/V (and indexer key) depend on its
    token alone, so each prediction must equal the model's own forward over exactly the entries the cache keeps,
    at positions 0..C: right only if the indexer's keys are kept, evicted and re-rotated as the others are.
    (Eight indexer heads: with two, some keys score exactly 0 after the indexer's ReLU, and top-k breaks such ties
    by slot order, which the ring does not keep.)"""
    model = family_model(case, seed=1, num_hidden_layers=1, first_k_dense_replace=1, index_topk=5, index_n_heads=8,
                         **({"indexer_types": ["full"]} if case.startswith("glm5") else {}))
    stream = random_tokens(40, 500, seed=7)
    sinks, window = 2, 10
    got = reference_nll(model, stream, sinks, window, cache=cache_class(model, sinks, window))
    want = []
    for t in range(len(stream) - 1):
        kept = list(range(t)) if t <= sinks + window else [*range(sinks), *range(t - window, t)]
        ids = torch.as_tensor(stream[kept + [t]])[None]
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits[0, -1].float()
        want.append(float(torch.logsumexp(logits, -1) - logits[stream[t + 1]]))
    assert np.abs(got - np.asarray(want)).max() <= TOL
    # The top-5 selection really bites: full attention over the same entries predicts otherwise.
    dense = family_model(case, seed=1, num_hidden_layers=1, first_k_dense_replace=1, index_topk=64,
                         **({"indexer_types": ["full"]} if case.startswith("glm5") else {}))
    assert np.abs(got - reference_nll(dense, stream, sinks, window)).mean() > 1e-3


def test_chunked_prefill_within_the_cache_is_exact_and_overflow_evicts():
    model = model_for("llama")
    prompt = random_tokens(60, 500, seed=6).tolist()
    sinks, window = 2, 20
    # Token by token (chunk 1) == the evaluator's reference mode on the same tokens.
    one = Decoder(model, SinkCache(model, sinks, window), prefill_chunk=1)
    logits = one.forward(prompt)
    ref_cache = SinkCache(model, sinks, window)
    reference_nll(model, np.asarray(prompt + [0]), sinks, window, cache=ref_cache)
    assert one.cache.get_seq_length() == sinks + window == ref_cache.get_seq_length()
    for a, b in zip(one.cache.layers, ref_cache.layers):
        assert torch.allclose(a.keys, b.keys, atol=1e-6) and torch.allclose(a.values, b.values, atol=1e-6)
    # Chunks of 8 past the cache: the cache stays at C entries and the prediction stays close.
    eight = Decoder(model, SinkCache(model, sinks, window), prefill_chunk=8)
    logits8 = eight.forward(prompt)
    assert eight.cache.get_seq_length() == sinks + window
    assert int(logits8.argmax()) == int(logits.argmax()) or torch.allclose(logits8, logits, atol=0.5)


def test_memory_is_constant_after_the_cache_fills():
    model = model_for("none")
    decoder = Decoder(model, SinkCache(model, 4, 28))
    sizes = {}
    for i, _ in enumerate(decoder.stream([1, 2, 3], 400, Sampler(temperature=1.0, seed=1)), start=1):
        if i in (40, 400):
            sizes[i] = (decoder.cache.nbytes(), decoder.cache.get_seq_length())
    layer = decoder.cache.layers[0]
    per_entry = layer.keys[..., :1, :].numel() * layer.keys.element_size() * 2 * len(decoder.cache.layers)
    assert sizes[40] == sizes[400] == (32 * per_entry, 32)


def test_bad_cache_sizes_are_refused_in_one_line():
    model = model_for("none")
    with pytest.raises(ValueError, match="must be larger than the sink count"):
        SinkCache(model, 4, 0)
    with pytest.raises(ValueError, match="--sinks must be >= 0"):
        StaticSinkCache(model, -1, 8)


def test_static_decode_step_traces_without_graph_breaks():
    """What CUDA graphs / torch.compile need: a decode step through a full ring is traced by dynamo with no
    graph break (the position hook is traced on its own, then the whole forward as one graph)."""
    model = model_for("none")
    cache = StaticSinkCache(model, 2, 14)
    kw = {cache_kwarg(model): cache}
    with torch.no_grad():
        for t in range(20):  # past the ring's first wrap
            model(input_ids=torch.tensor([[t + 5]]), use_cache=True, **kw)
        try:
            ex = torch._dynamo.explain(model)(input_ids=torch.tensor([[7]]), use_cache=True, **kw)
        finally:
            torch._dynamo.reset()
    assert not ex.break_reasons and ex.graph_count <= 2, ex.break_reasons
