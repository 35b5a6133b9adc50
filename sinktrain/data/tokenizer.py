"""Tokenizer loading: the bundled GPT-NeoX-20B / Pythia tokenizer by default, any tokenizer.json path or
hub name otherwise. Always a `transformers` fast tokenizer backed by the `tokenizers` library.

The bundled tokenizer is package data (`sinktrain/data/bundled/`), found with `importlib.resources`, so an
installed wheel has it too; nothing is looked up relative to a source checkout.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers is imported on first use: token workers and `sinktrain --help` stay light
    from transformers import PreTrainedTokenizerFast

# Wheels install unpacked, so this is a real file; load_tokenizer still goes through as_file (zip-safe).
BUNDLED_TOKENIZER = files("sinktrain.data").joinpath("bundled", "gpt-neox-20b.json")
DEFAULT_TOKENIZER = Path(str(BUNDLED_TOKENIZER))
DEFAULT_TOKENIZER_NAMES = ("gpt-neox-20b", "pythia", "default")
EOD_TOKEN = "<|endoftext|>"


def load_tokenizer(spec: str | Path | None = None) -> PreTrainedTokenizerFast:
    """`spec`: None (bundled GPT-NeoX-20B), a tokenizer.json file, a folder saved by transformers, or a hub name."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if spec is None or str(spec) in DEFAULT_TOKENIZER_NAMES:
        with as_file(BUNDLED_TOKENIZER) as path:
            return _with_eos(PreTrainedTokenizerFast(tokenizer_file=str(path)))
    path = Path(spec)
    if not path.exists() and looks_like_local_path(str(spec)):
        raise FileNotFoundError(
            f"tokenizer {str(spec)!r} does not exist; pass a tokenizer.json path, a folder, or a hub name")
    try:
        if path.is_file():
            tok = PreTrainedTokenizerFast(tokenizer_file=str(path))
        else:  # a folder saved by transformers, or a hub name (needs internet or the HF cache)
            # trust_remote_code=False, said explicitly: left unset, transformers asks on stdin whether to run the
            # Python file a folder's tokenizer_config.json names (auto_map), and runs it on "y".
            tok = AutoTokenizer.from_pretrained(str(spec), trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - garbage tokenizer.json, a folder without one, an unknown hub name
        what = "file" if path.is_file() else "folder" if path.is_dir() else "hub name"
        if refused_custom_code(e):  # transformers' advice (trust_remote_code=True) is what sinktrain never does
            raise ValueError(custom_tokenizer_refusal(f"tokenizer {what} {str(spec)!r}")) from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"tokenizer {what} {str(spec)!r} could not be loaded ({type(e).__name__}: {first}); "
                         f"pass a tokenizer.json, a folder saved by transformers, or a hub name") from e
    return _with_eos(tok)


def refused_custom_code(e: Exception) -> bool:
    """Whether a transformers load failed because the tokenizer needs code shipped with it (auto_map) and
    trust_remote_code is False. Other failures of such a folder (a garbage tokenizer.json under a class
    transformers defines) keep their own message."""
    return isinstance(e, ValueError) and "trust_remote_code" in str(e)


def custom_tokenizer_refusal(what: str) -> str:
    return (f"{what} maps its tokenizer to code shipped with it (auto_map in tokenizer_config.json), and "
            f"sinktrain never runs a tokenizer's own code; use a tokenizer.json file, or a tokenizer whose class "
            f"transformers defines")


def _with_eos(tok: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    if tok.eos_token is None and has_token(tok, EOD_TOKEN):
        tok.eos_token = EOD_TOKEN
    return tok


def has_token(tok, token: str) -> bool:
    """Whether `token` is in the tokenizer's vocabulary (added tokens too). Asks the Rust tokenizer where there is
    one: `token in tok.get_vocab()` builds the whole vocabulary as a dict, 22 ms for GPT-NeoX's 50k entries."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:  # a tokenizer without a Rust backend (sentencepiece's)
        return token in tok.get_vocab()
    return backend.token_to_id(token) is not None


def looks_like_local_path(spec: str) -> bool:
    """A name that cannot be a hub repo id, or whose first folder exists here, is a local path: a missing one is
    an error at once rather than a minute of hub retries."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if spec.startswith((".", "/", "~")) or spec.endswith(".json") or "\\" in spec:
        return True
    if "/" in spec and Path(spec.split("/", 1)[0]).is_dir():
        return True
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return True
    return False


# The names export registers for a token-sink model's sinks (export/tokenizer_files.py sink_token_names).
SINK_TOKEN = re.compile(r"<\|sink_\d+\|>")
# sha256 of the serialized tokenizer -> (tokenizer_hash, legacy_tokenizer_hash): the canonical form is slow
_HASHES: dict[str, tuple[str, str]] = {}
_LEGACY: dict[str, str] = {}  # tokenizer_hash -> legacy_tokenizer_hash of the tokenizers hashed in this process


def tokenizer_hash(tok: PreTrainedTokenizerFast) -> str:
    """sha256 of the tokenizer's canonical JSON (vocab, merges, normalisers, added tokens): same hash, same token
    ids. The sink tokens export registers (`<|sink_N|>`) are left out, so an exported model's tokenizer hashes as
    the one it was trained with; any other added token counts (one more special token reads text into other ids)."""
    return _hashes(tok)[0]


def legacy_tokenizer_hash(tok: PreTrainedTokenizerFast) -> str:
    """The hash sinktrain recorded before added tokens counted (it left them all out): what the manifests of data
    prepared then hold, recognised to say why such data is refused rather than only that its hash differs."""
    return _hashes(tok)[1]


def hashed_before_added_tokens(sha: str, recorded: str) -> bool:
    """Whether `recorded` (a manifest's) is the legacy hash of the tokenizer whose tokenizer_hash is `sha`."""
    return _LEGACY.get(sha) == recorded


def _hashes(tok: PreTrainedTokenizerFast) -> tuple[str, str]:
    raw = tok.backend_tokenizer.to_str()
    key = hashlib.sha256(raw.encode()).hexdigest()
    if key not in _HASHES:
        data = json.loads(raw)
        added = data.pop("added_tokens", None) or []
        legacy = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        data["added_tokens"] = [t for t in added if not SINK_TOKEN.fullmatch(str(t.get("content", "")))]
        _HASHES[key] = (hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(), legacy)
        _LEGACY[_HASHES[key][0]] = legacy
    return _HASHES[key]


def eod_id(tok: PreTrainedTokenizerFast) -> int:
    """Id of the end-of-document token put between documents."""
    if tok.eos_token_id is None:
        raise ValueError("tokenizer has no end-of-document (eos) token; use a tokenizer that defines one")
    return int(tok.eos_token_id)
