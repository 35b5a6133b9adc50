"""The output folder is the user's unless prepare wrote it; sources are what they name and are checked before any
tokenizing; a rerun is a no-op only for the same content and whole shards."""

import json
import re

import numpy as np
import pytest
import yaml

import sinktrain.data.preparation as prepare_module
import sinktrain.util.atomic as atomic_module
from sinktrain.data import read_manifest

from data_helpers import cli, count_tokens, run_prepare, snapshot

TEXT = "A short document for the dataset. " * 20


@pytest.fixture
def doc(tmp_path):
    (tmp_path / "doc.txt").write_text(TEXT)
    return tmp_path / "doc.txt"


def _prepare_cli(capsys, sources, out_dir, *extra) -> tuple[int, str]:
    return cli(capsys, "data", "prepare", "--sources", json.dumps([str(s) for s in sources]),
               "--out_dir", str(out_dir), "--progress", "false", *extra)


def _one_line_error(code, err, *needles):
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


# ---------------------------------------------------------------- 1, 2: the user's folders and files


def test_a_tokenizer_folder_shipping_its_own_code_is_refused_and_never_run(tmp_path, doc, capsys, monkeypatch):
    """transformers asked on stdin whether to run the Python file the folder's tokenizer_config.json names; a `y`
    ran it, and prepare copied the file into the dataset's tokenizer/, where every run and export took it along."""
    from sinktrain.data.tokenizer import DEFAULT_TOKENIZER

    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_bytes(DEFAULT_TOKENIZER.read_bytes())
    (tok / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "MyTokenizer", "auto_map": {"AutoTokenizer": [None, "my_tokenizer.MyTokenizer"]}}))
    marker = tmp_path / "code-ran"
    (tok / "my_tokenizer.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                         "from transformers import PreTrainedTokenizerFast\n"
                                         "class MyTokenizer(PreTrainedTokenizerFast):\n    pass\n")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("y\n"))  # what a user at the prompt could type
    code, err = _prepare_cli(capsys, [doc], tmp_path / "out", "--tokenizer", str(tok))
    _one_line_error(code, err, f"tokenizer folder {str(tok)!r} maps its tokenizer to code shipped with it "
                               f"(auto_map in tokenizer_config.json), and sinktrain never runs a tokenizer's own code")
    # A class transformers defines loads as that class (no code runs): its own failure keeps its own message.
    (tok / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "auto_map": {"AutoTokenizer": [None, "my_tokenizer.X"]}}))
    (tok / "tokenizer.json").write_text("{garbage")
    code, err = _prepare_cli(capsys, [doc], tmp_path / "out", "--tokenizer", str(tok))
    _one_line_error(code, err, f"tokenizer folder {str(tok)!r} could not be loaded")
    assert not marker.exists()
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_users_tokenizer_folder_is_refused_and_kept(tmp_path, doc, capsys):
    out = tmp_path / "out"
    (out / "tokenizer").mkdir(parents=True)
    (out / "tokenizer" / "tokenizer.json").write_text("my own tokenizer")
    (out / "tokenizer" / "NOTES.md").write_text("my notes")  # not a file save_pretrained writes
    before = snapshot(out)
    for extra in ((), ("--overwrite", "true")):
        code, err = _prepare_cli(capsys, [doc], out, *extra)
        _one_line_error(code, err, "not a sinktrain dataset", "'tokenizer'", "pass an empty or new --out_dir")
        assert snapshot(out) == before


def test_a_tokenizer_symlink_is_never_written_through(tmp_path, doc, capsys):
    target = tmp_path / "mytok"
    target.mkdir()
    (target / "tokenizer.json").write_text("the real one")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tokenizer").symlink_to(target)
    code, err = _prepare_cli(capsys, [doc], out)
    _one_line_error(code, err, "not a sinktrain dataset", "'tokenizer'")
    assert snapshot(target) == {target.relative_to(target) / "tokenizer.json": b"the real one"}
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer"] and (out / "tokenizer").is_symlink()

    # In a real dataset the link is the dataset's entry: --overwrite replaces the link, never what it points to.
    data = run_prepare([doc], tmp_path / "data", val_fraction=0)
    import shutil

    shutil.rmtree(data / "tokenizer")
    (data / "tokenizer").symlink_to(target)
    run_prepare([doc], data, val_fraction=0, seed=7, overwrite=True)
    assert (target / "tokenizer.json").read_text() == "the real one" and len(list(target.iterdir())) == 1
    assert (data / "tokenizer").is_dir() and not (data / "tokenizer").is_symlink()
    assert (data / "tokenizer" / "tokenizer.json").stat().st_size > 1000


