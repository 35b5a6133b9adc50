"""The generation tests reuse the streaming tests' tiny models and helpers (tests/stream)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stream"))

from stream_helpers import one_thread  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    with one_thread():
        yield


@pytest.fixture
def weights_never_load(monkeypatch):
    """Fails the test if a model's weights load: bad input must be refused before that work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the weights loaded before the bad input was refused")

    monkeypatch.setattr("sinktrain.model.source.load_pretrained", refuse)
