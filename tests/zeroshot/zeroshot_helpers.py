"""Constants and model-folder builders shared by the zero-shot tests (a uniquely named module: several test
folders have a conftest.py, so `from conftest import ...` could pick up another folder's)."""

from __future__ import annotations

from pathlib import Path

from sinktrain.model import ModelConfig, SinkConfig, build_model

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "zeroshot"  # 50 validation rows per task (data/zeroshot/make_sample.py)
SINK_IDS = [50277, 50278]  # the first free padded rows of the GPT-NeoX vocabulary


def save_folder(root: Path, name: str, kind: str, sink_ids: list[int], seed: int,
                max_seq_len: int | None = None) -> Path:
    """A tiny model folder as `sinktrain export` lays it out: config.json with the `sinktrain` block, and the
    export's tokenizer, whose post-processor prepends the sink tokens. `max_seq_len`: the model's context."""
    from sinktrain.data import load_tokenizer
    from sinktrain.export.tokenizer_files import save_tokenizer

    model = build_model(ModelConfig(preset="tiny", sink=SinkConfig(kind=kind, num_tokens=len(sink_ids)),
                                max_seq_len=max_seq_len), seed=seed)
    if sink_ids:
        model.config.sinktrain = {"variant": kind, "sink_token_ids": sink_ids, "num_sink_tokens": len(sink_ids)}
    out = root / name
    model.save_pretrained(out)
    save_tokenizer(load_tokenizer(), sink_ids, out)  # the bundled GPT-NeoX tokenizer, as the run's
    return out
