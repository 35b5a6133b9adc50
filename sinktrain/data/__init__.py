"""The data stage: tokenizer, `prepare` (sources -> packed token shards + manifest) and `TokenDataset`
(fixed-length samples in a seeded global order). See docs/data.md.

Importing this package is light (numpy only); transformers and datasets load on first use.
"""

from sinktrain.data.dataset import TokenDataset
from sinktrain.data.manifest import (FORMAT, TOKENIZER_DIR, data_tokenizer, dataset_identity_sha256,
                                     manifest_sha256, read_manifest, token_dtype)
from sinktrain.data.preparation import PrepareAgain, PrepareConfig, holds_dataset, prepare, wait_for_dataset
from sinktrain.data.sources import resolve_source
from sinktrain.data.tokenizer import DEFAULT_TOKENIZER, eod_id, load_tokenizer, tokenizer_hash

__all__ = [
    "DEFAULT_TOKENIZER",
    "FORMAT",
    "PrepareAgain",
    "PrepareConfig",
    "TOKENIZER_DIR",
    "TokenDataset",
    "check_long_text_source",
    "data_tokenizer",
    "eod_id",
    "holds_dataset",
    "load_long_text",
    "load_tokenizer",
    "manifest_sha256",
    "dataset_identity_sha256",
    "prepare",
    "read_manifest",
    "resolve_source",
    "token_dtype",
    "tokenizer_hash",
    "wait_for_dataset",
]


def __getattr__(name):
    # Long-text evaluation sources live in longtext.py (written separately); imported on demand so that
    # this package never fails to import because of it.
    if name in ("load_long_text", "check_long_text_source"):
        from sinktrain.data import longtext

        return getattr(longtext, name)
    raise AttributeError(f"module 'sinktrain.data' has no attribute {name!r}")
