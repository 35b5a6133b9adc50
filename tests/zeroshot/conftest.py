"""Tiny GPT-NeoX model folders as `sinktrain export` lays them out (config.json with the `sinktrain` block, the
export's tokenizer, whose post-processor prepends the sink tokens), and the bundled zero-shot data sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sinktrain.model import ModelConfig, SinkConfig, build_model

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "zeroshot"  # 50 validation rows per task (data/zeroshot/make_sample.py)
SINK_IDS = [50277, 50278]  # the first free padded rows of the GPT-NeoX vocabulary


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny forwards: torch's thread pool only waits for cores on a shared 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def save_folder(root: Path, name: str, kind: str, sink_ids: list[int], seed: int) -> Path:
    from sinktrain.export.tokenizer_files import save_tokenizer

    model = build_model(ModelConfig(preset="tiny", sink=SinkConfig(kind=kind, num_tokens=len(sink_ids))), seed=seed)
    if sink_ids:
        model.config.sinktrain = {"variant": kind, "sink_token_ids": sink_ids, "num_sink_tokens": len(sink_ids)}
    out = root / name
    model.save_pretrained(out)
    save_tokenizer(None, sink_ids, out)
    return out


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zeroshot-models")
    return {
        "vanilla": save_folder(root, "vanilla", "none", [], seed=3),
        "sink1": save_folder(root, "sink1", "token", SINK_IDS[:1], seed=4),
        "sink2": save_folder(root, "sink2", "token", SINK_IDS, seed=5),
        "zerosink": save_folder(root, "zerosink", "softmax1", [], seed=6),
    }
