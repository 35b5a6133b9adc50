"""Fixtures: tiny GPT-NeoX model folders laid out as `sinktrain export` writes them (vanilla, one and two sink
tokens, softmax1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from zeroshot_helpers import SINK_IDS, save_folder


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny forwards: torch's thread pool only waits for cores on a shared 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zeroshot-models")
    return {
        "vanilla": save_folder(root, "vanilla", "none", [], seed=3),
        "sink1": save_folder(root, "sink1", "token", SINK_IDS[:1], seed=4),
        "sink2": save_folder(root, "sink2", "token", SINK_IDS, seed=5),
        "zerosink": save_folder(root, "zerosink", "softmax1", [], seed=6),
    }
