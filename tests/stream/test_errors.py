"""Bad input gives one clear line on stderr and exit code 2."""

from __future__ import annotations

import pytest
import torch
from stream_helpers import BOOKS

from sinktrain.cli import main

BOOK = str(BOOKS / "austen_persuasion.txt")


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
])
def test_bad_arguments(model_dirs, tmp_path, capsys, args, phrase):
    rc = main(["stream-eval", str(model_dirs["vanilla"]), "--text", BOOK, "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and phrase in err and len(err.splitlines()) == 1, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("verb", [["stream-eval", "--out", "o"], ["generate", "--prompt", "hi"],
                                  ["zeroshot", "--tasks", "piqa", "--out", "o"]])
def test_cuda_without_a_gpu_is_one_line_before_loading(model_dirs, tmp_path, capsys, monkeypatch, verb):
    monkeypatch.chdir(tmp_path)
    rc = main([verb[0], str(model_dirs["vanilla"]), *verb[1:], "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--device cuda: torch sees no CUDA GPU here" in err[0], err
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
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"text file {str(latin)!r} is not UTF-8 text (byte 0xf9 at offset 6); convert it first" in err[0]
    assert not (tmp_path / "out").exists()


def test_missing_model_folder(tmp_path, capsys):
    rc = main(["stream-eval", str(tmp_path / "nope"), "--text", BOOK, "--out", str(tmp_path / "out")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_a_repeated_configuration_is_streamed_once(model_dirs, tmp_path, monkeypatch):
    import importlib

    evaluate_module = importlib.import_module("sinktrain.stream.evaluate")
    real, streamed = evaluate_module.run_configuration, []

    def counting(*args, **kwargs):
        streamed.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "run_configuration", counting)
    assert main(["stream-eval", str(model_dirs["vanilla"]), "--text", BOOK, "--tokens", "60", "--cache", "8",
                 "--sinks", "4,1,4", "--baselines", "dense,dense", "--plots", "false", "--tensorboard", "false",
                 "--out", str(tmp_path / "out")]) == 0
    assert streamed == ["4+4", "1+7", "dense"]
