"""Text sources for `prepare`: hub datasets, local files, globs and folders, all read through
`datasets.load_dataset(..., streaming=True)` so the hub path and the local path are one code path.

A source string means, in this order:
  hub:NAME        a dataset repository by name (hub, or a local dataset repo folder), explicitly;
  an existing file        that file;
  an existing folder      every supported file below it, recursively, in sorted order;
  a pattern with * ? [    the files it matches (`**` recurses), in sorted order;
  anything path-like      (starts with / . ~, ends in a supported extension, is no valid hub id, or its first
                          folder exists here, as `data/book` when data/ does) that does not exist: an error;
  anything else           a dataset name on the hub, e.g. EleutherAI/the_pile_deduplicated.

What a document is:
  .jsonl / .json / .parquet   one record (its `text_field`);
  .txt (and .text)            the whole file by default (a book is one document); `txt_documents`
                              "paragraphs" splits on blank lines, "lines" makes every line a document.
Each may be gzip'd (.gz), bz2 (.bz2), xz (.xz) or zstd (.zst). Empty documents are skipped. Records without
the text field are counted: a few (at most 1% of a file) are skipped with a warning, more are an error.
A file that cannot be read (a malformed line, a truncated archive, garbage) is an error naming the file.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from sinktrain.data.tokenizer import looks_like_local_path
from sinktrain.util.utf8 import CHUNK, first_non_utf8, non_utf8_file
from sinktrain.util.hashing import file_sha256

# extension (after stripping compression) -> datasets packaged builder
BUILDERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")
TXT_DOCUMENTS = {"file": "document", "paragraphs": "paragraph", "lines": "line"}  # ours -> datasets' sample_by
HUB_PREFIX = "hub:"
# What the refusals list, from the two tables above: ".txt/.text/... files (optionally .gz/.bz2/...)".
SUPPORTED = f"{'/'.join(BUILDERS)} files (optionally {'/'.join(COMPRESSIONS)})"


@dataclass
class Source:
    """One resolved source: either local files (read one by one, so errors can name the file) or a hub name."""

    spec: str
    kind: str  # "files" | "hub"
    files: list[Path] = field(default_factory=list)
    _described: dict | None = field(default=None, init=False, repr=False, compare=False)
    _stats: list = field(default_factory=list, init=False, repr=False, compare=False)
    _hashed: list = field(default_factory=list, init=False, repr=False, compare=False)

    def describe(self) -> dict:
        """spec, kind and, for local files (and the files of a `hub:` source that is a local dataset folder), each
        file's path, size and sha256: a later `prepare` compares these to notice that the same paths now hold
        different data (an edited book often keeps its size). Computed once per Source: each file is hashed once
        per run however often this is asked. `prepare` asks before it tokenizes, and `changed_file` then says
        whether a file changed since. (A hub repository on the hub is described by its name only.)"""
        if self._described is None:
            d = {"spec": self.spec, "kind": self.kind}
            self._hashed = self.files if self.kind == "files" else _local_dataset_files(self.spec)
            if self.kind == "files" or self._hashed:
                d["files"] = []
            for f in self._hashed:
                # stat before hashing: a write during the hash changes the mtime after this one
                self._stats.append(_file_state(f))
                d["files"].append({"path": str(f), "bytes": self._stats[-1][0], "sha256": file_sha256(f)})
            self._described = d
        return self._described

    def check_utf8(self) -> None:
        """Refuse an uncompressed text or JSON file that is not UTF-8, decoding each whole in 1 MiB chunks, before
        anything is tokenized: it failed only when its turn came, after the sources before it were done. (Apart
        from `describe`, which waiting ranks and a rerun that finds its dataset ask as well: only `prepare` itself,
        about to tokenize, pays for this pass.)"""
        for path in self.files:
            if builder_for(path) in ("text", "json") and not path.name.lower().endswith(COMPRESSIONS):
                bad = non_utf8_file(path)
                if bad is not None:
                    raise ValueError(f"file {str(path)!r} is not valid UTF-8 (byte 0x{bad[0]:02x} at offset "
                                     f"{bad[1]:,}); convert it first (e.g. iconv -f latin1 -t utf-8)")

    def changed_file(self) -> Path | None:
        """The first file whose size, modification time or inode is not what `describe` saw (a file edited, or
        replaced by an editor's rename, since it was hashed), else None."""
        for f, seen in zip(self._hashed, self._stats):
            try:
                if _file_state(f) != seen:
                    return f
            except OSError:  # deleted
                return f
        return None

    def reads_from(self, folder: Path) -> bool:
        """Whether files `prepare` writes into `folder` (manifest.json, tokenizer/*.json) are, or on the next run
        would be, among this source's files: an output folder this source reads its own output from."""
        if self.kind != "files":
            return False
        # A file of the output already read back, whatever the spelling: a link on the way (src/link -> the output)
        # hid it from the checks below, and the manifest was tokenized as training data.
        if any(f.resolve().is_relative_to(folder.resolve()) for f in self.files):
            return True
        root = Path(os.path.expanduser(self.spec))
        if root.is_dir():
            return folder.resolve().is_relative_to(root.resolve())
        if not root.is_file() and any(c in self.spec for c in "*?["):
            pattern = os.path.abspath(os.path.expanduser(self.spec))
            written = [folder / "manifest.json", folder / "tokenizer" / "tokenizer.json"]
            return any(_glob_matches(pattern, os.path.abspath(p)) for p in written)
        return False


def _local_dataset_files(spec: str) -> list[Path]:
    """The files of a `hub:` source that names a local dataset folder (laid out like a hub repository), which
    load_dataset reads from there: every file below it but hidden ones (.git), sorted. Empty for a hub name."""
    folder = Path(os.path.expanduser(spec.removeprefix(HUB_PREFIX)))
    if not spec.startswith(HUB_PREFIX) or not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _file_state(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _glob_matches(pattern: str, path: str) -> bool:
    """Whether `glob.glob(pattern, recursive=True)` would list `path` if it existed (both absolute): `**` spans
    any number of folders, other parts match one name each, and a wildcard does not match a hidden name."""

    def match(pat: tuple, parts: tuple) -> bool:
        if not pat:
            return not parts
        if pat[0] == "**":
            return any(match(pat[1:], parts[i:]) for i in range(len(parts) + 1)
                       if not any(p.startswith(".") for p in parts[:i]))
        if not parts or (parts[0].startswith(".") and not pat[0].startswith(".")
                          and any(c in pat[0] for c in "*?[")):
            return False
        return fnmatch.fnmatchcase(parts[0], pat[0]) and match(pat[1:], parts[1:])

    return match(Path(pattern).parts, Path(path).parts)


def builder_for(path: Path) -> str | None:
    """The `datasets` builder that reads `path`, or None if the extension is not supported."""
    name = path.name.lower()
    for comp in COMPRESSIONS:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    return BUILDERS.get(os.path.splitext(name)[1])


def _supported(paths) -> list[Path]:
    return sorted(Path(p) for p in paths if Path(p).is_file() and builder_for(Path(p)) is not None)


def _looks_like_path(spec: str) -> bool:
    # The tokenizer's rule (a missing local path fails at once, not after a minute of hub retries), plus our
    # data extensions.
    return looks_like_local_path(spec) or builder_for(Path(spec)) is not None


def _check_files(files: list[Path]) -> list[Path]:
    """Refuse, before anything is tokenized, a file that would fail only once earlier sources are done."""
    for path in files:
        if path.stat().st_size == 0:
            raise ValueError(f"file {str(path)!r} is empty (0 bytes); remove it from the sources")
    zst = next((p for p in files if p.name.lower().endswith(".zst")), None)
    if zst is not None:
        _require_zstandard(zst)
    for path in files:
        if path.name.lower().endswith(COMPRESSIONS) and builder_for(path) in ("text", "json"):
            _check_compressed_start(path)
    return files


def _check_compressed_start(path: Path) -> None:
    """A compressed text or JSON file: its first MiB of text decompressed and decoded (cheap, where the whole would
    be a full decompression of the corpus), so a garbage archive or a Latin-1 dump is refused before anything is
    tokenized. Past that, such a file is checked as it is read."""
    import bz2
    import gzip
    import lzma

    name = path.name.lower()
    try:
        if name.endswith(".zst"):
            import zstandard

            f = zstandard.open(path, "rb")
        else:
            f = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[os.path.splitext(name)[1]](path, "rb")
        with f:
            bad = first_non_utf8(f, limit=CHUNK)
    except Exception as e:  # noqa: BLE001 - BadGzipFile, EOFError (truncated), LZMAError, ZstdError: name the file
        raise ValueError(f"file {str(path)!r} could not be read as {builder_for(path)} ({_first_line(e)}); "
                         f"fix or remove it from the sources") from e
    if bad is not None:
        raise ValueError(f"file {str(path)!r} is not valid UTF-8 (byte 0x{bad[0]:02x} at offset {bad[1]:,} of its "
                         f"decompressed text); convert it first (e.g. iconv -f latin1 -t utf-8)")


def _require_zstandard(path: Path) -> None:
    """datasets reads .zst through the zstandard package (a dependency of ours, not of datasets); without it
    datasets says only "Compression type zstd not supported"."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        raise ValueError(f"file {str(path)!r} is zstd-compressed, which needs the zstandard package; "
                         f"pip install zstandard") from None


def resolve_source(spec: str) -> Source:
    """Turn one source string into a `Source`; raise FileNotFoundError / ValueError for bad ones."""
    spec = str(spec)
    if not spec.strip():
        raise ValueError("empty source string; pass a file, folder, glob or dataset name")
    if spec.startswith(HUB_PREFIX):
        return Source(spec, "hub")
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        if builder_for(path) is None:
            raise ValueError(
                f"source {spec!r} has an unsupported extension; use {SUPPORTED}"
            )
        return Source(spec, "files", _check_files([path]))
    if path.is_dir():
        # hidden files and folders (.git, .cache) are not data
        visible = (p for p in path.rglob("*") if not any(part.startswith(".") for part in p.relative_to(path).parts))
        files = _supported(visible)
        if not files:
            raise FileNotFoundError(f"folder {spec!r} holds no {SUPPORTED}")
        return Source(spec, "files", _check_files(files))
    if any(c in spec for c in "*?["):
        files = _supported(glob.glob(os.path.expanduser(spec), recursive=True))
        if not files:
            raise FileNotFoundError(f"pattern {spec!r} matches no {SUPPORTED}")
        return Source(spec, "files", _check_files(files))
    if _looks_like_path(spec):
        raise FileNotFoundError(
            f"source {spec!r} does not exist; check the path (or prefix a dataset name with 'hub:')")
    return Source(spec, "hub")


def check_distinct(sources: list[Source]) -> None:
    """Refuse a file that the sources name twice (`[books, books/a.txt]`, `./a.txt` beside `a.txt`, a link to a
    file beside it): its documents were tokenized twice, and with a document-indexed split could land in both
    train and validation."""
    seen: dict[tuple[int, int], tuple[Path, str]] = {}
    for source in sources:
        for path in source.files:
            st = path.stat()
            key = (st.st_dev, st.st_ino)  # the file itself, however its path is spelt
            if key in seen:
                first, spec = seen[key]
                also = f" (as {str(path)!r})" if str(path) != str(first) else ""
                raise ValueError(f"file {str(first)!r} is in the sources twice, through {spec!r} and through "
                                 f"{source.spec!r}{also}; list each file once")
            seen[key] = (path, source.spec)


def _text_of(row: dict, text_field: str, where: str) -> str:
    if text_field not in row:
        raise ValueError(
            f"{where} has no field {text_field!r} (fields: {', '.join(map(str, row))}); "
            f"pass --text-field with the right name"
        )
    text = row[text_field]
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ValueError(f"{where}: field {text_field!r} holds {type(text).__name__}, not text; pass --text-field")
    return text


def _decode_error(err: BaseException) -> bool:
    """True when `err` (or its cause chain) is a failure to decode bytes as UTF-8."""
    while err is not None:
        if isinstance(err, UnicodeDecodeError) or "utf-8" in str(err).lower() or "utf8" in str(err).lower():
            return True
        err = err.__cause__ or err.__context__
    return False


# A few records without the text field (a stray metadata line) are skipped with a warning; more than this
# fraction of a file means the wrong --text-field, and dropping them silently would lose the corpus.
MISSING_FIELD_TOLERANCE = 0.01


def _quiet_datasets_loaders() -> None:
    """datasets logs its own copy of a file's read error before raising; ours names the file in one line."""
    import logging

    for name in ("datasets.packaged_modules.json.json", "datasets.packaged_modules.parquet.parquet"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _check_missing(where: str, field_name: str, missing: int, records: int) -> None:
    """Records without the text field: an error past the tolerance, else a warning with the count."""
    if missing > MISSING_FIELD_TOLERANCE * records:
        raise ValueError(
            f"{where}: {missing:,} of {records:,} records have no field {field_name!r}; "
            f"pass --text-field with the right name (or clean the data)"
        )
    if missing:
        print(f"prepare: warning: skipped {missing:,} of {records:,} records of {where} that have no field "
              f"{field_name!r}", file=sys.stderr, flush=True)


def _iter_file(path: Path, text_field: str, txt_documents: str) -> Iterator[str]:
    from datasets import load_dataset

    _quiet_datasets_loaders()
    builder = builder_for(path)
    field_name = "text" if builder == "text" else text_field
    kwargs = {"sample_by": TXT_DOCUMENTS[txt_documents]} if builder == "text" else {}
    counts = {"records": 0, "missing": 0, "documents": 0}
    if path.name.lower().endswith(".zst"):
        _require_zstandard(path)
    try:
        # data_files is a glob pattern to datasets: escaped, a name like `notes[1].txt` is that file alone
        ds = load_dataset(builder, data_files=glob.escape(str(path)), split="train", streaming=True, **kwargs)
        yield from _texts(ds, field_name, f"file {str(path)!r}", counts)
    except ValueError as e:
        if not isinstance(e, UnicodeDecodeError):  # (a subclass of ValueError) our own clear errors pass as is
            if str(e).startswith(f"file {str(path)!r}"):
                raise
            raise ValueError(f"file {str(path)!r} could not be read as {builder} ({_first_line(e)}); "
                             f"fix or remove it from the sources") from e
        raise ValueError(
            f"file {str(path)!r} is not valid UTF-8 ({e.reason}); convert it first "
            f"(e.g. iconv -f latin1 -t utf-8)"
        ) from e
    except Exception as e:  # noqa: BLE001 - a malformed line, a truncated .gz, garbage parquet: name the file
        if _decode_error(e):
            raise ValueError(
                f"file {str(path)!r} is not valid UTF-8; convert it first (e.g. iconv -f latin1 -t utf-8)"
            ) from e
        raise ValueError(f"file {str(path)!r} could not be read as {builder} ({_first_line(e)}); "
                         f"fix or remove it from the sources") from e
    _check_missing(f"file {str(path)!r}", field_name, counts["missing"], counts["records"])
    if counts["documents"] == 0:
        raise ValueError(f"file {str(path)!r} is empty (no non-empty documents); remove it from the sources")


def _texts(rows, field: str, where: str, counts: dict) -> Iterator[str]:
    """The non-empty texts in `field` of `rows`, counting into `counts` the records, those without the field
    (datasets unifies the records' schema: a record lacking the field reads back as None) and the documents."""
    for row in rows:
        counts["records"] += 1
        if row.get(field, "") is None:
            counts["missing"] += 1
            continue
        text = _text_of(row, field, where)
        if text:
            counts["documents"] += 1
            yield text


def _iter_hub(spec: str, split: str, text_field: str, hub_config: str | None) -> Iterator[str]:
    from datasets import load_dataset

    name = spec[len(HUB_PREFIX):] if spec.startswith(HUB_PREFIX) else spec
    try:
        ds = load_dataset(name, hub_config, split=split, streaming=True)
    except Exception as e:  # noqa: BLE001 - offline, no such repo, no such split: one clear line
        what = "could not be loaded as a dataset" if spec.startswith(HUB_PREFIX) else \
            "is neither a local path nor a loadable dataset"
        raise FileNotFoundError(f"source {name!r} {what} ({type(e).__name__}: {e}); check the name") from e
    counts = {"records": 0, "missing": 0, "documents": 0}
    yield from _texts(ds, text_field, f"dataset {name!r}", counts)
    _check_missing(f"dataset {name!r}", text_field, counts["missing"], counts["records"])
    if counts["documents"] == 0:
        raise ValueError(f"dataset {name!r} split {split!r} has no non-empty documents in field {text_field!r}")


def iter_documents(source: Source, *, text_field: str = "text", split: str = "train",
                   txt_documents: str = "file", hub_config: str | None = None) -> Iterator[str]:
    """Yield the non-empty documents of `source`, in a fixed order (files sorted, records in file order)."""
    if txt_documents not in TXT_DOCUMENTS:
        raise ValueError(f"txt_documents must be one of {', '.join(TXT_DOCUMENTS)}, not {txt_documents!r}")
    if source.kind == "hub":
        yield from _iter_hub(source.spec, split, text_field, hub_config)
        return
    for path in source.files:
        yield from _iter_file(path, text_field, txt_documents)
