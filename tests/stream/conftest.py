"""Shared fixtures: a tiny model trained for a few dozen steps on an Austen novel
(so its attention is far from uniform), and token streams from a book it was not trained on."""

from __future__ import annotations

import numpy as np
import pytest
from stream_helpers import BOOKS, SINK_ID, one_thread, tiny, train_tiny


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """See stream_helpers.one_thread; restored after each module so other stages' tests keep their threads."""
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tokenizer():
    from sinktrain.data.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def book_tokens(tokenizer):
    """The first 4,000 tokens of Persuasion (held out from the fixture's training)."""
    text = (BOOKS / "austen_persuasion.txt").read_text()[:30000]
    return np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"][:4000], dtype=np.int64)


@pytest.fixture(scope="session")
def trained_model(tokenizer):
    return train_tiny(tokenizer)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory, trained_model, tokenizer):
    """HF folders with their tokenizer: the trained vanilla model, and a token-sink model whose config.json
    carries the `sinktrain` block that `sinktrain export` writes."""
    root = tmp_path_factory.mktemp("models")
    vanilla = root / "vanilla"
    trained_model.save_pretrained(vanilla)
    tokenizer.save_pretrained(vanilla)
    sink_model = tiny("token", seed=5, num_tokens=1)
    sink_model.config.sinktrain = {"variant": "token", "sink_token_ids": [SINK_ID], "num_sink_tokens": 1}
    token = root / "sinktoken"
    sink_model.save_pretrained(token)
    tokenizer.save_pretrained(token)
    return {"vanilla": vanilla, "sinktoken": token}
