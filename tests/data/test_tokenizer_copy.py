"""The tokenizer/ a dataset keeps is the tokenizer its ids came from: an edited or swapped copy is refused
wherever it is read (training, export, a rerun of prepare), not used with ids it did not make."""

import json
import shutil

import pytest

from sinktrain.data import (DEFAULT_TOKENIZER, TokenDataset, data_tokenizer, load_tokenizer, read_manifest,
                            tokenizer_hash)
from sinktrain.data.tokenizer import legacy_tokenizer_hash

from data_helpers import cli, run_prepare, snapshot

TEXT = "A short document for the dataset. " * 20


def swap_ids(tokenizer_json, a=500, b=501) -> str:
    """Exchange two ids of a BPE vocabulary: a tokenizer that loads and looks the same, and reads other ids.
    Returns the token that had id `a`."""
    data = json.loads(tokenizer_json.read_text())
    vocab = data["model"]["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    vocab[by_id[a]], vocab[by_id[b]] = b, a
    tokenizer_json.write_text(json.dumps(data))
    return by_id[a]


@pytest.fixture
def data(tmp_path):
    (tmp_path / "doc.txt").write_text(TEXT)
    return run_prepare([tmp_path / "doc.txt"], tmp_path / "out", val_fraction=0)


def test_a_tokenizer_copy_that_is_not_the_manifests_is_refused_where_it_is_read(data):
    swap_ids(data / "tokenizer" / "tokenizer.json")
    with pytest.raises(ValueError) as caught:
        data_tokenizer(data)  # what training copies into its run, and export reads for runs without a copy
    sha = read_manifest(data)["tokenizer"]["sha256"]
    assert str(caught.value).startswith(
        f"data folder {str(data)!r} is damaged (its tokenizer/ folder is not the tokenizer its manifest records "
        f"(sha256 ")
    assert str(caught.value).endswith(f", not {sha[:12]}…)); prepare the data again (sinktrain data prepare ... "
                                      f"--overwrite true)")


def test_a_missing_tokenizer_copy_is_refused(data):
    shutil.rmtree(data / "tokenizer")
    with pytest.raises(ValueError, match=r"is damaged \(its tokenizer/ folder is missing\); prepare the data again"):
        data_tokenizer(data)


def test_a_rerun_onto_a_swapped_tokenizer_copy_says_damaged_and_overwrite_repairs_it(data, capsys):
    token = swap_ids(data / "tokenizer" / "tokenizer.json")
    before = snapshot(data)
    argv = ["data", "prepare", "--sources", str(data.parent / "doc.txt"), "--out_dir", str(data), "--val_fraction",
            "0", "--progress", "false"]
    code, err = cli(capsys, *argv)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert (f"{str(data)!r} holds this dataset but it is damaged (its tokenizer/ folder is not the tokenizer its "
            f"manifest records") in err and err.endswith("pass --overwrite true to prepare it again")
    assert snapshot(data) == before  # nothing written, the folder as the user left it
    assert cli(capsys, *argv, "--overwrite", "true")[0] == 0
    assert data_tokenizer(data).convert_tokens_to_ids(token) == 500


def test_a_tokenizer_that_gained_a_special_token_is_not_the_same_dataset(tmp_path, capsys):
    from tokenizers import Tokenizer

    (tmp_path / "doc.txt").write_text(TEXT + "<|im_start|>")
    tok_file = tmp_path / "tok.json"
    tok_file.write_bytes(DEFAULT_TOKENIZER.read_bytes())
    argv = ["data", "prepare", "--sources", str(tmp_path / "doc.txt"), "--out_dir", str(tmp_path / "out"),
            "--tokenizer", str(tok_file), "--val_fraction", "0", "--progress", "false"]
    assert cli(capsys, *argv)[0] == 0
    before = snapshot(tmp_path / "out")
    raw = Tokenizer.from_file(str(tok_file))
    raw.add_special_tokens(["<|im_start|>"])  # the text's "<|im_start|>" is now one id, not five
    raw.save(str(tok_file))
    code, err = cli(capsys, *argv)
    assert code == 2 and err.endswith("holds a dataset prepared from other sources or settings; pass --overwrite "
                                      "true or another --out_dir"), err
    assert snapshot(tmp_path / "out") == before


def test_data_prepared_before_added_tokens_counted_is_refused_with_the_reason(data, capsys):
    """Its manifest holds the old hash: refused (it cannot be checked), and saying why, not 'another tokenizer'."""
    manifest = read_manifest(data)
    tok = load_tokenizer()
    manifest["tokenizer"]["sha256"] = legacy_tokenizer_hash(tok)
    (data / "manifest.json").write_text(json.dumps(manifest))
    reason = "was prepared by an older sinktrain whose tokenizer hash left out added tokens, so its tokenizer cannot "\
             "be checked"
    with pytest.raises(ValueError) as caught:
        data_tokenizer(data)
    assert str(caught.value) == (f"data folder {str(data)!r} {reason}; prepare the data again (sinktrain data "
                                 f"prepare ... --overwrite true)")
    with pytest.raises(ValueError) as caught:
        TokenDataset(data, sample_len=8).check_compatible(50277, tokenizer_hash(tok))
    assert str(caught.value) == f"{data} {reason}; prepare the data again (sinktrain data prepare ... --overwrite true)"
    before = snapshot(data)
    argv = ["data", "prepare", "--sources", str(data.parent / "doc.txt"), "--out_dir", str(data), "--val_fraction",
            "0", "--progress", "false"]
    code, err = cli(capsys, *argv)
    assert code == 2 and err == (f"sinktrain data prepare: error: {str(data)!r} holds this dataset, but it {reason}; "
                                 f"pass --overwrite true to prepare it again")
    assert snapshot(data) == before
    assert cli(capsys, *argv, "--overwrite", "true")[0] == 0
    assert read_manifest(data)["tokenizer"]["sha256"] == tokenizer_hash(data_tokenizer(data))
