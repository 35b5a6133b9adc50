"""StreamEval: the stream is reproducible from its seed and its queries ask for the right line; a run scores
what the model said against that; window and sink caches stay at C entries; recompute sees at most C tokens."""

from __future__ import annotations

import json

import pytest
from gen_helpers import tiny_folder

from sinktrain.cli import main
from sinktrain.generate.streameval import digit_accuracy, make_stream, parse_answer


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


@pytest.mark.parametrize("said, expected", [("54335>", "54335"), (" 123> line", "123"), ("no>", None), ("", None)])
def test_parse_answer(said, expected):
    assert parse_answer(said) == expected


def test_digit_accuracy():
    assert digit_accuracy("25210", "25688") == 0.4 and digit_accuracy("25688", "25688") == 1.0
    assert digit_accuracy(None, "25688") == 0.0 and digit_accuracy("2", "25688") == 0.2


def test_run_scores_each_cache(tmp_path, capsys):
    folder, _, _ = tiny_folder(tmp_path)
    out = tmp_path / "se"
    rc = main(["streameval", str(folder), "--out", str(out), "--lines", "40", "--cache", "96", "--sinks", "4",
               "--bin-tokens", "200"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())["results"]
    assert set(res) == {"sink", "window", "dense", "recompute"} and (out / "streameval.png").is_file()
    for method, r in res.items():
        assert r["queries"] == 2  # after lines 30 and 40
        assert r["accuracy"] == sum(row["answer"] == row["expected"] for row in r["rows"]) / 2
        assert r["digit_accuracy"] == sum(digit_accuracy(row["answer"], row["expected"]) for row in r["rows"]) / 2
        caps = {row["cache_entries"] for row in r["rows"]}
        assert caps == ({96} if method != "dense" else caps) and (method != "dense" or max(caps) > 96)
    assert "[streameval] sink:" in capsys.readouterr().err


@pytest.mark.parametrize("args, phrase", [(["--lines", "10"], "--lines must be >= 30"),
                                          (["--methods", "sink,magic"], "--methods takes sink, window"),
                                          (["--cache", "4", "--sinks", "4"], "must be larger than the sink count")])
def test_bad_input_is_one_line(tmp_path, capsys, args, phrase):
    folder = tmp_path / "nomodel"
    rc = main(["streameval", str(folder), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and phrase in err[0]
