"""sink_dependence: what hiding the first positions from the later queries costs, checked against evicting them
from transformers' own KV cache (how a streaming cache loses its sink), for each sink variant."""

import inspect

import pytest
import torch

from sinktrain.model import ModelConfig, SinkConfig, build_model
from sinktrain.model.probe import sink_dependence

T, FROM = 48, 20


def evicted_nll(model, ids: torch.Tensor, hidden: int, from_query: int) -> float:
    """The queries from `from_query` on, run after the first `hidden` entries left the KV cache of the earlier
    ones (kept at their positions): their mean NLL on the tokens they predict."""
    first = model(input_ids=ids[:, :from_query], use_cache=True)
    cache = first.past_key_values
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys[:, :, hidden:], layer.values[:, :, hidden:]
    # transformers 5.24 renamed the argument (`cache`); the GPU machine's 5.17 knows only the old name.
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    rest = model(input_ids=ids[:, from_query:], **{name: cache}, use_cache=True,
                 position_ids=torch.arange(from_query, T)[None],
                 cache_position=torch.arange(from_query - hidden, T - hidden))
    logp = torch.log_softmax(rest.logits[:, :-1].double(), dim=-1)
    return float(-logp.gather(-1, ids[:, from_query + 1:, None]).mean())


def plain_nll(model, ids: torch.Tensor, from_query: int) -> float:
    logp = torch.log_softmax(model(input_ids=ids, use_cache=False).logits[:, from_query:-1].double(), dim=-1)
    return float(-logp.gather(-1, ids[:, from_query + 1:, None]).mean())


@pytest.mark.parametrize("kind, num_tokens", [("none", 0), ("token", 1), ("token", 2), ("softmax1", 0)])
def test_hiding_the_first_positions_is_evicting_them_from_the_cache(kind, num_tokens):
    model = build_model(ModelConfig(preset="tiny", sink=SinkConfig(kind=kind, num_tokens=num_tokens)), seed=3)
    model = model.double().eval()
    ids = torch.randint(0, 1000, (2, T), generator=torch.Generator().manual_seed(0))
    hidden = max(1, num_tokens)  # the sink token(s), or the first token
    with torch.no_grad():
        expected = evicted_nll(model, ids, hidden, FROM) - plain_nll(model, ids, FROM)
    got = sink_dependence(model, ids, hidden=hidden, from_query=FROM)
    assert abs(got - expected) < 1e-10
    assert abs(expected) > 1e-6  # the first positions do matter to this model: hiding nothing would fail


def test_a_llama_model_too():
    """The Llama layout (grouped-query attention, RMSNorm, rotate-half rotary): stream-eval reports the
    dependence of llama models (sinktrain.stream.stats.DEPENDENCE_MODEL_TYPES)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(5)
    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(config).double().eval()
    ids = torch.randint(0, 1000, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = evicted_nll(model, ids, 1, FROM) - plain_nll(model, ids, FROM)
    assert abs(sink_dependence(model, ids, hidden=1, from_query=FROM) - expected) < 1e-10 and abs(expected) > 1e-6


def test_bad_positions_are_refused():
    model = build_model(ModelConfig(preset="tiny"), seed=0).eval()
    with pytest.raises(ValueError, match=r"0 < hidden \(4\) < from_query \(3\) < length \(8\)"):
        sink_dependence(model, torch.zeros(1, 8, dtype=torch.long), hidden=4, from_query=3)
