"""Long token streams for streaming evaluation: PG19 from the hub (or a local stand-in) or local books.

`source` forms:
  "pg19"          every book of the PG19 test split, in dataset order, until `max_tokens`
  "pg19:first"    the first book only (what the StreamingLLM paper's Table 3 used); same as "pg19:0"
  "pg19:<i>"      the i-th book (0-based)
  a .txt file, a folder (its *.txt, sorted by name), or a glob ("data/books/austen_*.txt")
Documents are tokenized without special tokens and concatenated in order, separated by the EOD id.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sinktrain.util.hashing import file_sha256
from sinktrain.util.text_files import MISSING, check_utf8_file, file_problem, read_utf8

PG19_PREFIX = "pg19"


@dataclass
class LongText:
    tokens: np.ndarray  # int64 [n]
    doc_starts: list[int] = field(default_factory=list)  # token offset of each document in `tokens`
    names: list[str] = field(default_factory=list)  # one per document

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def _eod(tokenizer) -> int:
    # EOD is id 0 for the GPT-NeoX tokenizer; other tokenizers name theirs as eos.
    return int(tokenizer.eos_token_id) if tokenizer.eos_token_id is not None else 0


def _encode(tokenizer, text: str) -> list[int]:
    # No special tokens: an exported token-sink tokenizer would otherwise prepend its sink ids.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _pg19_documents(source: str, dataset: str, split: str):
    """Yield (name, text) for the selected PG19 books, reading the dataset as a stream (no full download)."""
    selector = source[len(PG19_PREFIX):].lstrip(":")
    if selector in ("", "all"):
        wanted = None
    elif selector == "first":
        wanted = 0
    elif selector.isdigit():
        wanted = int(selector)
    else:
        raise ValueError(f"unknown PG19 selector {source!r}; use 'pg19', 'pg19:first' or 'pg19:<book index>'")
    try:
        import datasets  # not installed on every machine (the GPU box lacks it), so imported only here
    except ImportError as e:
        raise RuntimeError("loading PG19 needs the `datasets` package; pip install datasets or pass local books") from e
    seen = 0
    try:
        for i, row in enumerate(datasets.load_dataset(dataset, split=split, streaming=True)):
            seen = i + 1
            if wanted is not None and i < wanted:
                continue
            if "text" not in row:
                raise ValueError(f"dataset {dataset!r} has no 'text' field; pass a PG19-like dataset with one")
            yield str(row.get("short_book_title") or row.get("title") or f"pg19[{i}]"), row["text"]
            if wanted is not None:
                return
    except OSError as e:  # ConnectionError offline (after the hub's retries), a missing local copy
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"cannot read the PG19 dataset {dataset!r} ({first}); offline, stream local books "
                         f"(--text FILE, FOLDER or GLOB) or point --pg19_dataset at a local copy") from None
    if wanted is not None:
        raise ValueError(f"{source!r} asks for book {wanted} but dataset {dataset!r} ({split}) has only {seen} books")


def _local_paths(source: str) -> list[Path]:
    paths = _matching_paths(source)
    for p in paths:  # an empty file would enter the stream as an empty document (two EODs in a row), unsaid
        if p.stat().st_size == 0:
            raise ValueError(f"file {str(p)!r} is empty (0 bytes); remove it, or pass a --text without it")
    return paths


def _matching_paths(source: str) -> list[Path]:
    if source == "":  # Path("") is the current folder, whose .txt files would stream unasked
        raise ValueError("--text is empty; give a path: 'pg19', a .txt file, a folder or a glob")
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        paths = sorted(path.glob("*.txt"))
        if not paths:
            raise FileNotFoundError(
                f"folder {source!r} holds no .txt files; point --text at a book or a folder of books")
        return paths
    if any(ch in source for ch in "*?["):
        paths = [Path(p) for p in sorted(globlib.glob(source)) if Path(p).is_file()]
        if not paths:
            raise FileNotFoundError(f"glob {source!r} matches no files; check the pattern")
        return paths
    problem = file_problem(source)
    error = FileNotFoundError if problem == MISSING else ValueError
    raise error(f"text source {source!r} {problem}; pass 'pg19', a .txt file, a folder or a glob")


def check_long_text_source(source: str) -> None:
    """Raise what `load_long_text` would for a bad local source (missing, empty, not UTF-8), reading each file once
    in chunks without tokenizing it: a study checks its text this way before it trains for hours. PG19 is not
    checked: that needs the hub."""
    if is_pg19(source):
        return
    for path in _local_paths(source):
        check_utf8_file(path, "text file")  # the lines read_utf8 gives when it meets the same file


def is_pg19(source: str) -> bool:
    return source == PG19_PREFIX or source.startswith(PG19_PREFIX + ":")


def text_source_sha256(source: str) -> str | None:
    """Content hash of a local source's files, whole (also those past `max_tokens`): a single file's sha256;
    for several, the sha256 of their [path below the source's folder, sha256] pairs in the order they are read
    (so it does not depend on where the folder lies, but does on which file holds which text: sorted bare names
    gave a/x.txt and b/x.txt with their contents swapped, another token stream, the same hash). None for PG19
    (the dataset names its text)."""
    if is_pg19(source):
        return None
    paths = _local_paths(source)
    if len(paths) == 1:
        return file_sha256(paths[0])
    root = _fixed_root(source)
    pairs = [[p.relative_to(root).as_posix(), file_sha256(p)] for p in paths]
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def _fixed_root(source: str) -> Path:
    """The folder a folder or glob source's files lie below: the folder itself, or a pattern's leading parts
    without a wildcard (`books/*/x.txt`: books)."""
    path = Path(source)
    if path.is_dir():
        return path
    fixed = []
    for part in path.parts:
        if any(ch in part for ch in "*?["):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def _local_documents(source: str):
    for p in _local_paths(source):
        yield p.stem, read_utf8(p, "text file")


def load_long_text(
    source: str,
    tokenizer=None,
    max_tokens: int | None = None,
    pg19_dataset: str = "emozilla/pg19-test",
    split: str = "test",
) -> LongText:
    """Tokenize the documents of `source` in order into one stream (EOD between documents), at most `max_tokens`."""
    if tokenizer is None:
        from sinktrain.data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer()
    if max_tokens is not None and max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    docs = _pg19_documents(source, pg19_dataset, split) if is_pg19(source) else _local_documents(source)
    eod = _eod(tokenizer)
    pieces: list[np.ndarray] = []
    doc_starts: list[int] = []
    names: list[str] = []
    total = 0
    for name, text in docs:
        if max_tokens is not None and total >= max_tokens:
            break  # stop reading (and streaming) as soon as enough tokens are in
        ids = _encode(tokenizer, text)
        if pieces:
            pieces.append(np.array([eod], dtype=np.int64))
            total += 1
        doc_starts.append(total)
        names.append(name)
        pieces.append(np.asarray(ids, dtype=np.int64))
        total += len(ids)
    if not pieces:
        raise ValueError(f"text source {source!r} yielded no documents")
    tokens = np.concatenate(pieces)
    if max_tokens is not None:
        tokens = tokens[:max_tokens]
        keep = [i for i, s in enumerate(doc_starts) if s < len(tokens)]
        doc_starts = [doc_starts[i] for i in keep]
        names = [names[i] for i in keep]
    return LongText(tokens=tokens, doc_starts=doc_starts, names=names)
