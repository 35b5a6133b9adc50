"""`prepare`: sources -> documents -> token ids (EOD after every document) -> packed shards + manifest.

Output is a pure function of (sources' contents, tokenizer, config): documents are read in a fixed order,
tokenized in batches whose results are consumed in submission order, and assigned to train/val by a hash
of (seed, document index). Shards are written as `*.bin.tmp` and renamed when complete; the manifest is
written last, so an interrupted run never leaves a directory that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from sinktrain.config_io import Fraction, NonNegativeInt, PositiveInt, Seed, configclass
from sinktrain.util.atomic import temp_name
from sinktrain.util.outputs import folder_lock, output_lock
from sinktrain.util.progress import progress
from sinktrain.data.manifest import (CONTENT_CONFIG_KEYS, FORMAT, HASHED_BEFORE_ADDED_TOKENS, MANIFEST, SHARD, SPLITS,
                                     TOKENIZER_DIR, read_manifest, saved_tokenizer_problem, source_identity,
                                     token_dtype)
from sinktrain.data.sources import TXT_DOCUMENTS, Source, check_distinct, iter_documents, resolve_source
from sinktrain.data.tokenizer import eod_id, legacy_tokenizer_hash, load_tokenizer, tokenizer_hash

# Config keys that change the bytes written; the others (workers, batch size, progress) only change speed.
OUTPUT_KEYS = ("sources", "tokenizer", "val_fraction", "val_documents", "seed", "text_field", "split",
               "hub_config", "txt_documents", "max_documents", "max_tokens", "dtype", "shard_tokens")


class PrepareAgain(FileExistsError):
    """`out_dir` holds a dataset that only a new preparation can fix (`what`: why). The message gives the data
    verb's fix; a caller with other options (a study's `data:` section) words its own from `what`."""

    def __init__(self, out_dir: Path, what: str, fix: str):
        self.what = what
        super().__init__(f"{str(out_dir)!r} {what}; {fix}")


@configclass()
class PrepareConfig:
    """What to tokenize and where to put it. See docs/data.md."""

    # None admitted: a blank `sources:` in a YAML file is "none given" (one line below), not a TypeError.
    sources: list[str] | str | None = None
    """Files, folders, globs, `hub:NAME` or hub dataset names; one, or a list such as [a.txt, b/] (required)."""
    out_dir: str = ""
    """The data directory to write (manifest.json, train-*.bin, val-*.bin)."""
    tokenizer: str | None = None
    """None: the bundled GPT-NeoX-20B tokenizer; else a tokenizer.json, a folder or a hub name."""
    val_fraction: Fraction = 0.01
    """Probability that a document goes to the validation split (seeded hash of its index)."""
    val_documents: NonNegativeInt | None = None
    """Cap on validation documents (later picks go to train). If the coin picks no document at all (a few
    whole books), the last document goes to validation instead."""
    seed: Seed = 1234
    """Seed of the train/val assignment."""
    text_field: str = "text"
    """Record field holding the text (json/parquet/hub sources)."""
    split: str = "train"
    """Split of hub datasets to stream."""
    hub_config: str | None = None
    """Config name of hub datasets (e.g. wikitext-103-raw-v1)."""
    txt_documents: str = "file"
    """What a document is in .txt files: file (a whole file), paragraphs (split on blank lines) or lines."""
    num_workers: NonNegativeInt = 0
    """0: tokenize in this process (the Rust tokenizer threads over each batch); N: N worker processes."""
    batch_size: PositiveInt = 256
    """Documents per tokenization batch (a batch is also cut at batch_bytes of text)."""
    batch_bytes: PositiveInt = 8 << 20
    """Bytes of text per tokenization batch at most."""
    max_documents: PositiveInt | None = None
    """Stop after this many documents (None: all)."""
    max_tokens: PositiveInt | None = None
    """Stop after the document that brings the total (EODs included) to this many tokens."""
    dtype: str = "auto"
    """auto (uint16 if the vocabulary fits, else uint32), uint16 or uint32."""
    shard_tokens: PositiveInt = 1 << 28
    """Tokens per shard file before starting the next one."""
    overwrite: bool = False
    """Replace an existing data directory that was prepared with another config."""
    progress: bool = True
    """Show a progress bar (documents, MB/s, tokens/s) on stderr."""

    def __post_init__(self):
        if isinstance(self.sources, (str, Path)):
            self.sources = [self.sources]
        self.sources = [str(s) for s in self.sources or []]
        if not self.sources:
            raise ValueError("no sources given; pass --sources PATH|GLOB|DATASET (or a list: --sources '[a, b]')")
        if not self.out_dir:
            raise ValueError("no output directory given; pass --out_dir DIR")
        self.out_dir = str(self.out_dir)
        if self.txt_documents not in TXT_DOCUMENTS:
            raise ValueError(f"txt_documents must be one of {', '.join(TXT_DOCUMENTS)}, got {self.txt_documents!r}")
        token_dtype(1, self.dtype)  # validates the name


def usable_cpus() -> int:
    """The CPUs this process may run on (a SLURM or taskset limit included), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ---------------------------------------------------------------- train/val assignment


