"""`sinktrain stream-eval` end to end: artifacts, scored tokens, both modes, PG19 stand-in."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from config_reads import count_config_reads
from stream_helpers import BOOKS, REPO, SINK_ID

from sinktrain.cli import main
from sinktrain.stream import load_model

BOOK = str(REPO / "tests" / "persuasion_opening.txt")  # its first 20,000 characters (test_sources)


def teacher_forced(model, ids) -> np.ndarray:
    ids = torch.as_tensor(np.asarray(ids))
    with torch.no_grad():
        logits = model(input_ids=ids[None], use_cache=False).logits[0].float()
    return F.cross_entropy(logits[:-1], ids[1:], reduction="none").double().numpy()


@pytest.fixture(scope="module")
def run_parallel(model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("stream") / "out"
    rc = main(["stream-eval", str(model_dirs["vanilla"]), str(model_dirs["sinktoken"]), "--text", BOOK,
               "--cache", "24", "--sinks", "0,1,4", "--tokens", "300", "--baselines", "dense,recompute",
               "--out", str(out)])
    assert rc == 0
    return out


def test_results_schema_and_arrays(run_parallel):
    results = json.loads((run_parallel / "results.json").read_text())
    assert set(results) == {"vanilla", "sinktoken"}
    for model, per in results.items():
        assert set(per) == {"0+24", "1+23", "4+20", "dense", "recompute"}
        for config, r in per.items():
            nll = np.load(run_parallel / "nll" / model / f"{config}.npy")
            assert r["tokens"] == len(nll) == 299  # text tokens 1..N-1
            assert r["nll_mean"] == pytest.approx(float(nll.astype(np.float64).mean()), rel=1e-6)
            assert r["ppl"] == pytest.approx(math.exp(r["nll_mean"]), rel=1e-9)
    table = (run_parallel / "table.md").read_text()
    assert "| vanilla |" in table and "4+20" in table
    rows = (run_parallel / "table.csv").read_text().strip().splitlines()
    assert rows[0] == "model,config,ppl,nll_mean,tokens" and len(rows) == 1 + 2 * 5
    for png in ("log_ppl.png", "sink_attention.png", "attention_maps_vanilla.png", "attention_maps_sinktoken.png"):
        assert (run_parallel / png).stat().st_size > 10_000
    stats = json.loads((run_parallel / "attention_stats.json").read_text())
    assert len(stats["vanilla"]["per_layer_head"]) == 2 and len(stats["vanilla"]["per_layer_head"][0]) == 4
    # What hiding the first token (the sink token, which leads the sink model's stream) from the later half costs.
    assert stats["vanilla"]["hidden"] == stats["sinktoken"]["hidden"] == 1
    assert all(isinstance(stats[m]["sink_dependence"], float) for m in ("vanilla", "sinktoken"))


def test_scored_tokens_match_teacher_forcing(run_parallel, model_dirs, tokenizer, monkeypatch):
    text = tokenizer(open(BOOK).read()[:5000], add_special_tokens=False)["input_ids"][:300]
    reads = count_config_reads(monkeypatch)
    vanilla = load_model(str(model_dirs["vanilla"]))
    assert reads == [str(model_dirs["vanilla"])]  # the architecture check's reading is the loader's too
    dense = np.load(run_parallel / "nll" / "vanilla" / "dense.npy")
    assert np.abs(dense - teacher_forced(vanilla, text)).mean() < 1e-4
    # The token-sink model streams [sink] + text; before the first eviction it equals teacher forcing over that.
    sink_model = load_model(str(model_dirs["sinktoken"]))
    expected = teacher_forced(sink_model, [SINK_ID] + text[:24])[1:]  # drop the prediction of text token 0
    got = np.load(run_parallel / "nll" / "sinktoken" / "1+23.npy")
    assert np.abs(got[: len(expected)] - expected).mean() < 1e-4


def test_tensorboard_scalars(run_parallel):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_parallel / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "stream/vanilla/4+20/log_ppl" in tags and "stream/sinktoken/dense/ppl" in tags


def test_reference_mode_cli_agrees_with_parallel(model_dirs, tmp_path):
    common = [str(model_dirs["sinktoken"]), "--text", BOOK, "--cache", "16", "--sinks", "0,1", "--tokens", "140",
              "--plots", "false"]
    assert main(["stream-eval", *common, "--mode", "reference", "--out", str(tmp_path / "ref")]) == 0
    assert main(["stream-eval", *common, "--mode", "parallel", "--out", str(tmp_path / "par")]) == 0
    ref = json.loads((tmp_path / "ref" / "results.json").read_text())["sinktoken"]
    par = json.loads((tmp_path / "par" / "results.json").read_text())["sinktoken"]
    for config in ("0+16", "1+15"):
        a = np.load(tmp_path / "ref" / "nll" / "sinktoken" / f"{config}.npy")
        b = np.load(tmp_path / "par" / "nll" / "sinktoken" / f"{config}.npy")
        assert np.abs(a - b).mean() < 1e-4
        assert ref[config]["tokens"] == par[config]["tokens"] == 139


def test_pg19_stand_in(model_dirs, tmp_path):
    ds = tmp_path / "pg19-standin"
    ds.mkdir()
    books = [open(BOOK).read()[:4000], (BOOKS / "austen_emma.txt").read_text()[:4000]]
    with open(ds / "test.jsonl", "w") as f:
        for i, text in enumerate(books):
            f.write(json.dumps({"short_book_title": f"book{i}", "text": text}) + "\n")
    out = tmp_path / "out"
    assert main(["stream-eval", str(model_dirs["vanilla"]), "--text", "pg19:first", "--pg19-dataset", str(ds),
                 "--cache", "16", "--sinks", "0,4", "--tokens", "100", "--plots", "false", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["text"]["documents"] == ["book0"] and run["text"]["tokens"] == 100
