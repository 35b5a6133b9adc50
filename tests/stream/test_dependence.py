"""stream-eval's sink dependence on every supported family: hiding the first token from the later queries by
the attention mask costs what evicting it from the model's own KV cache costs (float64, tiny random models)."""

from __future__ import annotations

import pytest
import torch
from eviction_helpers import evicted_nll, plain_nll
from family_helpers import FAMILY_CASES, VOCAB, family_model

from sinktrain.stream.families import adapter_for
from sinktrain.stream.stats import NO_DEPENDENCE_MODEL_TYPES, first_tokens_dependence, no_dependence_reason

T = 48  # the later half, from query 24 on, loses the first token
# Kolibri-1, Laguna and MPT differ from the eviction by 1.5e-9 to 5.3e-9 in float64 (the others by 0 to 1e-15);
# hiding the first token moves these models' NLLs by 9e-5 or more, so a mask that hid nothing would fail.
TOL = 1e-8


def float64_model(case: str, **overrides):
    model = family_model(case, seed=3, **overrides).double()
    try:
        model(input_ids=torch.tensor([[3, 4]]))
    except RuntimeError:  # grouped_mm experts take no float64; the plain loop over experts does
        model.set_experts_implementation("eager")
    return model


@pytest.mark.parametrize("case", list(FAMILY_CASES))
def test_hiding_the_first_token_is_evicting_it(case):
    model = float64_model(case)
    tokens = torch.randint(3, VOCAB, (T,), generator=torch.Generator().manual_seed(0))
    got = first_tokens_dependence(model, adapter_for(model), tokens, hidden=1)
    if model.config.model_type in NO_DEPENDENCE_MODEL_TYPES:
        assert got is None and "sinktrain/stream/stats.py says why" in no_dependence_reason(model, None, T, 1)
        return
    with torch.no_grad():
        expected = evicted_nll(model, tokens[None], 1, T // 2) - plain_nll(model, tokens[None], T // 2)
    assert abs(got - expected) <= TOL, (case, got, expected)
    assert abs(expected) > 1e-5  # the first token matters to this model


def test_no_dependence_where_a_sliding_window_is_narrower_than_the_probe():
    """One mask goes to every layer, so it would give a 16-token sliding layer all 48 keys."""
    model = float64_model("mistral", sliding_window=16)
    tokens = torch.randint(3, VOCAB, (T,), generator=torch.Generator().manual_seed(0))
    assert first_tokens_dependence(model, adapter_for(model), tokens, hidden=1) is None
    assert no_dependence_reason(model, adapter_for(model), T, 1) == (
        f"a sliding-window layer (window 16) is narrower than the {T} probe tokens; --attention_tokens 16 gives it")
    assert isinstance(first_tokens_dependence(model, adapter_for(model), tokens[:16], hidden=1), float)
