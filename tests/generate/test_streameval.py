"""StreamEval: the stream is reproducible from its seed and its queries ask for the right line; a run scores
what the model said against that; window and sink caches stay at C entries; recompute sees at most C tokens."""

from __future__ import annotations

import json

import pytest
import torch
from gen_helpers import tiny_folder

from sinktrain.cli import main
from sinktrain.generate.streameval import HEADER, make_stream


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
    assert "[streameval] sink:" in capsys.readouterr().err


@pytest.mark.parametrize("args, phrase", [(["--lines", "10"], "lines must be >= 30, got 10"),
                                          (["--bin-tokens", "0"], "bin_tokens must be >= 1, got 0"),
                                          (["--max-tokens", "0"], "max_tokens must be >= 1, got 0"),
                                          (["--methods", "sink,magic"], "--methods takes sink, window"),
                                          (["--cache", "4", "--sinks", "4"], "must be larger than the sink count")])
def test_bad_input_is_one_line(tmp_path, capsys, args, phrase):
    folder = tmp_path / "nomodel"
    rc = main(["streameval", str(folder), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and phrase in err[0]


def test_an_earlier_output_is_kept_until_overwrite(tmp_path, capsys):
    folder, _, _ = tiny_folder(tmp_path)
    capsys.readouterr()
    out = tmp_path / "se"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": true}')
    run = ["streameval", str(folder), "--out", str(out), "--lines", "30", "--cache", "96", "--sinks", "4",
           "--methods", "sink", "--no-plots", "true"]
    assert main(run) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"output folder {out} exists and is not empty; pass --overwrite" in err[0], err
    assert (out / "results.json").read_text() == '{"earlier": true}'
    assert main([*run, "--overwrite"]) == 0
    assert list(json.loads((out / "results.json").read_text())["results"]) == ["sink"]
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert not list(tmp_path.glob("se.*"))  # no staging folder left beside it