def is_validation(seed: int, doc_index: int, val_fraction: float) -> bool:
    """Seeded, order-free coin for document `doc_index`: the same document index always lands in the same split."""
    digest = hashlib.blake2b(f"{seed}:{doc_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < val_fraction


# ---------------------------------------------------------------- tokenization (in process or in workers)

_WORKER_TOKENIZER = None


def _init_worker(tokenizer_json: str) -> None:
    # One Rust thread per worker: the parallelism is the worker processes themselves.
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = Tokenizer.from_str(tokenizer_json)


def encode_batch(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of `texts` (no special tokens) as one concatenated uint32 array plus per-text lengths."""
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)  # _fast skips offsets
    encodings = encode(texts, add_special_tokens=False)
    arrays = [np.array(e.ids, dtype=np.uint32) for e in encodings]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    return (np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint32)), lengths


def _encode_in_worker(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return encode_batch(_WORKER_TOKENIZER, texts)


def tokenized_batches(batches: Iterator[list], backend, num_workers: int, tokenizer_json: str):
    """Yield (batch, (ids, lengths)) in submission order; at most 2 batches per worker in flight (bounded memory)."""
    if num_workers == 0:
        for batch in batches:
            yield batch, encode_batch(backend, [text for _, text in batch])
        return
    import multiprocessing

    # spawn, not fork: a forked child of a process that already used the Rust thread pool can deadlock.
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(num_workers, initializer=_init_worker, initargs=(tokenizer_json,))
    try:
        pending: deque = deque()
        for batch in batches:
            pending.append((batch, pool.apply_async(_encode_in_worker, ([text for _, text in batch],))))
            if len(pending) >= 2 * num_workers:
                b, result = pending.popleft()
                yield b, result.get()
        while pending:
            b, result = pending.popleft()
            yield b, result.get()
    finally:
        pool.terminate()
        pool.join()


def _batches(documents: Iterator[tuple[int, str]], batch_size: int, batch_bytes: int) -> Iterator[list]:
    batch, size = [], 0
    for item in documents:
        batch.append(item)
        size += len(item[1])
        if len(batch) >= batch_size or size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# ---------------------------------------------------------------- shards


class ShardWriter:
    """Appends token ids to `<split>-NNNNN.bin.tmp` files of at most `shard_tokens` tokens; `commit` renames them."""

    def __init__(self, out_dir: Path, split: str, dtype: str, shard_tokens: int):
        self.out_dir, self.split, self.dtype, self.shard_tokens = out_dir, split, np.dtype(dtype), shard_tokens
        self.names: list[str] = []
        self.tokens = 0
        self.documents = 0
        self._file = None
        self._in_shard = 0
        self._last_document: np.ndarray | None = None

    def write_document(self, ids: np.ndarray) -> None:
        ids = ids.astype(self.dtype, copy=False)
        self._last_document = ids
        self.documents += 1
        self.tokens += len(ids)
        while len(ids):
            if self._file is None:
                self.names.append(f"{self.split}-{len(self.names):05d}.bin")
                self._file = open(self.out_dir / (self.names[-1] + ".tmp"), "wb")
                self._in_shard = 0
            part = ids[: self.shard_tokens - self._in_shard]
            self._file.write(part.tobytes())
            self._in_shard += len(part)
            ids = ids[len(part):]
            if self._in_shard == self.shard_tokens:
                self._close()

    def pop_last_document(self) -> np.ndarray:
        """Take the last document back out (truncating the shard files it sits in); for the val fallback."""
        ids, self._last_document = self._last_document, None
        assert ids is not None, "no document to pop"
        self._close()
        remaining = len(ids)
        while remaining:
            path = self.out_dir / (self.names[-1] + ".tmp")
            held = path.stat().st_size // self.dtype.itemsize
            cut = min(remaining, held)
            os.truncate(path, (held - cut) * self.dtype.itemsize)
            remaining -= cut
            if cut == held:
                path.unlink()
                self.names.pop()
        self.tokens -= len(ids)
        self.documents -= 1
        return ids

    def _close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def commit(self) -> list[str]:
        self._close()
        for name in self.names:
            os.replace(self.out_dir / (name + ".tmp"), self.out_dir / name)
        return self.names

    def abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # its buffer did not fit on a full disk: the file goes anyway, and the error is raised
                pass
            self._file = None
        for name in self.names:
            (self.out_dir / (name + ".tmp")).unlink(missing_ok=True)


# Exactly the file names prepare writes: ShardWriter's shards (manifest.SHARD; `.tmp` while written), the
# manifest and its temporary name (util/atomic.py temp_name, written whole before the earlier dataset is replaced),
# the tokenizer folder and its temporary one. Nothing else in a folder is ever deleted.
_MANIFEST_TMP = temp_name(MANIFEST).name
_TOKENIZER_TMP = TOKENIZER_DIR + ".tmp"
# What save_pretrained writes for a fast tokenizer (transformers 5 writes the first two; the others appear for
# some tokenizers or versions). A `tokenizer` folder holding anything else is the user's.
_TOKENIZER_FILES = frozenset({"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                              "added_tokens.json", "chat_template.jinja", "chat_template.json"})


def _is_partial(name: str) -> bool:
    return name == _MANIFEST_TMP or (name.endswith(".tmp") and bool(SHARD.fullmatch(name[:-len(".tmp")])))


def _is_own(path: Path) -> bool:
    """Whether prepare wrote `path`, an entry of an output folder that holds no sinktrain manifest: a `tokenizer`
    entry is ours only if it is a real folder of save_pretrained's files. Symlinks are never ours (writing or
    deleting through one would reach outside --out_dir). (Beside a dataset's manifest, its `tokenizer` entry is
    ours whatever it holds, a link included, which is unlinked, never followed.)"""
    if path.name in (TOKENIZER_DIR, _TOKENIZER_TMP):
        return path.is_dir() and not path.is_symlink() and all(
            child.name in _TOKENIZER_FILES and child.is_file() and not child.is_symlink() for child in path.iterdir())
    ours = SHARD.fullmatch(path.name) is not None or _is_partial(path.name)
    return ours and path.is_file() and not path.is_symlink()


def _dataset_manifest(out_dir: Path) -> dict | None:
    """The manifest of the sinktrain dataset in `out_dir`; None when there is no manifest.json; FileExistsError
    when there is one that is not ours (a web app's): that folder is the user's, with or without --overwrite."""
    if not (out_dir / MANIFEST).exists() and not (out_dir / MANIFEST).is_symlink():
        return None
    try:
        return read_manifest(out_dir)
    except (ValueError, OSError):
        # prepare writes its manifest atomically and whole: one that does not read is another program's
        raise FileExistsError(f"output folder {str(out_dir)!r} is not empty and not a sinktrain dataset (its "
                              f"{MANIFEST} is not a sinktrain manifest); pass an empty or new --out_dir") from None


def _check_out_dir_is_ours(out_dir: Path, dataset: bool) -> None:
    """Refuse a non-empty folder holding anything prepare did not write (beside a dataset, other files are kept
    as they are; without one, the folder is the user's): its files are not ours to replace."""
    if dataset or not out_dir.is_dir():
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if not _is_own(p))
    if foreign:
        raise FileExistsError(
            f"output folder {str(out_dir)!r} is not empty and not a sinktrain dataset (it holds "
            f"{', '.join(map(repr, foreign[:3]))}{', ...' if len(foreign) > 3 else ''}); pass an empty or new --out_dir"
        )


def _check_out_dir_outside_sources(out_dir: Path, sources: list[Source]) -> None:
    """Refuse an output folder a source would read back: its manifest.json would become training data."""
    for source in sources:
        if source.reads_from(out_dir):
            raise ValueError(f"--out_dir {str(out_dir)!r} is inside source {source.spec!r}; put it elsewhere")


def _damage(out_dir: Path, manifest: dict) -> str | None:
    """What is wrong with the shards a manifest lists (a missing file, a wrong size) or with the tokenizer copy
    beside them (a hand-edited tokenizer/ is another tokenizer than the one the ids came from), else None."""
    itemsize = np.dtype(manifest["dtype"]).itemsize
    for split in SPLITS:  # (read_manifest checked these two; other keys are no shards of ours)
        info = manifest["splits"][split]
        paths = [out_dir / name for name in info["files"]]
        missing = next((p for p in paths if not p.is_file()), None)
        if missing is not None:
            return f"shard {missing.name} is missing"
        size = sum(p.stat().st_size for p in paths)
        if size != info["tokens"] * itemsize:
            expected = info["tokens"] * itemsize
            return f"the {split} shards hold {size:,} bytes, not the {expected:,} of {info['tokens']:,} tokens"
    return saved_tokenizer_problem(out_dir, manifest)


def _remove_tokenizer(out_dir: Path, name: str = TOKENIZER_DIR) -> None:
    # A symlink is unlinked, never followed (rmtree would refuse one; save_pretrained would write through it).
    path = out_dir / name
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def _remove_partial(out_dir: Path) -> None:
    """Delete the temporary files a killed prepare left here (an earlier complete dataset stays as it is). A link
    by such a name is unlinked too (not followed): ShardWriter's open() would write through it."""
    for path in out_dir.iterdir():
        if _is_partial(path.name) and (path.is_symlink() or path.is_file()):
            path.unlink()
    tok_tmp = out_dir / _TOKENIZER_TMP
    if tok_tmp.is_symlink() or tok_tmp.exists():
        if not (tok_tmp.is_symlink() or _is_own(tok_tmp)):  # a folder of the user's by that name: theirs, kept
            raise FileExistsError(f"{str(tok_tmp)!r} is in the way of the tokenizer prepare writes there first and "
                                  f"is not one it left; move it elsewhere")
        _remove_tokenizer(out_dir, _TOKENIZER_TMP)


def _write_manifest_tmp(out_dir: Path, manifest: dict) -> None:
    """The new manifest, whole, under its temporary name: renamed into place last, once the shards and the
    tokenizer are."""
    (out_dir / _MANIFEST_TMP).write_text(json.dumps(manifest, indent=2) + "\n")


def _replace_previous(out_dir: Path, writers: dict) -> None:
    """Put the new dataset, written whole beside the earlier one (shards as `.tmp`, the tokenizer in
    tokenizer.tmp/, the manifest as manifest.tmp.json), in place of it: the old manifest goes first, so the folder
    stops looking complete, the new one comes last. Only renames and unlinks happen here; until the first of them
    an overwritten dataset is whole, so a failure anywhere before (a source that is not UTF-8, a full disk while
    the tokenizer or the manifest was saved) loses nothing."""
    manifest = out_dir / MANIFEST
    had_dataset = manifest.exists()
    manifest.unlink(missing_ok=True)
    try:
        new = {name for w in writers.values() for name in w.names}
        for path in out_dir.iterdir():
            if SHARD.fullmatch(path.name) and path.name not in new and path.is_file() and not path.is_symlink():
                path.unlink()
        for w in writers.values():
            w.commit()
        _remove_tokenizer(out_dir)
        os.replace(out_dir / _TOKENIZER_TMP, out_dir / TOKENIZER_DIR)
        os.replace(out_dir / _MANIFEST_TMP, manifest)
    except OSError as e:
        if not had_dataset:
            raise
        raise type(e)(f"the earlier dataset in {str(out_dir)!r} was removed, but the new one could not be put in "
                      f"its place ({e}); prepare it again") from e


# ---------------------------------------------------------------- throughput


@dataclass
class Throughput:
    """Text bytes, tokens and documents done so far, and the rates (for the progress bar and benchmarks/)."""

    start: float = field(default_factory=time.perf_counter)
    bytes: int = 0
    tokens: int = 0
    documents: int = 0

    def stats(self) -> dict:
        dt = max(time.perf_counter() - self.start, 1e-9)
        return {"seconds": dt, "text_bytes": self.bytes, "tokens": self.tokens, "documents": self.documents,
                "mb_per_s": self.bytes / 1e6 / dt, "tokens_per_s": self.tokens / dt}

    def line(self) -> str:
        s = self.stats()
        return (f"{self.documents:,} docs, {self.bytes / 1e6:,.1f} MB, {self.tokens:,} tokens in {s['seconds']:,.1f} s "
                f"({s['mb_per_s']:,.2f} MB/s, {s['tokens_per_s']:,.0f} tokens/s)")


# ---------------------------------------------------------------- prepare

LAST_RUN_STATS: dict = {}  # throughput of the last prepare in this process (read by benchmarks/)


def _output_config(cfg: PrepareConfig) -> dict:
    full = asdict(cfg)
    return {k: full[k] for k in OUTPUT_KEYS}


def _same_dataset(manifest: dict, cfg: PrepareConfig, sha: str, sources: list[Source]) -> bool:
    stored = manifest.get("config", {})
    described = [{k: v for k, v in s.items() if k in ("spec", "kind", "files")} for s in manifest.get("sources", [])]
    current = [s.describe() for s in sources]
    if len(current) == len(described):
        # A hub source that is a local dataset folder is described by its files' hashes since they are recorded;
        # an earlier manifest's, without them, is compared by its name, as it was then.
        current = [{k: v for k, v in c.items() if k != "files"} if c["kind"] == "hub" and "files" not in d else c
                   for d, c in zip(described, current)]
    if all("sha256" in f for s in described + current for f in s.get("files", [])):
        # local files by content: `./data/books/x.txt` is the same source as `data/books/x.txt`
        same = [source_identity(s) for s in described] == [source_identity(s) for s in current]
        return (same and {k: stored.get(k) for k in CONTENT_CONFIG_KEYS} == {
            k: v for k, v in _output_config(cfg).items() if k in CONTENT_CONFIG_KEYS}
            and manifest.get("tokenizer", {}).get("sha256") == sha)
    if not any("sha256" in f for s in described for f in s.get("files", [])):
        # A manifest from before content hashes records paths and sizes only. Whether a same-size file changed
        # cannot be told from it; calling it different would refuse (or, with --overwrite, redo) every such
        # dataset, unchanged ones included, so it is compared as it always was. Its next preparation adds hashes.
        current = [{**s, "files": [{k: v for k, v in f.items() if k != "sha256"} for f in s["files"]]}
                   if "files" in s else s for s in current]
    return ({k: stored.get(k) for k in OUTPUT_KEYS} == _output_config(cfg)
            and manifest.get("tokenizer", {}).get("sha256") == sha
            and described == current)


def holds_dataset(cfg: PrepareConfig) -> bool:
    """Whether `cfg.out_dir` holds, whole, the dataset `cfg` describes (what `prepare(cfg)` leaves there)."""
    return _holds(cfg, tokenizer_hash(load_tokenizer(cfg.tokenizer)), [resolve_source(s) for s in cfg.sources])


def wait_for_dataset(cfg: PrepareConfig, poll_s: float = 5.0) -> None:
    """Return once `cfg.out_dir` holds, whole, the dataset `cfg` describes: the other ranks of a study under torchrun
    while rank 0 prepares it. The sources are hashed and the tokenizer loaded once; the manifest (written last, by
    a rename) is read again only when it changes, so a long wait does not read the corpus every few seconds."""
    sha, sources = tokenizer_hash(load_tokenizer(cfg.tokenizer)), [resolve_source(s) for s in cfg.sources]
    manifest, seen = Path(cfg.out_dir) / MANIFEST, None
    while True:
        try:
            st = manifest.stat()
            now = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            now = None
        if now is not None and now != seen:
            seen = now
            if _holds(cfg, sha, sources):
                return
        time.sleep(poll_s)


def _holds(cfg: PrepareConfig, sha: str, sources: list[Source]) -> bool:
    out_dir = Path(cfg.out_dir)
    existing = _dataset_manifest(out_dir)
    return (existing is not None and _same_dataset(existing, cfg, sha, sources)
            and _damage(out_dir, existing) is None)


def prepare(cfg: PrepareConfig, redo: str = "--overwrite true") -> Path:
    """Tokenize `cfg.sources` into `cfg.out_dir`; return the data directory. A no-op when it already holds
    a complete dataset prepared from the same sources and config (unless `overwrite`; `redo` says how to set it)."""
    # From the checks of out_dir to its manifest no other prepare writes it: a second one deleted the first one's
    # temporary shards under it (`_remove_partial`), and a run that exited 0 left an empty folder.
    with output_lock(cfg.out_dir, "--out_dir"):
        return _prepare(cfg, redo)


def _prepare(cfg: PrepareConfig, redo: str) -> Path:
    out_dir = Path(cfg.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"output {str(out_dir)!r} is a file; pass a directory to --out_dir")
    tok = load_tokenizer(cfg.tokenizer)
    vocab_size, sha, eod = len(tok), tokenizer_hash(tok), eod_id(tok)
    dtype = token_dtype(vocab_size, cfg.dtype)
    sources = [resolve_source(s) for s in cfg.sources]
    check_distinct(sources)
    _check_out_dir_outside_sources(out_dir, sources)
    existing = _dataset_manifest(out_dir)

    if existing is not None and not cfg.overwrite:
        if not _same_dataset(existing, cfg, sha, sources):
            if _same_dataset(existing, cfg, legacy_tokenizer_hash(tok), sources):
                raise PrepareAgain(out_dir, f"holds this dataset, but it {HASHED_BEFORE_ADDED_TOKENS}",
                                   "pass --overwrite true to prepare it again")
            raise PrepareAgain(out_dir, "holds a dataset prepared from other sources or settings",
                               "pass --overwrite true or another --out_dir")
        damage = _damage(out_dir, existing)
        if damage:
            raise PrepareAgain(out_dir, f"holds this dataset but it is damaged ({damage})",
                               "pass --overwrite true to prepare it again")
        _remove_partial(out_dir)  # what a killed --overwrite run left beside it
        if cfg.progress:
            print(f"prepare: {out_dir} already holds this dataset; nothing to do ({redo} redoes it)",
                  file=sys.stderr)
        return out_dir
    _check_out_dir_is_ours(out_dir, dataset=existing is not None)
    # Here, where workers would start, not in the config: a study's config with 16 (data already prepared) still
    # exports and reports on a 4-CPU machine.
    cpus = usable_cpus()
    if cfg.num_workers > cpus:  # every worker starts at once: 100000 of them were killed for memory
        raise ValueError(f"num_workers {cfg.num_workers} is more than the {cpus} CPUs this process may use; "
                         f"set at most {cpus} (0 tokenizes in this process, on the tokenizer's own threads)")
    made = not out_dir.exists()  # a run that fails (a hub source that cannot be opened) removes what it made
    out_dir.mkdir(parents=True, exist_ok=True)
    # Before the first shard: a training that reads this folder refuses us now, not after a whole tokenization.
    with folder_lock(out_dir, exclusive=True, refusal=(
            f"--out_dir {str(out_dir)!r} holds the data a running sinktrain training reads; wait for it to end, "
            f"or prepare into another --out_dir")):
        return _write(cfg, out_dir, made, tok, sources, dtype, eod, sha, vocab_size)


def _write(cfg: PrepareConfig, out_dir: Path, made: bool, tok, sources: list[Source], dtype: str, eod: int,
           sha: str, vocab_size: int) -> Path:
    """Tokenize the sources into shards beside whatever dataset `out_dir` holds, then replace it with them."""
    _remove_partial(out_dir)

    writers = {split: ShardWriter(out_dir, split, dtype, cfg.shard_tokens) for split in ("train", "val")}
    per_source = [{"documents": 0, "tokens": 0, "text_bytes": 0} for _ in sources]
    done = Throughput()
    bar = progress(desc="prepare", unit="B", enabled=cfg.progress)  # bytes of text: tqdm shows MB and MB/s
    eod_array = np.array([eod], dtype=np.uint32)

    def documents() -> Iterator[tuple[int, str]]:
        count = 0
        for index, source in enumerate(sources):
            for text in iter_documents(source, text_field=cfg.text_field, split=cfg.split,
                                       txt_documents=cfg.txt_documents, hub_config=cfg.hub_config):
                yield index, text
                count += 1
                if cfg.max_documents is not None and count >= cfg.max_documents:
                    return  # before opening the next file: what lies past the limit is never read

    doc_index = 0
    try:
        # Every source is hashed before it is tokenized, and checked unchanged at the end: hashed afterwards, a file
        # edited during the run was recorded by its new content beside the tokens of its old one.
        for source in sources:
            source.check_utf8()
            source.describe()
        batches = _batches(documents(), cfg.batch_size, cfg.batch_bytes)
        tokenizer_json = tok.backend_tokenizer.to_str() if cfg.num_workers else ""  # what workers rebuild it from
        for batch, (ids, lengths) in tokenized_batches(batches, tok.backend_tokenizer, cfg.num_workers,
                                                       tokenizer_json):
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            batch_bytes = batch_tokens = 0
            for k, (source_index, text) in enumerate(batch):
                doc = np.concatenate([ids[offsets[k]:offsets[k + 1]], eod_array])
                val = writers["val"]
                to_val = is_validation(cfg.seed, doc_index, cfg.val_fraction) and (
                    cfg.val_documents is None or val.documents < cfg.val_documents)
                writers["val" if to_val else "train"].write_document(doc)
                nbytes = len(text.encode("utf-8"))
                stats = per_source[source_index]
                stats["documents"] += 1
                stats["tokens"] += len(doc)
                stats["text_bytes"] += nbytes
                batch_bytes += nbytes
                batch_tokens += len(doc)
                doc_index += 1
                if cfg.max_tokens is not None and writers["train"].tokens + val.tokens >= cfg.max_tokens:
                    break
            done.bytes, done.tokens, done.documents = done.bytes + batch_bytes, done.tokens + batch_tokens, doc_index
            bar.update(batch_bytes)
            bar.set_postfix(docs=f"{done.documents:,}", tokens=f"{done.tokens:,}", refresh=False)
            if cfg.max_tokens is not None and writers["train"].tokens + writers["val"].tokens >= cfg.max_tokens:
                break
        if doc_index == 0:
            raise ValueError("the sources produced no documents; check the paths and text_field")
        if (writers["val"].documents == 0 and cfg.val_fraction > 0 and cfg.val_documents != 0
                and writers["train"].documents >= 2):
            # A small corpus (a few whole books) where the coin picked nothing: the last document becomes
            # the validation split rather than leaving training without one.
            writers["val"].write_document(writers["train"].pop_last_document())
        changed = next((f for f in map(Source.changed_file, sources) if f is not None), None)
        if changed is not None:
            raise ValueError(f"source file {str(changed)!r} changed while it was prepared, so its tokens and its "
                             f"recorded sha256 may not agree; prepare again once nothing writes to it")
        # The tokenizer travels with the data (and from there into every run and export): later stages read it
        # from here instead of re-deriving it from a spec. Saved, like the manifest, before anything of an
        # earlier dataset is touched: a full disk here left --overwrite with neither.
        tok.save_pretrained(out_dir / _TOKENIZER_TMP)
        manifest = {
            "format": FORMAT,
            "tokenizer": {"spec": cfg.tokenizer or "gpt-neox-20b", "sha256": sha, "vocab_size": vocab_size,
                          "dir": TOKENIZER_DIR},
            "dtype": dtype,
            "eod_id": eod,
            "seed": cfg.seed,
            "sources": [{**s.describe(), **counts} for s, counts in zip(sources, per_source)],
            "splits": {split: {"files": list(w.names), "tokens": w.tokens, "documents": w.documents}
                       for split, w in writers.items()},
            "config": asdict(cfg),
        }
        _write_manifest_tmp(out_dir, manifest)
        _replace_previous(out_dir, writers)
    except BaseException:
        for w in writers.values():
            w.abort()
        (out_dir / _MANIFEST_TMP).unlink(missing_ok=True)
        _remove_tokenizer(out_dir, _TOKENIZER_TMP)
        if made:  # (output_lock removes the folders above it that it made for its lock file)
            with contextlib.suppress(OSError):  # not empty: something else wrote into it meanwhile
                out_dir.rmdir()
        raise
    finally:
        bar.close()
    LAST_RUN_STATS.clear()
    LAST_RUN_STATS.update(done.stats())
    if cfg.progress:
        print(f"prepare: done, {done.line()}; train {writers['train'].tokens:,} tokens / "
              f"{writers['train'].documents:,} docs, val {writers['val'].tokens:,} tokens / "
              f"{writers['val'].documents:,} docs -> {out_dir}", file=sys.stderr, flush=True)
    return out_dir
