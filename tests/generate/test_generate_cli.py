"""`sinktrain generate`: bad input in one line (exit 2); output streamed to stdout equals sinktrain's decode
loop on the same model; token-sink exports get their sink token first; sampling is seeded."""

from __future__ import annotations

import pytest
from config_reads import count_config_reads
import torch
from gen_helpers import tiny_folder
from stream_helpers import SINK_ID

from sinktrain.cli import main
from sinktrain.generate.decode import Decoder, Sampler
from sinktrain.stream.sink_cache import SinkCache


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_folder(tmp_path_factory.mktemp("gen"))


@pytest.mark.parametrize("args, phrase", [
    (["--prompt", "hi", "--cache", "4", "--sinks", "4"], "must be larger than the sink count (4); raise --cache"),
    (["--prompt", "hi", "--sinks", "-1"], "sinks must be >= 0, got -1"),
    (["--prompt", "hi", "--seed", "-5"], "seed must be >= 0 and <= 4294967295, got -5"),
    (["--prompt", "hi", "--max-new-tokens", "0"], "max_new_tokens must be >= 1, got 0"),
    (["--prompt", "   "], "--prompt is empty"),
    (["--prompt-file", "/nonexistent/prompt.txt"], "prompt file '/nonexistent/prompt.txt' does not exist"),
    ([], "give exactly one of --prompt TEXT and --prompt-file FILE"),
    (["--prompt", "hi", "--top-p", "0"], "top_p must be > 0 and <= 1, got 0.0"),
    (["--prompt", "hi", "--dtype", "fp8"], "--dtype 'fp8': use one of float32, bfloat16, float16"),
    (["--prompt", "hi", "--cache-kind", "paged"], "--cache-kind must be one of sink, static, got 'paged'"),
])
def test_bad_input_is_one_line(folder, capsys, args, phrase):
    rc = main(["generate", str(folder[0]), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and phrase in err[0] and err[0].startswith("sinktrain generate: error:")


def test_empty_prompt_file(folder, tmp_path, capsys):
    (tmp_path / "p.txt").write_text("\n")
    assert main(["generate", str(folder[0]), "--prompt-file", str(tmp_path / "p.txt")]) == 2
    assert "is empty" in capsys.readouterr().err


def test_prompt_file_that_is_not_utf8(folder, tmp_path, capsys):
    (tmp_path / "p.txt").write_bytes("Il était une fois".encode("latin-1"))
    assert main(["generate", str(folder[0]), "--prompt-file", str(tmp_path / "p.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = f"prompt file {str(tmp_path / 'p.txt')!r} is not UTF-8 text (byte 0xe9 at offset 3); convert it first"
    assert len(err) == 1 and expected in err[0], err


def test_stdout_is_the_decode_loop_past_the_cache(folder, capsys, monkeypatch):
    path, model, tok = folder
    reads = count_config_reads(monkeypatch)
    prompt = "It was a truth universally acknowledged, that a single man in possession of a good fortune"
    ids = tok(prompt)["input_ids"]
    assert len(ids) > 12  # longer than the cache: chunked prefill with eviction
    rc = main(["generate", str(path), "--prompt", prompt, "--cache", "12", "--sinks", "2", "--max-new-tokens", "40",
               "--ignore-eos", "--prefill-chunk", "3"])
    out = capsys.readouterr()
    expected = list(Decoder(model, SinkCache(model, 2, 10), prefill_chunk=3).stream(ids, 40, Sampler()))
    assert rc == 0 and out.out == tok.decode(expected) + "\n"
    assert "[generate] 40 tokens" in out.err and "cache 12 entries" in out.err
    assert reads == [str(path)]  # checked and loaded from one reading of the config


def test_static_cache_and_seeded_sampling(folder, capsys):
    path = str(folder[0])
    runs = []
    for kind, seed in (("sink", 1), ("static", 1), ("sink", 2)):
        main(["generate", path, "--prompt", "Emma Woodhouse", "--cache", "16", "--sinks", "4", "--max-new-tokens", "30",
              "--ignore-eos", "--temperature", "1.0", "--top-p", "0.9", "--seed", str(seed), "--cache-kind", kind])
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1] != runs[2]


def test_token_sink_export_gets_its_sink_first(tmp_path, capsys):
    path, model, tok = tiny_folder(tmp_path, kind="token")
    assert main(["generate", str(path), "--prompt", "hello", "--sinks", "0", "--cache", "8"]) == 2
    assert "use --sinks 1 or more" in capsys.readouterr().err
    main(["generate", str(path), "--prompt", "hello there", "--cache", "8", "--sinks", "1", "--max-new-tokens", "20",
          "--ignore-eos"])
    ids = [SINK_ID] + tok("hello there")["input_ids"]
    expected = list(Decoder(model, SinkCache(model, 1, 7)).stream(ids, 20, Sampler()))
    assert capsys.readouterr().out == tok.decode(expected) + "\n"
    with torch.no_grad():  # and the sink changes what the model says
        assert expected != list(Decoder(model, SinkCache(model, 1, 7)).stream(ids[1:], 20, Sampler()))