def test_what_a_killed_prepare_leaves_is_taken_over(tmp_path, doc):
    out = run_prepare([doc], tmp_path / "out", val_fraction=0)
    expected = (out / "train-00000.bin").read_bytes()
    (out / "manifest.json").unlink()  # killed after the tokenizer was saved, before the manifest
    (out / "val-00003.bin.tmp").write_bytes(b"partial")
    (out / "tokenizer.tmp").mkdir()  # killed while the new tokenizer was saved
    (out / "tokenizer.tmp" / "tokenizer.json").write_text('{"trunc')
    run_prepare([doc], out, val_fraction=0)
    assert (out / "train-00000.bin").read_bytes() == expected and read_manifest(out)["seed"] == 1234
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "tokenizer", "train-00000.bin"]


def test_a_foreign_manifest_is_not_a_dataset_even_with_overwrite(tmp_path, doc, capsys):
    web = tmp_path / "webapp"
    (web / "tokenizer").mkdir(parents=True)
    (web / "manifest.json").write_text(json.dumps({"name": "My App", "start_url": "/"}))
    (web / "tokenizer" / "tokenizer.json").write_text("{}")
    (web / "index.html").write_text("<html>")
    before = snapshot(web)
    for extra in ((), ("--overwrite", "true")):
        code, err = _prepare_cli(capsys, [doc], web, *extra)
        _one_line_error(code, err, "not a sinktrain dataset", "pass an empty or new --out_dir")
        assert snapshot(web) == before
    code, err = cli(capsys, "data", "info", str(web))
    _one_line_error(code, err, f"{str(web)!r} is not a sinktrain dataset", "has format None")


