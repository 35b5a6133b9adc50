"""StreamEval: the stream is reproducible from its seed and its queries ask for the right line; a run scores
what the model said against that; window and sink caches stay at C entries; recompute sees at most C tokens."""

from __future__ import annotations

import json

import pytest
import torch
from gen_helpers import sentencepiece_folder, sentencepiece_like, tiny_folder

from sinktrain.cli import main
from sinktrain.generate.config import STREAMEVAL_MAX_LINES
from sinktrain.generate.streameval import HEADER, SYLLABLES, answer_tokens, close_tokens, make_stream


def test_stream_is_seeded_and_queries_point_20_lines_back():
    a, b, c = make_stream(60, seed=3), make_stream(60, seed=3), make_stream(60, seed=4)
    assert a == b and a != c
    lines = [i for i in a if i.kind == "line"]
    queries = [(k, i) for k, i in enumerate(a) if i.kind == "query"]
    assert len(lines) == 60 and [q.line for _, q in queries] == [9, 19, 29, 39]  # after lines 30, 40, 50, 60
    for k, q in queries:
        fed = sum(1 for i in a[:k] if i.kind == "line")
        target = lines[fed - 1 - 20]
        assert q.line == target.line and f"<{q.answer}>" in target.text
        assert target.text.split(":")[0].removeprefix("line ") in q.text and q.text.endswith("is <")
    assert len({i.text.split(":")[0] for i in lines}) == 60  # line names are unique


@pytest.mark.parametrize("kind", ["sentencepiece", "gpt-neox"])
def test_answers_are_the_ids_the_lines_show(kind):
    """A query's scored answer ids (and the `>` after them) are those of the number in the line it asks about:
    tokenized alone, a SentencePiece tokenizer started the number with a '▁' no line has after `<`."""
    from sinktrain.data.tokenizer import load_tokenizer

    items = make_stream(40, seed=0)
    tok = sentencepiece_like([i.text for i in items] * 5) if kind == "sentencepiece" else load_tokenizer()
    lines = {i.line: i.text for i in items if i.kind == "line"}
    for q in (i for i in items if i.kind == "query"):
        line = lines[q.line]
        enc = tok(line, add_special_tokens=False, return_offsets_mapping=True)
        start = line.index("<") + 1
        end = start + len(q.answer)

        def ids_within(lo, hi):
            return [i for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if lo <= a and b <= hi]

        assert answer_tokens(tok, q) == ids_within(start, end), tok.convert_ids_to_tokens(answer_tokens(tok, q))
        assert close_tokens(tok, q) == ids_within(end, len(line))


def mistral_folder(root, window: int, lines: int):
    """A tiny Mistral with sliding-window attention on every layer, and a SentencePiece-like tokenizer."""
    folder, _, tok = sentencepiece_folder(root, [i.text for i in make_stream(lines, seed=0)] * 5, window)
    return folder, tok


def first_query_input(tok, lines: int) -> int:
    items = make_stream(lines, seed=0)
    query = next(k for k, i in enumerate(items) if i.kind == "query")
    return len(tok(HEADER, add_special_tokens=False)["input_ids"]) + sum(
        len(tok(i.text, add_special_tokens=False)["input_ids"]) for i in items[: query + 1])


