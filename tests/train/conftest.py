"""Fixtures for the training tests: one tiny prepared dataset per session.

Distributed scenarios run as subprocesses (`python -m torch.distributed.run`, see train_helpers.py): a
multi-device Trainer inside pytest would re-execute pytest itself as the other ranks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from train_helpers import BOOKS


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """~200k tokens of two public-domain books, paragraphs as documents, 5% held out."""
    from sinktrain.data import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("train-data") / "books"
    return prepare(PrepareConfig(
        sources=[str(BOOKS / "austen_persuasion.txt"), str(BOOKS / "bierce_devils_dictionary.txt")],
        out_dir=str(out), txt_documents="paragraphs", val_fraction=0.05, seed=1234, progress=False,
    ))