def test_data_info_on_a_manifest_without_a_key_is_one_line(tmp_path, doc, capsys):
    out = run_prepare([doc], tmp_path / "out", val_fraction=0)
    manifest = read_manifest(out)
    del manifest["tokenizer"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, err = cli(capsys, "data", "info", str(out))
    _one_line_error(code, err, "manifest.json is damaged (no 'tokenizer'", "prepare the data again")


def _set(path: str, value):
    """An edit of a manifest: `value` at `path` (keys and list indices, dotted)."""
    def edit(manifest):
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = manifest
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


@pytest.mark.parametrize("edit, problem", [
    (_set("config", None), "'config' is null, not a mapping"),
    (_set("config", []), "'config' is [], not a mapping"),
    (_set("splits.train.files", [5]), "'splits.train.files' lists 5, not a shard name (train-NNNNN.bin)"),
    (_set("splits.train.files", ["/etc/passwd"]), "'splits.train.files' lists '/etc/passwd', not a shard name"),
    (_set("splits.val.files", ["../x"]), "'splits.val.files' lists '../x', not a shard name (val-NNNNN.bin)"),
    (_set("splits.val.files", ["train-00000.bin"]), "'splits.val.files' lists 'train-00000.bin', not a shard"),
    (_set("splits.train.tokens", "5"), "no 'splits.train' with files, tokens and documents"),
    (_set("sources.0.files", None), "'sources[0].files' is not a list of path, bytes and sha256"),
    (_set("sources.0.files", [1]), "'sources[0].files' is not a list of path, bytes and sha256"),
    (_set("sources.0.documents", None), "'sources[0]' spec or kind is not a string, or documents or tokens not"),
    (_set("tokenizer.dir", "../elsewhere"), "tokenizer dir '../elsewhere' is not 'tokenizer'"),
    (_set("tokenizer.sha256", 5), "'tokenizer' spec and sha256 are not strings, or vocab_size not a count"),
    (_set("eod_id", True), "eod_id True or seed 1234 is not an integer"),
], ids=["config-null", "config-list", "file-int", "file-abs", "file-up", "file-other-split", "tokens-str",
        "source-files-null", "source-files-int", "source-documents", "tokenizer-dir", "tokenizer-sha", "eod-bool"])
def test_a_hand_edited_manifest_is_one_line_everywhere(tmp_path, doc, capsys, edit, problem):
    """`config: null` was an AttributeError in a rerun of prepare, `files: [5]` a TypeError, and `files:
    ["/etc/passwd"]` a shard read from outside the data folder."""
    from sinktrain.data import TokenDataset, data_tokenizer

    out = run_prepare([doc], tmp_path / "out", val_fraction=0)
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(out)
    code, err = cli(capsys, "data", "info", str(out))
    _one_line_error(code, err, f"{out / 'manifest.json'} is damaged ({problem}", "; prepare the data again")
    for read in (lambda: TokenDataset(out, sample_len=8), lambda: data_tokenizer(out)):
        with pytest.raises(ValueError, match=re.escape(f"is damaged ({problem}")):
            read()
    code, err = _prepare_cli(capsys, [doc], out, "--val_fraction", "0")  # a rerun reads it too
    _one_line_error(code, err, f"output folder {str(out)!r} is not empty and not a sinktrain dataset")
    assert snapshot(out) == before


# ---------------------------------------------------------------- 3, 4, 7, 8: sources


def test_a_file_name_with_glob_characters_is_that_file_alone(tmp_path, raw_tok):
    (tmp_path / "notes[1].txt").write_text("the bracketed file")
    (tmp_path / "notes1.txt").write_text("a different file that the pattern notes[1].txt matches")
    m = read_manifest(run_prepare([tmp_path / "notes[1].txt"], tmp_path / "out", val_fraction=0))
    expected = raw_tok.encode("the bracketed file", add_special_tokens=False).ids + [0]
    assert np.fromfile(tmp_path / "out" / "train-00000.bin", dtype=np.uint16).tolist() == expected
    assert m["splits"]["train"]["documents"] == 1


def test_an_out_dir_that_a_source_would_read_back_is_refused(tmp_path, doc, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "book.jsonl").write_text(json.dumps({"text": TEXT}) + "\n")
    for source, out in [(corpus, corpus / "prepared"), (str(tmp_path / "**" / "*.jsonl"), tmp_path / "a" / "out"),
                        (str(tmp_path / "**" / "*.json"), tmp_path / "b" / "out")]:
        code, err = _prepare_cli(capsys, [source], out)
        jsonl = str(source).endswith(".jsonl")
        if jsonl:  # the pattern matches nothing prepare writes: allowed
            assert code == 0, err
            continue
        _one_line_error(code, err, f"--out_dir {str(out)!r} is inside source {str(source)!r}; put it elsewhere")
        assert not out.exists()


def test_a_glob_that_reads_the_output_back_through_a_link_is_refused(tmp_path, doc, capsys):
    """src/link -> the output folder: on the second prepare the pattern matched the manifest through the link and
    tokenized it as training data (refused late, with a misleading missing-field error)."""
    src, out = tmp_path / "src", tmp_path / "d"
    src.mkdir()
    (src / "a.jsonl").write_text(json.dumps({"text": TEXT}) + "\n")
    (src / "link").symlink_to(out, target_is_directory=True)
    pattern = str(src / "**" / "*.json*")
    code, err = _prepare_cli(capsys, [pattern], out, "--val_fraction", "0")
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, err = _prepare_cli(capsys, [pattern], out, "--val_fraction", "0", "--overwrite", "true")
    _one_line_error(code, err, f"--out_dir {str(out)!r} is inside source {pattern!r}; put it elsewhere")
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_an_empty_file_late_in_the_list_fails_before_anything_is_tokenized(tmp_path, doc, capsys, monkeypatch):
    (tmp_path / "zz_empty.txt").write_bytes(b"")
    monkeypatch.setattr(prepare_module, "iter_documents", lambda *a, **k: pytest.fail("tokenizing started"))
    code, err = _prepare_cli(capsys, [doc, tmp_path / "zz_empty.txt"], tmp_path / "out")
    _one_line_error(code, err, f"file {str(tmp_path / 'zz_empty.txt')!r} is empty (0 bytes)",
                    "remove it from the sources")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("specs, second, spelt", [
    (["dir", "dir/a.txt", "./dir/a.txt"], "dir/a.txt", None),
    (["dir/b.txt", "./dir/b.txt"], "./dir/b.txt", "dir/b.txt"),
    (["dir/a.txt", "link.txt"], "link.txt", "link.txt"),
], ids=["folder-and-file", "two-spellings", "link"])
def test_a_file_the_sources_name_twice_is_refused(tmp_path, capsys, monkeypatch, specs, second, spelt):
    """Tokenized once per listing: its documents twice in the data, and possibly in both train and val."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_text(TEXT)
    (tmp_path / "dir" / "b.txt").write_text(TEXT.upper())
    (tmp_path / "link.txt").symlink_to(tmp_path / "dir" / "a.txt")
    code, err = _prepare_cli(capsys, specs, "out")
    first = "dir/b.txt" if spelt == "dir/b.txt" else "dir/a.txt"
    also = f" (as {spelt!r})" if spelt and spelt != first else ""
    _one_line_error(code, err, f"file {first!r} is in the sources twice, through {specs[0]!r} and through "
                               f"{second!r}{also}; list each file once")
    assert not (tmp_path / "out").exists()


def test_a_mistyped_local_path_is_not_a_hub_name(tmp_path, capsys, monkeypatch):
    import datasets

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("asked the hub"))
    code, err = _prepare_cli(capsys, ["data/book"], tmp_path / "out")
    _one_line_error(code, err, "source 'data/book' does not exist; check the path")


def test_a_zst_source_round_trips(tmp_path, raw_tok):
    zstandard = pytest.importorskip("zstandard")
    (tmp_path / "book.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(TEXT.encode()))
    m = read_manifest(run_prepare([tmp_path / "book.txt.zst"], tmp_path / "out", val_fraction=0))
    assert m["splits"]["train"]["tokens"] == count_tokens(raw_tok, [TEXT])
    expected = raw_tok.encode(TEXT, add_special_tokens=False).ids + [0]
    assert np.fromfile(tmp_path / "out" / "train-00000.bin", dtype=np.uint16).tolist() == expected


def test_a_zst_source_without_zstandard_names_the_package(tmp_path, doc, capsys, monkeypatch):
    (tmp_path / "book.txt.zst").write_bytes(b"\x28\xb5\x2f\xfd not read")
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)  # import zstandard now raises ImportError
    code, err = _prepare_cli(capsys, [doc, tmp_path / "book.txt.zst"], tmp_path / "out")
    _one_line_error(code, err, "book.txt.zst", "pip install zstandard")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 5, 9, content hashes: reruns


def test_a_manifest_temp_file_left_by_a_kill_is_cleaned_up(tmp_path, doc, monkeypatch):
    # The temporary name is whatever util/atomic.py uses: taken from its own rename, not spelled here.
    renamed = []
    real_replace = atomic_module.os.replace
    monkeypatch.setattr(atomic_module.os, "replace", lambda src, dst: (renamed.append(src), real_replace(src, dst)))
    out = run_prepare([doc], tmp_path / "out", val_fraction=0)
    monkeypatch.undo()
    leftover = out / renamed[-1].name
    assert not leftover.exists()
    (out / "manifest.json").rename(leftover)  # killed just before the rename
    (out / "train-00000.bin.tmp").write_bytes(b"stale")
    run_prepare([doc], out, val_fraction=0)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "tokenizer", "train-00000.bin"]

    # The same with the manifest in place: the no-op rerun removes them too.
    leftover.write_text("{")
    (out / "val-00000.bin.tmp").write_bytes(b"stale")
    run_prepare([doc], out, val_fraction=0)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "tokenizer", "train-00000.bin"]


@pytest.mark.parametrize("damage", ["missing", "short"])
def test_a_rerun_onto_damaged_shards_says_so(tmp_path, doc, capsys, damage):
    out = run_prepare([doc], tmp_path / "out", val_fraction=0)
    shard = out / "train-00000.bin"
    if damage == "missing":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:-2])
    code, err = _prepare_cli(capsys, [doc], out, "--val_fraction", "0")
    _one_line_error(code, err, "holds this dataset but it is damaged", "pass --overwrite true")
    assert ("train-00000.bin is missing" if damage == "missing" else "not the") in err
    assert _prepare_cli(capsys, [doc], out, "--val_fraction", "0", "--overwrite", "true")[0] == 0
    assert shard.stat().st_size == 2 * read_manifest(out)["splits"]["train"]["tokens"]


def test_an_edited_source_of_the_same_size_is_not_the_same_dataset(tmp_path, doc, capsys):
    out = run_prepare([doc], tmp_path / "out", val_fraction=0)
    doc.write_text(TEXT.replace("short", "SHORT"))  # same size, other content
    with pytest.raises(FileExistsError, match="other sources or settings"):
        run_prepare([doc], out, val_fraction=0)
    run_prepare([doc], out, val_fraction=0, overwrite=True)
    assert "SHORT" in load_first_document(out)

    # A manifest from before content hashes cannot tell: paths and sizes decide, as they did then.
    manifest = read_manifest(out)
    for source in manifest["sources"]:
        for f in source["files"]:
            del f["sha256"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(out)
    capsys.readouterr()
    run_prepare([doc], out, val_fraction=0, progress=True)
    assert "nothing to do" in capsys.readouterr().err and snapshot(out) == before


def test_a_source_edited_while_it_is_prepared_is_refused_and_the_earlier_dataset_kept(tmp_path, doc, capsys,
                                                                                       monkeypatch):
    """Sources were hashed after they were tokenized: a file edited during the run was recorded by its new sha256
    beside the tokens of its old text, and a later prepare called that dataset current."""
    out = run_prepare([doc], tmp_path / "out", val_fraction=0)
    before = snapshot(out)
    real = prepare_module.iter_documents

    def edited_once_read(source, **kwargs):
        yield from real(source, **kwargs)
        doc.write_text(TEXT + "An afterthought.")  # the user saves the file while prepare runs

    monkeypatch.setattr(prepare_module, "iter_documents", edited_once_read)
    code, err = _prepare_cli(capsys, [doc], out, "--val_fraction", "0", "--seed", "5", "--overwrite", "true")
    _one_line_error(code, err, f"source file {str(doc)!r} changed while it was prepared, so its tokens and its "
                               f"recorded sha256 may not agree; prepare again once nothing writes to it")
    assert snapshot(out) == before and not list(out.glob("*.tmp*"))  # the earlier dataset, whole, and nothing else
    code, err = _prepare_cli(capsys, [doc], tmp_path / "new", "--val_fraction", "0")  # nothing there before
    _one_line_error(code, err, "changed while it was prepared")
    assert not (tmp_path / "new").exists()


def load_first_document(data_dir) -> str:
    from sinktrain.data import data_tokenizer

    ids = np.fromfile(data_dir / "train-00000.bin", dtype=np.uint16)
    return data_tokenizer(data_dir).decode(ids[:-1].tolist())


# ---------------------------------------------------------------- 6, 10: config and CLI


@pytest.mark.parametrize("recipe, message", [
    ("sources:\nout_dir: OUT\n", "no sources given; pass --sources"),
    ("sources: DOC\nout_dir: OUT\ntext_field: null\n", "text_field: expected str, got null"),
    ("sources: DOC\nout_dir: OUT\nset: seed=7\n", "'set' is a command-line option, not a key"),
    ("sources: 5\nout_dir: OUT\n", "sources: expected list[str] or str or null, got '5'"),
])
def test_bad_yaml_configs_are_one_line(tmp_path, doc, capsys, recipe, message):
    (tmp_path / "r.yaml").write_text(recipe.replace("DOC", str(doc)).replace("OUT", str(tmp_path / "out")))
    code, err = cli(capsys, "data", "prepare", "--config", str(tmp_path / "r.yaml"), "--progress", "false")
    _one_line_error(code, err, message)
    assert not (tmp_path / "out").exists()
    assert yaml.safe_load(recipe) is not None  # the recipe itself is valid YAML: the refusal is about its keys


def test_ctrl_c_is_one_line_exit_130_and_leaves_no_temporary_files(tmp_path, persuasion, capsys, monkeypatch):
    (tmp_path / "book.txt").write_text(persuasion[:20000])

    def interrupt(self, ids):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module.ShardWriter, "write_document", interrupt)
    code, err = _prepare_cli(capsys, [tmp_path / "book.txt"], tmp_path / "out")
    assert code == 130 and err == "sinktrain data prepare: interrupted"
    assert not (tmp_path / "out").exists()  # no temporary shards, and not the folder the run made for them


def test_an_out_dir_another_prepare_is_writing_is_refused_and_kept(tmp_path, doc, capsys, hold_output):
    """Two prepares into one folder: the second deleted the first one's temporary shards, and the first exited 0
    over an empty folder."""
    out = tmp_path / "out"
    assert _prepare_cli(capsys, [doc], out)[0] == 0
    earlier = snapshot(out)
    with hold_output(out):
        code, err = _prepare_cli(capsys, [doc], out, "--overwrite", "true")
        _one_line_error(code, err, f"--out_dir {str(out)!r} is being written by another sinktrain process (pid 4242 "
                                   f"on elsewhere); wait for it to end, or choose another --out_dir")
    assert snapshot(out) == earlier and sorted(p.name for p in tmp_path.iterdir()) == ["doc.txt", "out"]
