"""stream-eval's sink dependence on every supported family: hiding the first token from the later queries by
the attention mask costs what evicting it from the model's own KV cache costs (float64, tiny random models)."""

from __future__ import annotations

import pytest
import torch
from eviction_helpers import evicted_nll, plain_nll
from family_helpers import FAMILY_CASES, VOCAB, family_config, family_model

from sinktrain.model.probe import sink_dependence
from sinktrain.stream.families import adapter_class, adapter_for, language_config, narrowest_window
from sinktrain.stream.stats import NO_DEPENDENCE_MODEL_TYPES, first_tokens_dependence, no_dependence_reason

T = 48  # the later half, from query 24 on, loses the first token
# Kolibri-1, Laguna and MPT differ from the eviction by 1.5e-9 to 1.1e-8 in float64 (the others by 0 to 2e-15);
# hiding the first token moves these models' NLLs by 9e-5 or more, so a mask that hid nothing would fail.
TOL = 2e-8


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


def _slides(case: str) -> bool:
    """Whether `sliding_window` sets a window of the case's model (Llama 4's chunks have their own option; OLMoE's
    config has none: its attention takes one only in flash-attention kernels)."""
    if not hasattr(language_config(family_config(case)), "sliding_window"):
        return False
    config = family_config(case, sliding_window=16)
    return narrowest_window(adapter_class(config), language_config(config), T) == 16


SLIDING_CASES = [c for c in FAMILY_CASES if _slides(c)]


@pytest.mark.parametrize("window", [16, 32])
@pytest.mark.parametrize("case", SLIDING_CASES)
def test_a_window_narrower_than_the_probe_stays_in_the_sliding_layers(case, window):
    """A given mask replaces the model's own, window included, so the sliding layers get their band from
    first_tokens_dependence. Window 16: the sliding layers have dropped position 0 before query 24, so only full
    layers lose it (models whose layers all slide lose nothing); window 32: queries 24-31 still see it there."""
    model = float64_model(case, sliding_window=window)
    adapter = adapter_for(model)
    if model.config.model_type in NO_DEPENDENCE_MODEL_TYPES:
        pytest.skip("no dependence for this model type (the test above)")
    tokens = torch.randint(3, VOCAB, (T,), generator=torch.Generator().manual_seed(0))
    assert no_dependence_reason(model, adapter, T, 1) is None
    got = first_tokens_dependence(model, adapter, tokens, hidden=1)
    with torch.no_grad():
        expected = evicted_nll(model, tokens[None], 1, T // 2) - plain_nll(model, tokens[None], T // 2)
    assert abs(got - expected) <= TOL, (case, got, expected)
    if window > T // 2 or None in type(adapter).sliding_windows(adapter.config):
        assert abs(expected) > 1e-5
    # the mask that ignored the window (given to every layer alike) would be wrong
    wrong = sink_dependence(model, tokens[None], hidden=1)
    assert abs(wrong - expected) > 1e-6, (case, wrong, expected)


def test_no_dependence_where_layers_of_another_kind_or_width_are_narrower():
    model = float64_model("llama4-nope-chunked", attention_chunk_size=16)
    assert no_dependence_reason(model, adapter_for(model), T, 1) == (
        f"chunked_attention layers (span 16) are narrower than the {T} probe tokens; --attention_tokens 16 gives it")
    assert first_tokens_dependence(model, adapter_for(model), torch.arange(3, 3 + T), hidden=1) is None
    model = float64_model("granite-swa-sinks")
    windows = {"sliding_windows": classmethod(lambda cls, config: [None, 16, 20, 20])}
    adapter = type("TwoWidths", (type(adapter_for(model)),), windows)(model)
    assert no_dependence_reason(model, adapter, T, 1, length_flag="--length") == (
        f"sliding-window layers of 2 widths (16, 20) are narrower than the {T} probe tokens; --length 16 gives it")
