"""prepare: deterministic bytes, counts equal to an independent count, documents recoverable in order."""

import json

import numpy as np
import pytest

from sinktrain.data import load_tokenizer, read_manifest, tokenizer_hash
from sinktrain.data.preparation import usable_cpus

from data_helpers import count_tokens, run_prepare


def split_at_eod(stream: np.ndarray, eod: int) -> list[np.ndarray]:
    ends = np.flatnonzero(stream == eod)
    assert len(ends) and ends[-1] == len(stream) - 1, "every document, the last one too, ends with EOD"
    return np.split(stream, ends + 1)[:-1]


def read_split(data_dir, manifest, split) -> np.ndarray:
    parts = [np.fromfile(data_dir / f, dtype=manifest["dtype"]) for f in manifest["splits"][split]["files"]]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=manifest["dtype"])


def test_same_sources_twice_give_identical_shards_and_independent_counts(tmp_path, mixed_corpus, raw_tok):
    sources, documents = mixed_corpus
    # Second run: worker processes and tiny batches/shards, which must not change a single byte.
    a = run_prepare(sources, tmp_path / "a", val_fraction=0.3, seed=7)
    b = run_prepare(sources, tmp_path / "b", val_fraction=0.3, seed=7, num_workers=min(2, usable_cpus()), batch_size=2,
                    shard_tokens=1 << 20)
    ma, mb = read_manifest(a), read_manifest(b)
    assert ma["splits"] == mb["splits"]
    for split in ("train", "val"):
        for name in ma["splits"][split]["files"]:
            assert (a / name).read_bytes() == (b / name).read_bytes()

    # Counts against the tokenizers library run on each document by itself.
    total_docs = sum(s["documents"] for s in ma["splits"].values())
    total_tokens = sum(s["tokens"] for s in ma["splits"].values())
    assert total_docs == len(documents) == 8
    assert total_tokens == count_tokens(raw_tok, documents)
    assert [s["documents"] for s in ma["sources"]] == [1, 1, 3, 3]
    assert sum(s["tokens"] for s in ma["sources"]) == total_tokens
    assert ma["splits"]["val"]["documents"] > 0 and ma["splits"]["train"]["documents"] > 0  # 30% of 8, seed 7

    tok = load_tokenizer()
    assert ma["tokenizer"] == {"spec": "gpt-neox-20b", "sha256": tokenizer_hash(tok), "vocab_size": 50277,
                               "dir": "tokenizer"}
    saved = load_tokenizer(a / "tokenizer")  # the data keeps the tokenizer it was prepared with
    assert tokenizer_hash(saved) == tokenizer_hash(tok) and saved.eos_token_id == 0
    assert ma["dtype"] == "uint16" and ma["eod_id"] == 0 and ma["format"] == "sinktrain-tokens/1"
    assert (a / ma["splits"]["train"]["files"][0]).stat().st_size == 2 * ma["splits"]["train"]["tokens"]

    # Every document is in exactly one split, whole, and each split keeps source order.
    decoded = {split: [raw_tok.decode(d[:-1].tolist(), skip_special_tokens=False)
                       for d in split_at_eod(read_split(a, ma, split), 0)] for split in ("train", "val")}
    assert sorted(decoded["train"] + decoded["val"]) == sorted(documents)
    for split in ("train", "val"):
        assert decoded[split] == [d for d in documents if d in decoded[split]]


def test_seed_changes_only_the_split(tmp_path, mixed_corpus):
    sources, _ = mixed_corpus
    m1 = read_manifest(run_prepare(sources, tmp_path / "s1", val_fraction=0.5, seed=1))
    m2 = read_manifest(run_prepare(sources, tmp_path / "s2", val_fraction=0.5, seed=2))
    assert m1["splits"]["train"]["documents"] + m1["splits"]["val"]["documents"] == 8
    tokens = lambda m: m["splits"]["train"]["tokens"] + m["splits"]["val"]["tokens"]  # noqa: E731
    assert tokens(m1) == tokens(m2)
    assert m1["splits"] != m2["splits"]


