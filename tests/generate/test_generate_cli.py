"""`sinktrain generate`: bad input in one line (exit 2); output streamed to stdout equals sinktrain's decode
loop on the same model; token-sink exports get their sink token first; sampling is seeded."""

from __future__ import annotations

import io
import os

import pytest
from config_reads import count_config_reads
import torch
from gen_helpers import sentencepiece_folder, sentencepiece_like, tiny_folder
from stream_helpers import SINK_ID

from sinktrain.cli import main
from sinktrain.generate.decode import Decoder, Sampler
from sinktrain.generate.text import IncrementalDetokenizer
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
    (["--prompt-file", "/"], "prompt file '/' is a folder; pass an existing UTF-8 text file"),
    ([], "give exactly one of --prompt TEXT and --prompt-file FILE"),
    (["--prompt", "hi", "--top-p", "0"], "top_p must be > 0 and <= 1, got 0.0"),
    (["--prompt", "hi", "--dtype", "fp8"], "--dtype 'fp8': use one of float32, bfloat16, float16"),
    (["--prompt", "hi", "--cache-kind", "paged"], "--cache-kind must be one of sink, static, got 'paged'"),
])
def test_bad_input_is_one_line(folder, capsys, args, phrase):
    rc = main(["generate", str(folder[0]), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and phrase in err[0] and err[0].startswith("sinktrain generate: error:")


@pytest.mark.parametrize("kind, phrase", [("device", "is not a regular file (a character device)"),
                                          ("fifo", "is not a regular file (a FIFO)"), ("loop", "is a symlink loop")])
def test_a_prompt_file_that_is_no_regular_file_is_named_for_what_it_is(folder, tmp_path, capsys, weights_never_load,
                                                                       kind, phrase):
    path = "/dev/zero" if kind == "device" else str(tmp_path / kind)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        os.symlink(path, path)
    rc = main(["generate", str(folder[0]), "--prompt-file", path])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"sinktrain generate: error: prompt file {path!r} {phrase}; pass an existing UTF-8 "
                               f"text file"], err


def test_a_prompt_file_that_fails_to_read_is_named(folder, capsys, weights_never_load):
    """A regular file whose read fails printed a bare "[Errno 5] Input/output error", naming no file."""
    rc = main(["generate", str(folder[0]), "--prompt-file", "/proc/self/mem"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["sinktrain generate: error: prompt file '/proc/self/mem' cannot be read (Input/output "
                               "error); pass a readable UTF-8 text file"], err


@pytest.mark.parametrize("args", [["generate", "--prompt", "hi"], ["chat"], ["streameval", "--out", "se"]],
                         ids=["generate", "chat", "streameval"])
def test_no_model_says_a_model_is_needed(tmp_path, capsys, monkeypatch, weights_never_load, args):
    """It said "model folder '' has no config.json" (Path("") is the current folder)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"sinktrain {args[0]}: error: no model given; pass MODEL (a model folder, a .gguf "
                               f"file, a hub id or a zoo name) as the verb's first argument"], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["flag", "config"])
def test_an_infinite_temperature_is_one_line_before_the_weights_load(folder, tmp_path, capsys, weights_never_load,
                                                                     where):
    """`--temperature .inf` (or 1e400, or `temperature: .inf` in a --config file) passed `>= 0` and exited 0."""
    config = tmp_path / "gen.yaml"
    config.write_text("temperature: .inf\n")
    args = ["--temperature", "1e400"] if where == "flag" else ["--config", str(config)]
    rc = main(["generate", str(folder[0]), "--prompt", "hi", *args])
    assert rc == 2 and capsys.readouterr().err == ("sinktrain generate: error: temperature must be a finite number "
                                                   ">= 0, got inf\n")


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


def test_a_prompt_that_is_not_utf8_is_one_line_before_the_weights_load(folder, capsys, weights_never_load):
    # What Python makes of `--prompt $'ab\xff\xfe'`: the bytes kept as lone surrogates (surrogateescape).
    rc = main(["generate", str(folder[0]), "--prompt", "ab\udcff\udcfe"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["sinktrain generate: error: --prompt is not UTF-8 text (byte 0xff at offset 2); pass "
                               "UTF-8 text (e.g. through iconv -f latin1 -t utf-8)"], err


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


TEXTS = ["The capital of France is Paris and the city is big"] * 20


def test_the_first_token_keeps_its_space_after_the_prompt():
    """SentencePiece drops the leading '▁' of a decode's first token: decoded without the prompt, ' Paris' came
    out as 'Paris' ('France isParis')."""
    tok = sentencepiece_like(TEXTS, vocab=200)
    prompt, full = tok("The capital of France is")["input_ids"], tok("The capital of France is Paris and the city")
    generated = full["input_ids"][len(prompt):]
    assert tok.convert_ids_to_tokens(generated[0]) == "▁Paris"
    detok = IncrementalDetokenizer(tok, prompt)
    assert "".join(detok.push(i) for i in generated) + detok.flush() == " Paris and the city"


def test_printed_text_continues_the_prompt(tmp_path, capsys):
    """What generate prints is decode(prompt + generated) past decode(prompt), with a SentencePiece tokenizer."""
    path, model, tok = sentencepiece_folder(tmp_path, TEXTS, seed=18)  # a seed whose first token is '▁Paris'
    capsys.readouterr()
    prompt = "The capital of France is"
    ids = tok(prompt)["input_ids"]
    with torch.no_grad():  # transformers' own greedy decoding (the whole text fits the cache)
        out = model.generate(torch.tensor([ids]), max_new_tokens=12, min_new_tokens=12, do_sample=False)
    generated = out[0, len(ids):].tolist()
    assert tok.convert_ids_to_tokens(generated[0]).startswith("▁")  # a leading space to keep
    assert main(["generate", str(path), "--prompt", prompt, "--max-new-tokens", "12", "--ignore-eos"]) == 0
    head, whole = tok.decode(ids), tok.decode(ids + generated)
    assert whole.startswith(head) and capsys.readouterr().out == whole[len(head):] + "\n"


def test_static_cache_and_seeded_sampling(folder, capsys):
    path = str(folder[0])
    runs = []
    for kind, seed in (("sink", 1), ("static", 1), ("sink", 2)):
        main(["generate", path, "--prompt", "Emma Woodhouse", "--cache", "16", "--sinks", "4", "--max-new-tokens", "30",
              "--ignore-eos", "--temperature", "1.0", "--top-p", "0.9", "--seed", str(seed), "--cache-kind", kind])
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1] != runs[2]


def test_a_static_cache_larger_than_memory_is_one_line_naming_cache(folder, capsys):
    rc = main(["generate", str(folder[0]), "--prompt", "hi", "--cache", "100000000000", "--cache-kind", "static"])
    out = capsys.readouterr()
    last = out.err.strip().splitlines()[-1]  # (after the warning that the cache exceeds the trained positions)
    assert rc == 2 and out.out == "", out
    assert last.startswith("sinktrain generate: error: --cache 100000000000: the static cache needs "), last
    assert "x 100000000001 slots x 4 bytes) but cpu has " in last and last.endswith(
        "GiB available; lower --cache (or use --cache-kind sink, which grows only as tokens arrive)"), last


def test_a_static_cache_is_refused_against_the_memory_the_device_has(folder, capsys, monkeypatch):
    monkeypatch.setattr("sinktrain.util.memory.available_bytes", lambda device: 2**20)
    main(["generate", str(folder[0]), "--prompt", "hi", "--cache", "4096", "--max-new-tokens", "2"])
    assert capsys.readouterr().out  # the dynamic cache allocates nothing up front: not checked
    rc = main(["generate", str(folder[0]), "--prompt", "hi", "--cache", "4096", "--cache-kind", "static"])
    assert rc == 2 and "but cpu has 0.0 GiB available; lower --cache" in capsys.readouterr().err


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


def test_a_closed_stdout_is_one_line_before_the_weights_load(folder, monkeypatch, capsys, weights_never_load):
    monkeypatch.setattr("sys.stdout", None)  # what Python sets for `>&-`
    rc = main(["generate", str(folder[0]), "--prompt", "hi"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "stdout is closed; give generate an open stdout" in err[0], err


def test_generation_stops_at_the_generation_configs_eos_and_does_not_print_it(tmp_path, capsys):
    # A chat model ends its turn with a token (ChatML's <|im_end|>) that only its generation config lists: make
    # the 4th greedy token of the tiny model that token.
    path, model, tok = tiny_folder(tmp_path)
    ids = tok("Once upon a time")["input_ids"]
    greedy = list(Decoder(model, SinkCache(model, 4, 60)).stream(ids, 12, Sampler()))
    k = next(i for i in range(3, 12) if greedy[i] not in greedy[:i])
    assert tok.eos_token_id not in greedy[: k + 1]
    model.generation_config.eos_token_id = greedy[k]
    model.generation_config.save_pretrained(path)
    rc = main(["generate", str(path), "--prompt", "Once upon a time", "--cache", "64", "--max-new-tokens", "12"])
    out = capsys.readouterr()
    assert rc == 0 and out.out == tok.decode(greedy[:k]) + "\n" and f"[generate] {k + 1} tokens" in out.err


@pytest.mark.parametrize("eos", ["x", 10**9, -1])
def test_an_eos_id_that_is_no_token_is_one_line_naming_the_file(tmp_path, capsys, eos):
    """generation_config.json's eos_token_id "x" said only "invalid literal for int() with base 10: 'x'"."""
    import json

    path, model, _ = tiny_folder(tmp_path)
    config = json.loads((path / "generation_config.json").read_text())
    (path / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": eos}))
    rc = main(["generate", str(path), "--prompt", "Once upon a time", "--cache", "64", "--max-new-tokens", "2"])
    vocab = model.get_input_embeddings().num_embeddings
    assert rc == 2 and capsys.readouterr().err.splitlines()[-1] == (  # after tiny_folder's own progress bars
        f"sinktrain generate: error: the model's end-of-sequence ids include {eos!r}, which is no token id (0 to "
        f"{vocab - 1}); fix eos_token_id in its generation_config.json (or config.json)")


def damaged_copy(folder, tmp_path, **config):
    """A copy of `folder` whose config.json has `config`'s values."""
    import json
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(folder, copy)
    raw = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**raw, **config}))
    return copy


@pytest.mark.parametrize("edit, what", [
    ({"num_attention_heads": 0}, "num_attention_heads is 0, but a model needs at least 1"),  # ZeroDivisionError
    ({"num_hidden_layers": -1}, "num_hidden_layers is -1, but a model needs at least 1"),  # IndexError
    # transformers' validation errors, multi-line: their informative line is kept
    ({"num_attention_heads": 3}, "is invalid: The hidden size is not divisible by the number of attention heads"),
    ({"hidden_size": "64"}, "is invalid: Field 'hidden_size' expected int, got str (value: '64')"),
    ({"vocab_size": None}, "is invalid: Field 'vocab_size' expected int, got NoneType (value: None)"),
])
def test_an_impossible_config_value_is_one_line_naming_config_json_and_the_key(folder, tmp_path, capsys,
                                                                              weights_never_load, edit, what):
    bad = damaged_copy(folder[0], tmp_path, **edit)
    rc = main(["generate", str(bad), "--prompt", "x", "--max-new-tokens", "2", "--cache", "32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"sinktrain generate: error: {bad}/config.json") and what in err[0], err
    assert err[0].endswith("; fix config.json (or export the model again)"), err


def cut_rows(folder, rows: int, names=("gpt_neox.embed_in.weight",)) -> None:
    """Keep the first `rows` rows of the named weights of `folder`'s model.safetensors."""
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    for name in names:
        weights[name] = weights[name][:rows].clone()
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def test_weights_of_other_sizes_than_the_config_are_one_line(folder, tmp_path, capsys):
    bad = damaged_copy(folder[0], tmp_path)
    cut_rows(bad, 1000)
    rc = main(["generate", str(bad), "--prompt", "x", "--max-new-tokens", "2", "--cache", "32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [
        f"sinktrain generate: error: cannot load model {str(bad)!r}: its weights do not fit its config.json "
        f"(gpt_neox.embed_in.weight is [1000, 64] in model.safetensors, config.json calls for [50304, 64]); "
        f"config.json and the weights come from different models (or one was edited): export the model again, or "
        f"put back the config.json saved with these weights"], err


def test_a_tokenizer_past_the_models_vocabulary_is_refused_before_the_weights_load(folder, tmp_path, capsys,
                                                                                  weights_never_load):
    """config and weights agree on 1000 rows, the tokenizer has 50277 ids: decoding ended in an IndexError."""
    bad = damaged_copy(folder[0], tmp_path, vocab_size=1000)
    cut_rows(bad, 1000, ("gpt_neox.embed_in.weight", "embed_out.weight"))
    rc = main(["generate", str(bad), "--prompt", "x", "--max-new-tokens", "2", "--cache", "32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"sinktrain generate: error: the tokenizer of {bad} has 50277 ids but the model only "
                               f"1000 embedding rows; save the tokenizer it was trained with into the model "
                               f"folder"], err


@pytest.mark.parametrize("temperature, top_p", [(1e-40, 1.0), (1e-320, 1.0), (1.0, 1e-320), (0.5, 1e-45)])
def test_sampling_settings_at_the_float_limits_give_the_greedy_token(temperature, top_p):
    """A temperature so small that logits / temperature overflowed gave a nan softmax, and a top_p that underflows
    to 0 dropped even the top token: multinomial failed with a RuntimeError. Both are the greedy token."""
    logits = torch.tensor([1.5, 30.0, -2.0, 29.9, float("-inf")])
    assert Sampler(temperature, top_p, seed=3)(logits) == 1
