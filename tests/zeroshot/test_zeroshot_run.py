"""`sinktrain zeroshot` end to end on the bundled data sample: results.json / table.md / run.json, accuracies
equal to an independent scoring of the same PIQA examples, and LAMBADA kept as "not available offline"."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from config_reads import count_config_reads
from datasets import load_from_disk

from sinktrain.cli import main
from sinktrain.zeroshot.lm import load
from zeroshot_helpers import SAMPLE

LIMIT = 6


def piqa_by_hand(model_dir, limit: int) -> tuple[float, float]:
    """acc / acc_norm of PIQA's first `limit` examples computed here, from the task's published prompt
    ("Question: <goal>\\nAnswer:" + " " + solution), with the model's sink ids first."""
    loaded = load(str(model_dir), "cpu", "float32")
    tok, docs = loaded.tokenizer, load_from_disk(str(SAMPLE / "piqa/plain_text/validation"))
    hits = hits_norm = 0
    for doc in docs.select(range(limit)):
        context = f"Question: {doc['goal']}\nAnswer:"
        scores = []
        for sol in (doc["sol1"], doc["sol2"]):
            ctx = tok.encode(context, add_special_tokens=False)
            cont = tok.encode(context + " " + sol, add_special_tokens=False)[len(ctx):]
            ids = torch.tensor([loaded.sink_ids + ctx + cont])
            with torch.no_grad():
                logp = torch.log_softmax(loaded.model(input_ids=ids).logits[0].double(), -1)
            start = len(loaded.sink_ids) + len(ctx)
            ll = sum(float(logp[start - 1 + i, t]) for i, t in enumerate(cont))
            scores.append((ll, ll / len((" " + sol).encode())))
        hits += max(range(2), key=lambda i: scores[i][0]) == doc["label"]
        hits_norm += max(range(2), key=lambda i: scores[i][1]) == doc["label"]
    return hits / limit, hits_norm / limit


def test_zeroshot_cli_writes_results_and_table(model_dirs, tmp_path, capfd, caplog, monkeypatch):
    reads = count_config_reads(monkeypatch)
    monkeypatch.chdir(tmp_path)  # outside any git checkout, where a user of the wheel runs it
    out = tmp_path / "zs"
    models = [str(model_dirs["sink1"]), str(model_dirs["zerosink"])]
    rc = main(["zeroshot", *models, "--tasks", "piqa,arc_easy,lambada_openai", "--limit", str(LIMIT),
               "--batch-size", "4", "--data-dir", str(SAMPLE), "--out", str(out)])
    assert rc == 0
    printed, err = capfd.readouterr()  # file descriptors: lm-eval's `git describe` wrote to the process's stderr
    assert "not a git repository" not in err
    # lm-eval's warnings that `pretrained` is a model object: handing it ours is the point, so they are not shown.
    assert not [r for r in caplog.records if "pretrained" in r.getMessage()]
    assert "examples/s" in printed and "sink token(s) [50277] at position 0" in printed
    assert reads == models  # each checked before any scoring, and loaded from that same reading

    results = json.loads((out / "results.json").read_text())
    assert list(results) == models  # keyed by the model as given
    for per_model in results.values():
        assert set(per_model) == {"piqa", "arc_easy", "lambada_openai"}
        for task in ("piqa", "arc_easy"):
            r = per_model[task]
            assert r["n"] == LIMIT and 0 <= r["acc"] <= 1 and 0 <= r["acc_norm"] <= 1
        assert per_model["lambada_openai"]["acc"] is None and per_model["lambada_openai"]["n"] == 0
    acc, acc_norm = piqa_by_hand(model_dirs["sink1"], LIMIT)
    assert results[models[0]]["piqa"]["acc"] == acc
    assert results[models[0]]["piqa"]["acc_norm"] == acc_norm

    table = (out / "table.md").read_text().splitlines()
    assert table[0] == f"| task | n | {models[0]} | {models[1]} |"
    assert [row.split("|")[1].strip() for row in table[2:5]] == ["ARC-e", "LAMBADA", "PIQA"]  # Table 4's order
    assert table[3].count("not available offline") == 2
    assert f"{100 * results[models[0]]['piqa']['acc']:.1f}" in table[4]
    text = "\n".join(table)
    assert f"first {LIMIT} examples" in text and "ARC-e: scored on the validation split" in text

    run = json.loads((out / "run.json").read_text())
    assert run["splits"] == {"piqa": "validation", "arc_easy": "validation", "lambada_openai": None}
    assert run["models"] == {m: {"spec": m, "kind": "folder", "location": str(Path(m).resolve())} for m in models}
    # The task YAMLs written for lm-eval keep its own config and replace only the data source.
    piqa_yaml = (out / "tasks" / "piqa.yaml").read_text()
    assert "lm_eval/tasks/piqa/piqa.yaml" in piqa_yaml and "doc_to_text" not in piqa_yaml

    # Run again into the same folder: refused, the first run's results as they were; --overwrite replaces them.
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    again = ["zeroshot", models[1], "--tasks", "piqa", "--limit", "2", "--data-dir", str(SAMPLE), "--out", str(out)]
    assert main(again) == 2
    assert "exists and is not empty; pass --overwrite" in capfd.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert main([*again, "--overwrite"]) == 0
    assert json.loads((out / "results.json").read_text())[models[1]]["piqa"]["n"] == 2
    assert list(json.loads((out / "results.json").read_text())) == [models[1]]