def test_txt_documents_modes_and_limits(tmp_path, persuasion, raw_tok):
    text = persuasion[:30000]
    (tmp_path / "book.txt").write_text(text)
    paragraphs = [p for p in text.split("\n\n") if p]
    lines = [line for line in text.split("\n") if line]
    for mode, docs in (("file", [text]), ("paragraphs", paragraphs), ("lines", lines)):
        m = read_manifest(run_prepare([tmp_path / "book.txt"], tmp_path / mode, txt_documents=mode, val_fraction=0))
        assert m["splits"]["train"]["documents"] == len(docs), mode
        assert m["splits"]["train"]["tokens"] == count_tokens(raw_tok, docs), mode
        assert m["splits"]["val"] == {"files": [], "tokens": 0, "documents": 0}

    m = read_manifest(run_prepare([tmp_path / "book.txt"], tmp_path / "maxdocs", txt_documents="lines",
                                  max_documents=10, val_fraction=0))
    assert m["splits"]["train"]["tokens"] == count_tokens(raw_tok, lines[:10])
    # max_tokens stops after the whole document that reaches the limit.
    limit = count_tokens(raw_tok, lines[:20]) - 3
    m = read_manifest(run_prepare([tmp_path / "book.txt"], tmp_path / "maxtok", txt_documents="lines",
                                  max_tokens=limit, val_fraction=0, batch_size=7))
    assert m["splits"]["train"]["documents"] == 20
    assert m["splits"]["train"]["tokens"] == count_tokens(raw_tok, lines[:20])


def test_val_documents_caps_the_validation_split(tmp_path, persuasion):
    (tmp_path / "book.txt").write_text(persuasion[:40000])
    m = read_manifest(run_prepare([tmp_path / "book.txt"], tmp_path / "out", txt_documents="paragraphs",
                                  val_fraction=0.5, val_documents=3))
    assert m["splits"]["val"]["documents"] == 3
    assert m["splits"]["train"]["documents"] > 3


def test_second_prepare_is_a_no_op_unless_config_changes(tmp_path, mixed_corpus, capsys):
    sources, _ = mixed_corpus
    out = run_prepare(sources, tmp_path / "out", progress=True)
    shard = out / read_manifest(out)["splits"]["train"]["files"][0]
    before = (shard.stat().st_mtime_ns, (out / "manifest.json").stat().st_mtime_ns)
    capsys.readouterr()
    run_prepare(sources, tmp_path / "out", progress=True, num_workers=0, batch_size=3)  # speed knobs only
    assert "nothing to do" in capsys.readouterr().err
    assert (shard.stat().st_mtime_ns, (out / "manifest.json").stat().st_mtime_ns) == before

    with pytest.raises(FileExistsError, match="pass --overwrite true or another --out_dir"):
        run_prepare(sources, tmp_path / "out", seed=99)
    run_prepare(sources, tmp_path / "out", seed=99, overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["seed"] == 99


def test_progress_reports_throughput(tmp_path, mixed_corpus, capsys):
    sources, _ = mixed_corpus
    run_prepare(sources, tmp_path / "out", progress=True)
    err = capsys.readouterr().err
    assert "MB/s" in err and "tokens/s" in err and "8 docs" in err


def test_small_corpus_still_gets_a_validation_document(tmp_path, persuasion, raw_tok):
    """Three whole-file documents at 1%: the coin picks none, so the last document becomes validation,
    taken back out of train shards even when it spans several of them."""
    from sinktrain.data.preparation import is_validation

    chapters = persuasion.split("Chapter ")[1:4]
    for k, c in enumerate(chapters):
        (tmp_path / f"book{k}.txt").write_text(c)
    assert not any(is_validation(1234, k, 0.01) for k in range(3))
    out = run_prepare(sorted(tmp_path.glob("book*.txt")), tmp_path / "out", val_fraction=0.01, shard_tokens=1000)
    m = read_manifest(out)
    assert m["splits"]["val"]["documents"] == 1 and m["splits"]["train"]["documents"] == 2
    assert m["splits"]["train"]["tokens"] == count_tokens(raw_tok, chapters[:2])
    assert m["splits"]["val"]["tokens"] == count_tokens(raw_tok, chapters[2:])
    train = read_split(out, m, "train")
    assert len(train) == m["splits"]["train"]["tokens"]
    assert [raw_tok.decode(d[:-1].tolist()) for d in split_at_eod(train, 0)] == chapters[:2]
    assert raw_tok.decode(read_split(out, m, "val")[:-1].tolist()) == chapters[2]
    sizes = [(out / f).stat().st_size for f in m["splits"]["train"]["files"]]
    assert sizes[:-1] == [2000] * (len(sizes) - 1) and 0 < sizes[-1] <= 2000


def test_more_workers_than_cpus_is_refused_only_where_workers_would_start(tmp_path):
    """A study file with num_workers 16, rerun on a smaller machine to finish its export and report, was refused
    although its data was prepared and no worker would start."""
    (tmp_path / "doc.txt").write_text("A short document. " * 50)
    out = run_prepare([tmp_path / "doc.txt"], tmp_path / "out")
    assert run_prepare([tmp_path / "doc.txt"], out, num_workers=usable_cpus() + 1) == out  # nothing to write
    with pytest.raises(ValueError, match=f"num_workers {usable_cpus() + 1} is more than the {usable_cpus()} CPUs"):
        run_prepare([tmp_path / "doc.txt"], tmp_path / "new", num_workers=usable_cpus() + 1)
    assert not (tmp_path / "new").exists()