def test_dense_on_a_sliding_window_model_is_refused(tmp_path, capsys, weights_never_load):
    """Mistral-style: the "dense" cache keeps every entry, but the model's layers see only the last 8 keys, so dense
    would silently have been window attention."""
    folder, tok = mistral_folder(tmp_path, window=8, lines=30)
    keys = first_query_input(tok, 30) + 5 - 1  # the last of the 5 answer digits is predicted from all before it
    capsys.readouterr()
    rc = main(["streameval", str(folder), "--out", str(tmp_path / "se"), "--lines", "30", "--cache", "6",
               "--sinks", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"sinktrain streameval: error: the dense method attends over up to {keys} tokens, but "
                               f"the model has sliding-window attention layers of window 8; drop dense from --methods"]


def test_dense_is_refused_past_the_window_and_runs_within_it(tmp_path, capsys):
    lines = 50  # queries after lines 30, 40 and 50; the window holds the first only
    tok = sentencepiece_like([i.text for i in make_stream(lines, seed=0)] * 5)
    window = first_query_input(tok, lines) + 20
    folder, tok = mistral_folder(tmp_path, window=window, lines=lines)
    capsys.readouterr()
    run = ["streameval", str(folder), "--out", str(tmp_path / "se"), "--lines", str(lines), "--cache", "6",
           "--sinks", "2", "--methods", "dense", "--no-plots", "true"]
    assert main(run) == 2
    err = capsys.readouterr().err.strip().splitlines()
    most = window + 1 - 5
    assert len(err) == 1 and err[0].endswith(f"window {window}; drop dense from --methods or --max-tokens {most}")
    assert main([*run, "--max-tokens", str(most)]) == 0
    rows = json.loads((tmp_path / "se" / "results.json").read_text())["results"]["dense"]["rows"]
    assert len(rows) == 1 and rows[0]["input_tokens"] + 5 - 1 <= window
    # Without dense the window is no concern (sink and window caches stay within 6 + 1 entries).
    assert main([*run[:-4], "--methods", "sink,window", "--overwrite"]) == 0


def test_lines_are_bounded_by_the_distinct_words():
    assert STREAMEVAL_MAX_LINES == len(SYLLABLES) ** 4  # --lines' bound is the number of words make_stream has
    with pytest.raises(ValueError, match="at most 331776 lines"):
        make_stream(STREAMEVAL_MAX_LINES + 1, seed=0)  # refused, not an endless draw


def test_run_scores_each_cache(tmp_path, capsys):
    folder, model, tok = tiny_folder(tmp_path)
    out = tmp_path / "se"
    rc = main(["streameval", str(folder), "--out", str(out), "--lines", "40", "--cache", "96", "--sinks", "4",
               "--bin-tokens", "200"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())["results"]
    assert set(res) == {"sink", "window", "dense", "recompute"} and (out / "streameval.png").is_file()
    for method, r in res.items():
        rows = r["rows"]
        assert r["queries"] == 2  # after lines 30 and 40
        assert r["accuracy"] == sum(row["predicted_ids"] == row["answer_ids"] for row in rows) / 2
        right = [sum(a == p for a, p in zip(row["answer_ids"], row["predicted_ids"])) / len(row["answer_ids"])
                 for row in rows]
        assert r["digit_accuracy"] == pytest.approx(sum(right) / 2)
        caps = {row["cache_entries"] for row in rows}
        assert caps == {96} if method != "dense" else max(caps) > 96
    # Dense predictions == argmax of one plain forward over the same text (teacher-forced, no cache code).
    items = make_stream(40, seed=0)
    ids = tok(HEADER, add_special_tokens=False)["input_ids"]
    for item in items:
        ids += tok(item.text, add_special_tokens=False)["input_ids"]
        if item.kind == "query":
            break
    answer = tok(item.answer, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + answer])).logits[0]
    expected = logits[len(ids) - 1 : len(ids) - 1 + len(answer)].argmax(-1).tolist()
    assert res["dense"]["rows"][0]["predicted_ids"] == expected
    # Recompute: each answer token from one plain forward over the 96 tokens before it.
    with torch.no_grad():
        recomputed = [int(model(input_ids=torch.tensor([(ids + answer[:j])[-96:]])).logits[0, -1].argmax())
                      for j in range(len(answer))]
    assert res["recompute"]["rows"][0]["predicted_ids"] == recomputed
    # Every method records a query's input length before its answer (sink, window and dense counted the answer).
    for r in res.values():
        assert r["rows"][0]["input_tokens"] == len(ids)
        assert [row["input_tokens"] for row in r["rows"]] == [row["input_tokens"] for row in res["recompute"]["rows"]]
    assert "[streameval] sink:" in capsys.readouterr().err


def test_recompute_predicts_each_answer_token_from_exactly_c_tokens():
    """Sliding window with re-computation: every prediction sees the C tokens before it, the true answer tokens
    before it included (one fresh cache per query gave the answer's last token C + len(answer) - 1)."""
    from gen_helpers import tiny

    from sinktrain.generate.streameval import recomputed_answer
    from sinktrain.stream.model_info import cache_kwarg

    model = tiny("none", seed=7)
    stream, answer, cache = [(7 * i) % 500 for i in range(200)], [11, 12, 13], 64
    seen = []

    def keys(module, args, kwargs):
        seen.append(int(kwargs["input_ids"].shape[-1] + kwargs[cache_kwarg(model)].get_seq_length()))

    hook = model.register_forward_pre_hook(keys, with_kwargs=True)
    predicted = recomputed_answer(model, stream, answer, cache)
    hook.remove()
    assert seen == [cache] * len(answer)
    with torch.no_grad():
        assert predicted == [int(model(input_ids=torch.tensor([(stream + answer[:j])[-cache:]])).logits[0, -1].argmax())
                             for j in range(len(answer))]


@pytest.mark.parametrize("args, phrase", [(["--lines", "10"], "lines must be >= 30 and <= 331776, got 10"),
                                          (["--bin-tokens", "0"], "bin_tokens must be >= 1, got 0"),
                                          (["--max-tokens", "0"], "max_tokens must be >= 1, got 0"),
                                          (["--methods", "sink,magic"], "--methods takes sink, window"),
                                          (["--lines", "331777"], "lines must be >= 30 and <= 331776, got 331777"),
                                          (["--cache-kind", "static"], "streameval runs the dynamic sink cache only"),
                                          (["--cache", "4", "--sinks", "4"], "must be larger than the sink count")])
