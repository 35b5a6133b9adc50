"""Bad input gives one clear line on stderr and exit code 2."""

from __future__ import annotations

import json
import os

import pytest
import torch
from stream_helpers import BOOKS, REPO

from sinktrain.cli import main

BOOK = str(REPO / "tests" / "persuasion_opening.txt")  # its first 20,000 characters (test_sources)


def refusal(rc: int, capsys) -> str:
    """The one stderr line of a refused run (exit 2)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    from transformers import GPT2Config

    d = tmp_path_factory.mktemp("gpt2")
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(d)
    return d


@pytest.mark.parametrize("args, phrase", [
    (["--cache", "4", "--sinks", "4"], "is not below the cache size"),
    (["--configs", "4+0"], "the window must be w >= 1"),
    (["--cache", "64", "--tokens", "40"], "not more than the cache size 64"),
    (["--mode", "fast"], "unknown mode"),
    (["--text", "/nonexistent/book.txt"], "does not exist"),
    (["--device", "gpu"], "--device 'gpu' is not a torch device; pass cpu, cuda or cuda:N"),
    (["--device", "meta"], "--device 'meta': sinktrain runs on cpu, cuda or mps"),
    # --configs sets the cache: a --cache or --sinks beside it would be ignored and recorded in run.json as used
    (["--configs", "2+6", "--cache", "8"], "--configs replaces --cache and --sinks; drop them"),
    (["--configs", "2+6", "--sinks", "1"], "--configs replaces --cache and --sinks; drop them"),
    (["--first_k", "64"], "--first_k 64 is not below --attention_tokens 64; the attention statistics need more"),
    (["--first_k", "8", "--attention_tokens", "4"], "--first_k 8 is not below --attention_tokens 4"),
])
def test_bad_arguments(model_dirs, tmp_path, capsys, args, phrase):
    rc = main(["stream-eval", str(model_dirs["vanilla"]), "--text", BOOK, "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and phrase in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_the_missing_default_text_is_named_as_the_default(model_dirs, tmp_path, capsys, monkeypatch):
    """From an installed sinktrain run outside the checkout, the default book's relative path does not exist."""
    monkeypatch.chdir(tmp_path)
    rc = main(["stream-eval", str(model_dirs["vanilla"]), "--out", "out"])
    err = refusal(rc, capsys)
    assert ("the default --text 'data/books/austen_persuasion.txt' (a book in sinktrain's repository, read relative "
            "to the current folder) does not exist here; pass --text") in err
    rc = main(["stream-eval", str(model_dirs["vanilla"]), "--text", "mine.txt", "--out", "out"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "text source 'mine.txt' does not exist" in err and "default" not in err, err
    assert not any(tmp_path.iterdir())


def special_path(kind: str, tmp_path) -> str:
    """A path that exists (or loops) but is no regular file: is_file() is False for each, as for a missing one."""
    if kind == "device":
        return "/dev/zero"
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(path)  # a symlink loop
    return str(path)


@pytest.mark.parametrize("kind, phrase", [("device", "is not a regular file (a character device)"),
                                          ("fifo", "is not a regular file (a FIFO)"), ("loop", "is a symlink loop")])
def test_a_text_that_is_no_regular_file_is_named_for_what_it_is(model_dirs, tmp_path, capsys, kind, phrase):
    text = special_path(kind, tmp_path)
    rc = main(["stream-eval", str(model_dirs["vanilla"]), "--text", text, "--out", str(tmp_path / "out")])
    assert refusal(rc, capsys) == (f"sinktrain stream-eval: error: text source {text!r} {phrase}; pass 'pg19', a .txt "
                                   f"file, a folder or a glob")
    assert not (tmp_path / "out").exists()


def test_an_empty_text_is_refused_not_read_as_the_current_folder(model_dirs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text((BOOKS / "austen_persuasion.txt").read_text()[:3000])
    rc = main(["stream-eval", str(model_dirs["vanilla"]), "--text", "", "--cache", "8", "--out", "out"])
    assert refusal(rc, capsys) == ("sinktrain stream-eval: error: --text is empty; give a path: 'pg19', a .txt file, "
                                   "a folder or a glob")
    assert not (tmp_path / "out").exists()


def test_an_empty_file_in_the_text_folder_is_refused(model_dirs, tmp_path, capsys):
    """It would enter the stream as an empty document: two EODs in a row."""
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text((BOOKS / "austen_persuasion.txt").read_text()[:3000])
    (books / "b.txt").write_bytes(b"")
    rc = main(["stream-eval", str(model_dirs["vanilla"]), "--text", str(books), "--cache", "8",
               "--out", str(tmp_path / "out")])
    err = refusal(rc, capsys)
    assert f"file {str(books / 'b.txt')!r} is empty (0 bytes); remove it" in err
    assert not (tmp_path / "out").exists()


def test_a_dense_only_run_is_not_gated_on_the_default_cache(model_dirs, tmp_path):
    """100 tokens are fewer than the default --cache 1024, which a run with no s+w configuration never holds."""
    out = tmp_path / "out"
    assert main(["stream-eval", str(model_dirs["vanilla"]), "--text", BOOK, "--sinks", "", "--baselines", "dense",
                 "--tokens", "100", "--plots", "false", "--tensorboard", "false", "--out", str(out)]) == 0
    assert list(json.loads((out / "results.json").read_text())["vanilla"]) == ["dense"]
    info = json.loads((out / "run.json").read_text())
    assert info["cache_size"] is None and info["recompute_cache"] is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("verb", [["stream-eval", "--out", "o"], ["generate", "--prompt", "hi"],
                                  ["zeroshot", "--tasks", "piqa", "--out", "o"]])
def test_cuda_without_a_gpu_is_one_line_before_loading(model_dirs, tmp_path, capsys, monkeypatch, verb):
    monkeypatch.chdir(tmp_path)
    rc = main([verb[0], str(model_dirs["vanilla"]), *verb[1:], "--device", "cuda"])
    assert "--device cuda: torch sees no CUDA GPU here" in refusal(rc, capsys)
    assert not any(tmp_path.iterdir())


def test_unsupported_architecture(gpt2_dir, tmp_path, capsys):
    rc = main(["stream-eval", str(gpt2_dir), "--text", BOOK, "--cache", "8", "--tokens", "50",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "architecture 'gpt2' adds absolute position embeddings to its input" in err


def test_a_text_that_is_not_utf8_is_refused(model_dirs, tmp_path, capsys):
    """Read with replacement characters, a Latin-1 book would stream without its accents and report a number."""
    latin = tmp_path / "latin.txt"
    latin.write_bytes(("Mais où sont les neiges d'antan? " * 200).encode("latin-1"))
    rc = main(["stream-eval", str(model_dirs["vanilla"]), "--text", str(latin), "--cache", "8",
               "--out", str(tmp_path / "out")])
    err = refusal(rc, capsys)
    assert f"text file {str(latin)!r} is not UTF-8 text (byte 0xf9 at offset 6); convert it first" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("verb", ["stream-eval", "generate"])
@pytest.mark.parametrize("content, what", [("[1, 2]", "holds a JSON list, not an object"),
                                           ("{}", "has no model_type")])
def test_a_config_that_names_no_architecture_is_one_line(model_dirs, tmp_path, capsys, verb, content, what):
    """Valid JSON that is not a config: an AttributeError ('list' object has no attribute 'get'), or transformers'
    'Unrecognized model' with no fix."""
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(model_dirs["vanilla"], folder)
    (folder / "config.json").write_text(content)
    args = ["--text", BOOK, "--out", str(tmp_path / "out")] if verb == "stream-eval" else ["--prompt", "Hi"]
    assert refusal(main([verb, str(folder), *args]), capsys) == (
        f"sinktrain {verb}: error: {folder}/config.json {what}, so no architecture can be read from it; re-export "
        f"the model or restore its config.json")


def test_missing_model_folder(tmp_path, capsys):
    rc = main(["stream-eval", str(tmp_path / "nope"), "--text", BOOK, "--out", str(tmp_path / "out")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_a_repeated_configuration_is_streamed_once(model_dirs, tmp_path, monkeypatch):
    import sinktrain.stream.evaluation as evaluate_module

    real, streamed = evaluate_module.run_configuration, []

    def counting(*args, **kwargs):
        streamed.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "run_configuration", counting)
    assert main(["stream-eval", str(model_dirs["vanilla"]), "--text", BOOK, "--tokens", "60", "--cache", "8",
                 "--sinks", "4,1,4", "--baselines", "dense,dense", "--plots", "false", "--tensorboard", "false",
                 "--out", str(tmp_path / "out")]) == 0
    assert streamed == ["4+4", "1+7", "dense"]
