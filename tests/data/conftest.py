"""Fixtures for the data-stage tests: small real corpora in tmp_path and an independent tokenizer.

"Independent" means the `tokenizers` library called directly on the bundled tokenizer.json, one document
at a time, with none of prepare's batching, workers, packing or split logic.
"""

import gzip
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from sinktrain.data import DEFAULT_TOKENIZER

BOOKS = Path(__file__).resolve().parents[2] / "data" / "books"


@pytest.fixture(scope="session")
def raw_tok() -> Tokenizer:
    return Tokenizer.from_file(str(DEFAULT_TOKENIZER))


@pytest.fixture(scope="session")
def persuasion() -> str:
    return (BOOKS / "austen_persuasion.txt").read_text()


@pytest.fixture
def mixed_corpus(tmp_path, persuasion) -> tuple[list[str], list[str]]:
    """Sources of every local kind (.txt, .txt.gz, .jsonl.gz, .json, .parquet in a folder) and the documents,
    in the order prepare must read them: sources in the given order, files sorted, records in file order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    chapters = persuasion.split("Chapter ")[1:9]
    (tmp_path / "a.txt").write_text(chapters[0])
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write(chapters[1])
    records = [{"text": c, "id": i} for i, c in enumerate(chapters[2:5])] + [{"text": ""}]  # empty: skipped
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "d.json").write_text(json.dumps({"text": chapters[5]}) + "\n")
    pq.write_table(pa.table({"text": chapters[6:8]}), folder / "e.parquet")
    (folder / "notes.csv").write_text("ignored,not a supported extension\n")
    sources = [str(tmp_path / "a.txt"), str(tmp_path / "b.txt.gz"), str(tmp_path / "*.jsonl.gz"), str(folder)]
    return sources, chapters


@pytest.fixture
def big_vocab_tokenizer_path(tmp_path):
    """A 70,000-id word-level tokenizer: ids above 65535 need uint32."""
    vocab = {"<|endoftext|>": 0, **{f"w{i}": i for i in range(1, 70000)}, "[UNK]": 70000}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<|endoftext|>"])
    path = tmp_path / "big.json"
    tok.save(str(path))
    return path
