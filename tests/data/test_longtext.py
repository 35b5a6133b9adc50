"""Long texts for streaming evaluation: local books and the PG19 path through a local stand-in dataset."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sinktrain.data.longtext import load_long_text, text_source_sha256
from sinktrain.data.tokenizer import load_tokenizer

BOOKS = Path(__file__).resolve().parents[2] / "data" / "books"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.fixture()
def two_books(tmp_path):
    texts = {"b_second": "Second book. It ends here.", "a_first": "First book, with some words."}
    for name, text in texts.items():
        (tmp_path / f"{name}.txt").write_text(text)
    return tmp_path, texts


def test_folder_is_sorted_and_eod_separated(tok, two_books):
    folder, texts = two_books
    lt = load_long_text(str(folder), tok)
    first, second = ids(tok, texts["a_first"]), ids(tok, texts["b_second"])
    assert lt.tokens.dtype == np.int64
    assert lt.tokens.tolist() == first + [0] + second
    assert lt.doc_starts == [0, len(first) + 1] and lt.names == ["a_first", "b_second"]


def test_glob_file_and_max_tokens(tok, two_books):
    folder, texts = two_books
    assert load_long_text(str(folder / "b_*.txt"), tok).tokens.tolist() == ids(tok, texts["b_second"])
    lt = load_long_text(str(BOOKS / "austen_persuasion.txt"), tok, max_tokens=1000)
    assert len(lt) == 1000 and lt.names == ["austen_persuasion"]
    assert lt.tokens[:50].tolist() == ids(tok, (BOOKS / "austen_persuasion.txt").read_text()[:2000])[:50]
    cut = load_long_text(str(folder), tok, max_tokens=3)  # the second document never starts
    assert cut.doc_starts == [0] and cut.names == ["a_first"]


@pytest.fixture()
def pg19_standin(tmp_path):
    rows = [{"short_book_title": f"Book {i}", "text": f"This is book number {i}. " * (i + 1)} for i in range(3)]
    d = tmp_path / "pg19"
    d.mkdir()
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d, rows


def test_pg19_selectors_through_load_dataset(tok, pg19_standin):
    d, rows = pg19_standin
    first = load_long_text("pg19:first", tok, pg19_dataset=str(d))
    assert first.tokens.tolist() == ids(tok, rows[0]["text"]) and first.names == ["Book 0"]
    third = load_long_text("pg19:2", tok, pg19_dataset=str(d))
    assert third.tokens.tolist() == ids(tok, rows[2]["text"])
    every = load_long_text("pg19", tok, pg19_dataset=str(d))
    expected = ids(tok, rows[0]["text"]) + [0] + ids(tok, rows[1]["text"]) + [0] + ids(tok, rows[2]["text"])
    assert every.tokens.tolist() == expected and every.names == ["Book 0", "Book 1", "Book 2"]


def test_bad_sources(tok, pg19_standin, tmp_path):
    d, _ = pg19_standin
    with pytest.raises(ValueError, match="has only 3 books"):
        load_long_text("pg19:7", tok, pg19_dataset=str(d))
    with pytest.raises(ValueError, match="unknown PG19 selector"):
        load_long_text("pg19:last", tok, pg19_dataset=str(d))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_long_text(str(tmp_path / "missing.txt"), tok)
    with pytest.raises(FileNotFoundError, match="no .txt files"):
        load_long_text(str(d), tok)


def test_pg19_out_of_reach_names_the_local_ways(tok, monkeypatch):
    import datasets

    def offline(*args, **kwargs):  # what datasets raises offline, after the hub's retries
        raise ConnectionError("Couldn't reach 'emozilla/pg19-test' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ValueError) as e:
        load_long_text("pg19:first", tok)
    assert str(e.value) == ("cannot read the PG19 dataset 'emozilla/pg19-test' (Couldn't reach "
                            "'emozilla/pg19-test' on the Hub (LocalEntryNotFoundError)); offline, stream local books "
                            "(--text FILE, FOLDER or GLOB) or point --pg19_dataset at a local copy")


def test_an_empty_file_is_refused_not_an_empty_document(tok, two_books):
    folder, _ = two_books
    (folder / "c_empty.txt").write_bytes(b"")
    for source in (str(folder), str(folder / "c_*.txt"), str(folder / "c_empty.txt")):
        with pytest.raises(ValueError, match=r"file '.*c_empty.txt' is empty \(0 bytes\); remove it"):
            load_long_text(source, tok)


def test_the_check_finds_a_file_that_is_not_utf8_as_loading_it_would(tok, two_books):
    """The check a study runs before training looked only for missing and empty files: a Latin-1 book was
    found by the stream stage, after hours of training."""
    from sinktrain.data.longtext import check_long_text_source

    folder, _ = two_books
    check_long_text_source(str(folder))  # UTF-8 books pass
    # the bad byte past the first 1 MiB chunk and its offset counted from the start of the file
    (folder / "c_latin.txt").write_bytes(("é" * (1 << 19)).encode() + b"ab caf\xe9")
    offset = (1 << 20) + len("ab caf")
    for source in (str(folder), str(folder / "c_*.txt")):
        with pytest.raises(ValueError) as checked:
            check_long_text_source(source)
        with pytest.raises(ValueError) as loaded:
            load_long_text(source, tok)
        assert str(checked.value) == str(loaded.value) == (
            f"text file {str(folder / 'c_latin.txt')!r} is not UTF-8 text (byte 0xe9 at offset {offset:,}); "
            f"convert it first (e.g. iconv -f latin1 -t utf-8)")


def test_text_source_sha256(two_books, tmp_path_factory):
    folder, texts = two_books
    one = folder / "a_first.txt"
    assert text_source_sha256(str(one)) == hashlib.sha256(texts["a_first"].encode()).hexdigest()
    pairs = sorted([f"{name}.txt", hashlib.sha256(text.encode()).hexdigest()] for name, text in texts.items())
    expected = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
    assert text_source_sha256(str(folder)) == text_source_sha256(str(folder / "*.txt")) == expected
    # the same books in another folder: the same hash
    moved = shutil.copytree(folder, tmp_path_factory.mktemp("elsewhere") / "books")
    assert text_source_sha256(str(moved)) == expected
    (moved / "a_first.txt").write_text("First book, edited.")
    assert text_source_sha256(str(moved)) != expected
    assert text_source_sha256("pg19:first") is None


def test_text_source_sha256_knows_which_folder_holds_which_text(tmp_path):
    """Sorted bare names: a/x.txt and b/x.txt with their texts swapped stream other tokens but had one hash."""
    for folder, text in (("a", "The first text."), ("b", "The second text.")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.txt").write_text(text)
    pattern = str(tmp_path / "*" / "x.txt")
    before = text_source_sha256(pattern)
    shas = [hashlib.sha256(t.encode()).hexdigest() for t in ("The first text.", "The second text.")]
    assert before == hashlib.sha256(json.dumps([["a/x.txt", shas[0]], ["b/x.txt", shas[1]]]).encode()).hexdigest()
    (tmp_path / "a" / "x.txt").write_text("The second text.")
    (tmp_path / "b" / "x.txt").write_text("The first text.")
    assert text_source_sha256(pattern) != before
