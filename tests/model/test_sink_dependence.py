"""sink_dependence: what hiding the first positions from the later queries costs, checked against evicting them
from transformers' own KV cache (how a streaming cache loses its sink), for each sink variant. Every family that
stream-eval supports: tests/stream/test_dependence.py."""

import pytest
import torch
from eviction_helpers import evicted_nll, plain_nll

from sinktrain.model import ModelConfig, SinkConfig, build_model
from sinktrain.model.probe import sink_dependence

T, FROM = 48, 20


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


def test_bad_positions_are_refused():
    model = build_model(ModelConfig(preset="tiny"), seed=0).eval()
    with pytest.raises(ValueError, match=r"0 < hidden \(4\) < from_query \(3\) < length \(8\)"):
        sink_dependence(model, torch.zeros(1, 8, dtype=torch.long), hidden=4, from_query=3)
