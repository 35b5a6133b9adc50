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