def test_bad_input_is_one_line(tmp_path, capsys, args, phrase):
    folder = tmp_path / "nomodel"
    rc = main(["streameval", str(folder), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and phrase in err[0]


def test_out_inside_the_model_folder_is_refused(tmp_path, capsys):
    folder, _, _ = tiny_folder(tmp_path)
    capsys.readouterr()
    before = tree(folder)
    rc = main(["streameval", str(folder), "--out", str(folder / "se"), "--lines", "30", "--cache", "96",
               "--sinks", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"sinktrain streameval: error: --out {str(folder / 'se')!r} lies inside model "
                               f"{str(folder)!r}, which the run reads; choose an --out outside it"]
    assert tree(folder) == before


def earlier_streameval(out, with_marker: bool):
    """An earlier streameval folder, as written before streameval.json existed (or with it)."""
    out.mkdir()
    earlier = json.dumps({"config": {"lines": 30, "methods": "sink"}, "results": {"sink": {"earlier": True}}})
    (out / "results.json").write_text(earlier)
    if with_marker:
        (out / "streameval.json").write_text('{"verb": "streameval"}')
    return earlier


@pytest.mark.parametrize("with_marker", [False, True])
def test_an_earlier_output_is_kept_until_overwrite(tmp_path, capsys, with_marker):
    folder, _, _ = tiny_folder(tmp_path)
    capsys.readouterr()
    out = tmp_path / "se"
    earlier = earlier_streameval(out, with_marker)
    run = ["streameval", str(folder), "--out", str(out), "--lines", "30", "--cache", "96", "--sinks", "4",
           "--methods", "sink,sink", "--no-plots", "true"]
    assert main(run) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"output folder {out} exists and is not empty; pass --overwrite" in err[0], err
    assert (out / "results.json").read_text() == earlier
    assert main([*run, "--overwrite"]) == 0
    assert list(json.loads((out / "results.json").read_text())["results"]) == ["sink"]
    assert capsys.readouterr().err.count("[streameval] sink:") == 1  # a method named twice runs once
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "streameval.json"]
    assert not list(tmp_path.glob("se.*"))  # no staging folder left beside it


def test_a_model_folder_named_with_tex_is_evaluated(tmp_path, capsys):
    """Its name titles the plot: matplotlib read `$...$` as TeX and failed at the end, throwing the results away."""
    folder, _, _ = tiny_folder(tmp_path)
    model = folder.rename(tmp_path / "m$\\bad$")
    out = tmp_path / "se"
    assert main(["streameval", str(model), "--out", str(out), "--lines", "30", "--cache", "96", "--sinks", "4",
                 "--methods", "sink"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "streameval.json", "streameval.png"]


def tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


@pytest.mark.parametrize("verb, files", [
    ("stream-eval", {"results.json": '{"vanilla": {"1+63": {"ppl": 12.5}}}', "nll/vanilla.npy": "nll"}),
    ("zeroshot", {"results.json": '{"vanilla": {"piqa": {"acc": 0.5}}}', "tasks/piqa.json": "[]"}),
])
def test_overwrite_refuses_another_verbs_results(tmp_path, capsys, verb, files):
    # stream-eval and zeroshot write a results.json too: --overwrite must not take their folders for its own.
    out = tmp_path / verb
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = tree(out)
    rc = main(["streameval", str(tmp_path / "nomodel"), "--out", str(out), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"{out} is not an earlier streameval output (no streameval.json)" in err[0]
    assert tree(out) == before


@pytest.mark.parametrize("kind", ["fifo", "deep"])
def test_overwrite_refuses_a_results_json_it_cannot_read(tmp_path, capsys, no_hang, odd_marker, kind):
    """A FIFO results.json hung the check for ever; one nested too deeply was a RecursionError traceback."""
    out = tmp_path / "se"
    out.mkdir()
    odd_marker(out / "results.json", kind)
    rc = main(["streameval", str(tmp_path / "nomodel"), "--out", str(out), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"sinktrain streameval: error: output folder {out} is not an earlier streameval output "
                               f"(no streameval.json); --overwrite replaces only those. Choose another --out"], err
    assert [p.name for p in out.iterdir()] == ["results.json"]


def test_max_tokens_below_the_first_query_is_refused_before_the_weights_load(tmp_path, capsys, weights_never_load):
    folder, _, tok = tiny_folder(tmp_path)
    out = tmp_path / "se"
    earlier = earlier_streameval(out, with_marker=True)
    items = make_stream(30, seed=0)
    first = len(tok(HEADER + "".join(i.text for i in items[: items.index(next(i for i in items if i.kind == "query"))
                                                              + 1]), add_special_tokens=False)["input_ids"])
    capsys.readouterr()
    rc = main(["streameval", str(folder), "--out", str(out), "--lines", "30", "--max-tokens", str(first - 1),
               "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"--max-tokens {first - 1} is below the {first} input tokens of the first query; raise it" in err[0]
    assert (out / "results.json").read_text() == earlier


def test_an_output_another_run_is_writing_is_refused_and_kept(tmp_path, capsys, hold_output, weights_never_load):
    out = tmp_path / "se"
    earlier = earlier_streameval(out, with_marker=True)
    with hold_output(out):
        assert main(["streameval", "some-org/some-model", "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sinktrain streameval: error: --out {str(out)!r} is being written by another sinktrain process "
                   f"(pid 4242 on elsewhere); wait for it to end, or choose another --out"]
    assert (out / "results.json").read_text() == earlier and sorted(p.name for p in tmp_path.iterdir()) == ["se"]
