"""The data directory's manifest: what `prepare` promises and what `TokenDataset` checks.

`manifest.json` is written last, after every shard has been renamed into place, so a directory with a
manifest is complete; a directory without one is not a dataset.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

FORMAT = "sinktrain-tokens/1"
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
TOKENIZER_DIR = "tokenizer"  # the tokenizer the data was prepared with (save_pretrained folder)
# The name of every shard prepare writes (`train-00000.bin`): nothing else is read as one, or deleted as one.
SHARD = re.compile(r"(train|val)-\d{5}\.bin")


def token_dtype(vocab_size: int, requested: str = "auto") -> str:
    """uint16 when every id fits (vocab <= 65536), else uint32; a forced uint16 that cannot hold the vocab is an
    error."""
    if requested not in ("auto", "uint16", "uint32"):
        raise ValueError(f"dtype must be auto, uint16 or uint32, not {requested!r}")
    fits16 = vocab_size <= np.iinfo(np.uint16).max + 1
    if requested == "uint16" and not fits16:
        raise ValueError(
            f"tokenizer vocabulary of {vocab_size} ids does not fit uint16 (max 65536); use dtype uint32 or auto"
        )
    if requested == "auto":
        return "uint16" if fits16 else "uint32"
    return requested


def read_manifest(data_dir: str | Path) -> dict:
    """Load and sanity-check `<data_dir>/manifest.json`."""
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not path.is_file():
        hint = ""
        if data_dir.is_dir():  # shards or a tokenizer without a manifest: a prepare that did not finish
            started = (data_dir / TOKENIZER_DIR).is_dir() or any(data_dir.glob("train-*.bin"))
            hint = (" (an interrupted prepare leaves none; run it again)" if started else
                    " (it is not a prepared data folder: `sinktrain data prepare --sources TEXTS` makes one)")
        raise FileNotFoundError(
            f"no {MANIFEST} in {str(data_dir)!r}{hint}; run `sinktrain data prepare --out_dir {data_dir}` first")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); prepare the data again") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        # Most often another program's manifest.json (a web app's): say what the folder is not, not just the key.
        raise ValueError(f"{str(data_dir)!r} is not a sinktrain dataset ({path} has format {found!r}, expected "
                         f"{FORMAT!r}); pass a folder written by `sinktrain data prepare`, or prepare the data again")
    problem = _shape_problem(manifest)
    if problem:
        raise ValueError(f"{path} is damaged ({problem}); prepare the data again")
    return manifest


def _shape_problem(manifest: dict) -> str | None:
    """What is missing from a manifest of the right format (a hand-edited or truncated one), else None: every
    reader (TokenDataset, `data info`, training, a rerun of prepare) may then index the keys below, and use their
    values as the types prepare wrote, without a KeyError, TypeError or AttributeError. A shard name is one that
    prepare writes: `/etc/passwd` or `../x` would be read (or, by a rerun, checked) outside the data folder."""
    tok = manifest.get("tokenizer")
    if not isinstance(tok, dict) or not {"spec", "sha256", "vocab_size"} <= tok.keys():
        return "no 'tokenizer' with spec, sha256 and vocab_size"
    if not (isinstance(tok["spec"], str) and isinstance(tok["sha256"], str) and _count(tok["vocab_size"])):
        return "'tokenizer' spec and sha256 are not strings, or vocab_size not a count"
    if "dir" in tok and tok["dir"] != TOKENIZER_DIR:  # the tokenizer is read from there: nowhere else
        return f"tokenizer dir {tok['dir']!r} is not {TOKENIZER_DIR!r}"
    for key in ("dtype", "eod_id", "seed"):
        if key not in manifest:
            return f"no {key!r}"
    if manifest["dtype"] not in ("uint16", "uint32"):
        return f"dtype {manifest['dtype']!r} is not uint16 or uint32"
    if not _count(manifest["eod_id"]) or not _is_int(manifest["seed"]):
        return f"eod_id {manifest['eod_id']!r} or seed {manifest['seed']!r} is not an integer"
    splits = manifest.get("splits")
    for split in SPLITS:
        info = splits.get(split) if isinstance(splits, dict) else None
        if not isinstance(info, dict) or not isinstance(info.get("files"), list) or not all(
                _count(info.get(k)) for k in ("tokens", "documents")):
            return f"no 'splits.{split}' with files, tokens and documents"
        bad = next((f for f in info["files"] if not (isinstance(f, str) and (m := SHARD.fullmatch(f))
                                                      and m.group(1) == split)), None)
        if bad is not None:
            return f"'splits.{split}.files' lists {bad!r}, not a shard name ({split}-NNNNN.bin)"
    sources = manifest.get("sources")
    if not isinstance(sources, list) or not all(
            isinstance(s, dict) and {"spec", "kind", "documents", "tokens"} <= s.keys() for s in sources):
        return "no 'sources' list of spec, kind, documents and tokens"
    for i, s in enumerate(sources):
        if not (isinstance(s["spec"], str) and isinstance(s["kind"], str) and _count(s["documents"])
                and _count(s["tokens"])):
            return f"'sources[{i}]' spec or kind is not a string, or documents or tokens not a count"
        if "files" in s and not (isinstance(s["files"], list) and all(
                isinstance(f, dict) and isinstance(f.get("path"), str) and _count(f.get("bytes"))
                and isinstance(f.get("sha256", ""), str) for f in s["files"])):
            return f"'sources[{i}].files' is not a list of path, bytes and sha256"
    if not isinstance(manifest.get("config", {}), dict):
        return f"'config' is {json.dumps(manifest['config'])[:40]}, not a mapping"
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # (JSON true is no integer)


def _count(value) -> bool:
    return _is_int(value) and value >= 0


def manifest_sha256(data_dir: str | Path) -> str:
    """sha256 of the manifest file: names the exact dataset (its shards' sizes, sources, tokenizer, config)."""
    return hashlib.sha256((Path(data_dir) / MANIFEST).read_bytes()).hexdigest()


# The manifest's config keys that change what is written (preparation.OUTPUT_KEYS without the sources' spelling,
# which `sources` below records by content); the others (out_dir, overwrite, workers, batching, progress) do not.
CONTENT_CONFIG_KEYS = ("tokenizer", "val_fraction", "val_documents", "seed", "text_field", "split", "hub_config",
                       "txt_documents", "max_documents", "max_tokens", "dtype", "shard_tokens")


def source_identity(source: dict) -> dict:
    """A manifest source by what it holds: local files by size and sha256 (however their paths were spelt),
    other sources (and files recorded before content hashes) by spec."""
    files = source.get("files")
    if files and all("sha256" in f for f in files):
        return {"kind": source.get("kind"), "files": [[f.get("bytes"), f["sha256"]] for f in files]}
    return {"kind": source.get("kind"), "spec": source.get("spec"), "files": files}


def dataset_identity(manifest: dict) -> dict:
    """What a manifest says about the tokens themselves: tokenizer, layout, splits, each source's content and
    the settings that shape the output. Two preparations with the same identity wrote the same shards."""
    config = manifest.get("config") or {}
    return {"format": manifest.get("format"), "tokenizer": (manifest.get("tokenizer") or {}).get("sha256"),
            "dtype": manifest.get("dtype"), "eod_id": manifest.get("eod_id"), "seed": manifest.get("seed"),
            "splits": manifest.get("splits"), "sources": [source_identity(s) for s in manifest.get("sources") or []],
            "config": {k: config.get(k) for k in CONTENT_CONFIG_KEYS}}


def dataset_identity_sha256(data_dir: str | Path) -> str:
    """sha256 of `dataset_identity`: equal for the same data prepared again (other workers, another out_dir
    spelling, `./` before a path), where manifest_sha256 differs."""
    manifest = json.loads((Path(data_dir) / MANIFEST).read_text())
    return hashlib.sha256(json.dumps(dataset_identity(manifest), sort_keys=True).encode()).hexdigest()


def data_tokenizer(data_dir: str | Path):
    """The tokenizer the data in `data_dir` was prepared with: its saved copy, or (data prepared before
    copies were kept) the spec the manifest records. Either is refused unless its hash is the manifest's: a
    tokenizer/ folder edited or swapped after the data was prepared reached training and export unnoticed."""
    manifest = read_manifest(data_dir)
    tok, problem = _checked_tokenizer(Path(data_dir), manifest)
    if problem:
        said = problem if problem == HASHED_BEFORE_ADDED_TOKENS else f"is damaged ({problem})"
        raise ValueError(f"data folder {str(data_dir)!r} {said}; prepare the data again (sinktrain data prepare ... "
                         f"--overwrite true)")
    return tok


# Data prepared before tokenizer_hash counted added tokens records the old hash: nothing may be wrong with it, but
# whether its tokenizer is the one it was tokenized with cannot be told any more.
HASHED_BEFORE_ADDED_TOKENS = ("was prepared by an older sinktrain whose tokenizer hash left out added tokens, so its "
                              "tokenizer cannot be checked")


def saved_tokenizer_problem(data_dir: str | Path, manifest: dict) -> str | None:
    """What is wrong with the tokenizer/ copy a dataset keeps (missing, not loading, or not the tokenizer whose
    hash the manifest records), else None. Data prepared before copies were kept has nothing to check here."""
    if "dir" not in manifest["tokenizer"]:
        return None
    return _checked_tokenizer(Path(data_dir), manifest)[1]


def _checked_tokenizer(data_dir: Path, manifest: dict):
    from sinktrain.data.tokenizer import legacy_tokenizer_hash, load_tokenizer, tokenizer_hash

    recorded = manifest["tokenizer"]
    if "dir" in recorded:  # written by a prepare that keeps a copy: that copy, and nothing else, is the tokenizer
        saved = data_dir / recorded["dir"]
        what = f"its {recorded['dir']}/ folder"
        if not saved.is_dir():
            return None, f"{what} is missing"
        try:
            tok = load_tokenizer(saved)
        except (ValueError, OSError) as e:
            return None, f"{what} does not load: {e}"
    else:  # prepared before copies were kept: the spec it names must still be that tokenizer
        what = f"the tokenizer its manifest names, {recorded['spec']!r},"
        tok = load_tokenizer(recorded["spec"])  # (its own errors say what is wrong: offline, missing file)
    sha = tokenizer_hash(tok)
    if sha != recorded["sha256"]:
        if legacy_tokenizer_hash(tok) == recorded["sha256"]:
            return None, HASHED_BEFORE_ADDED_TOKENS
        return None, (f"{what} is not the tokenizer its manifest records (sha256 {sha[:12]}…, not "
                      f"{recorded['sha256'][:12]}…)")
    return tok, None
