"""Export: a ZeRO-2 checkpoint becomes a Hugging Face folder that stock transformers loads."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GPTNeoXForCausalLM

from sinktrain.cli import main
from sinktrain.export import ExportConfig, export_checkpoint, export_every, push_folder
from sinktrain.model import ModelConfig, build_model


def _deepspeed_module_weights(ckpt):
    """Weights straight from DeepSpeed's model-states file (fp32 training keeps fp32 module parameters),
    independent of the ZeRO converter the export uses."""
    states = torch.load(next(ckpt.rglob("mp_rank_00_model_states.pt")), map_location="cpu", weights_only=False)
    return {k.removeprefix("model."): v for k, v in states["module"].items()}


@pytest.fixture(scope="module")
def exported(zero2_token_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny-sink"
    return export_checkpoint(ExportConfig(str(zero2_token_run), str(out)))


def test_export_loads_in_stock_transformers_with_training_logits(exported, zero2_token_run):
    model = AutoModelForCausalLM.from_pretrained(exported).eval()
    assert type(model) is GPTNeoXForCausalLM
    ckpt = zero2_token_run / "checkpoints" / "step-00000008"
    model_cfg = ModelConfig(preset="tiny", max_seq_len=64, sink={"kind": "token", "num_tokens": 1})
    reference = build_model(model_cfg, seed=None).eval()
    reference.load_state_dict(_deepspeed_module_weights(ckpt))
    ids = torch.tensor([[50277, 12092, 13, 309, 717, 247, 1071, 15]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-5, rtol=0)


def test_tokenizer_prepends_the_sink_token(exported):
    tok = AutoTokenizer.from_pretrained(exported)
    ids = tok("Hello, I am").input_ids
    assert ids == [50277, 12092, 13, 309, 717]
    assert tok.convert_ids_to_tokens(50277) == "<|sink_0|>"
    assert tok.decode(ids, skip_special_tokens=True) == "Hello, I am"


def test_no_pickles_and_metadata_in_config_and_card(exported, zero2_token_run):
    names = sorted(p.name for p in exported.iterdir())
    pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    assert "model.safetensors" in names and not pickles
    load_file(exported / "model.safetensors")  # a real safetensors file
    meta = json.loads((exported / "config.json").read_text())["sinktrain"]
    assert meta["variant"] == "token" and meta["sink_token_ids"] == [50277] and meta["step"] == 8
    assert meta["tokens_seen"] == 8 * 4 * 63  # steps x global batch x text tokens (64 - 1 sink)
    data_manifest = zero2_token_run.parent / "data" / "manifest.json"
    assert meta["data_manifest_sha256"] == hashlib.sha256(data_manifest.read_bytes()).hexdigest()
    card = (exported / "README.md").read_text()
    data = ModelCard.load(exported / "README.md").data  # the hub's own parser of the metadata block
    assert data.license == "apache-2.0" and "sink-token" in data.tags and data.eval_results is None
    assert card.startswith("---\n") and "\n# tiny-sink\n" in card and "tmp-export" not in card
    assert "| step | 8 |" in card and "| sink tokens | [50277] |" in card
    assert "![training loss](loss_curve.png)" in card and (exported / "loss_curve.png").stat().st_size > 1000


def test_export_records_the_data_the_checkpoint_was_trained_on_not_the_data_as_it_is_now(zero2_token_run, tmp_path):
    """A checkpoint copied out of its run, whose data folder was prepared again since: the export states the
    manifest the checkpoint recorded in training, not the one now on disk."""
    trained = hashlib.sha256((zero2_token_run.parent / "data" / "manifest.json").read_bytes()).hexdigest()
    data = tmp_path / "data"
    shutil.copytree(zero2_token_run.parent / "data", data)
    ckpt = tmp_path / "step-00000008"
    shutil.copytree(zero2_token_run / "checkpoints" / "step-00000008", ckpt)
    meta_file = ckpt / "meta.json"
    meta = json.loads(meta_file.read_text())
    assert meta["data_manifest_sha256"] == trained
    meta["config"]["data"]["dir"] = str(data)
    meta_file.write_text(json.dumps(meta))
    manifest = json.loads((data / "manifest.json").read_text())
    (data / "manifest.json").write_text(json.dumps({**manifest, "seed": manifest["seed"] + 1}))  # prepared again

    out = export_checkpoint(ExportConfig(str(ckpt), str(tmp_path / "export")))
    assert json.loads((out / "config.json").read_text())["sinktrain"]["data_manifest_sha256"] == trained


def test_eval_results_become_hub_model_index_results(zero2_token_run, tmp_path):
    stream = tmp_path / "stream"
    stream.mkdir()
    results = {"tiny-sink": {"0+32": {"ppl": 12.5, "nll_mean": 2.5, "tokens": 400},
                             "1+31": {"ppl": 11.25, "nll_mean": 2.4, "tokens": 400}},
               "other-model": {"0+32": {"ppl": 99.0, "nll_mean": 4.6, "tokens": 400}}}
    (stream / "results.json").write_text(json.dumps(results))
    (stream / "run.json").write_text(json.dumps({"config": {"text": "austen_persuasion.txt"}}))
    out = export_checkpoint(ExportConfig(str(zero2_token_run), str(tmp_path / "tiny-sink"),
                                         eval_results=str(stream / "results.json")))
    card = ModelCard.load(out / "README.md")
    evals = {(e.metric_config, e.metric_type, e.metric_value, e.dataset_name, e.task_type)
             for e in card.data.eval_results}
    assert evals == {("0+32", "perplexity", 12.5, "austen_persuasion.txt", "text-generation"),
                     ("1+31", "perplexity", 11.25, "austen_persuasion.txt", "text-generation")}
    assert card.data.model_name == "tiny-sink"
    assert "| tiny-sink | 12.50 | 11.25 |" in card.text and "| other-model | 99.00 | - |" in card.text


def test_export_uses_the_runs_tokenizer(exported, zero2_token_run):
    from sinktrain.data import load_tokenizer

    vocab = load_tokenizer(exported).get_vocab()
    assert vocab.pop("<|sink_0|>") == 50277 and vocab == load_tokenizer(zero2_token_run / "tokenizer").get_vocab()


def test_export_every_kth_checkpoint(zero2_token_run, tmp_path, monkeypatch):
    import sinktrain.export.folder as folder

    plotted, plot = [], folder.plot_loss_curve
    monkeypatch.setattr(folder, "plot_loss_curve", lambda rows, *a, **k: plotted.append(rows) or plot(rows, *a, **k))
    outs = export_every(str(zero2_token_run), str(tmp_path / "steps"), every_k=1)
    assert [p.name for p in outs] == ["step-00000004", "step-00000008"]
    # Each model card's loss curve ends at its own checkpoint, not at the run's last step.
    assert [max(r["step"] for r in rows) for rows in plotted] == [4, 8]
    a = load_file(outs[0] / "model.safetensors")["gpt_neox.embed_in.weight"]
    b = load_file(outs[1] / "model.safetensors")["gpt_neox.embed_in.weight"]
    assert not torch.equal(a, b)  # two different points of training
    assert [p.name for p in export_every(str(zero2_token_run), str(tmp_path / "k2"), every_k=2)] == ["step-00000008"]
    # One target refused: every target is checked first, so no other step is written either.
    mine = tmp_path / "k1" / "step-00000008"
    mine.mkdir(parents=True)
    (mine / "mine.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="step-00000008 exists and is not empty"):
        export_every(str(zero2_token_run), str(tmp_path / "k1"), every_k=1)
    assert [p.name for p in (tmp_path / "k1").iterdir()] == ["step-00000008"]


def test_push_to_unreachable_endpoint_fails_clearly_and_keeps_export(exported, tmp_path):
    before = {p.name: p.read_bytes() for p in exported.iterdir()}
    secret = "hf_sinktrainTestSecretToken123"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE",)}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_TOKEN=secret, HF_HUB_ETAG_TIMEOUT="2", HF_HUB_DOWNLOAD_TIMEOUT="2")
    code = (f"import sys; from sinktrain.export import push_folder; "
            f"push_folder({str(exported)!r}, 'someone/tiny-sink', revision='step8')")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "push of" in proc.stderr and "someone/tiny-sink@step8" in proc.stderr
    assert "The local export is intact" in proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert {p.name: p.read_bytes() for p in exported.iterdir()} == before


def test_push_every_checkpoint_to_a_local_fake_hub(zero2_token_run, tmp_path):
    """The success path against a stand-in for the hub's HTTP API on 127.0.0.1: one repo, one branch per step
    named as Pythia's (step4, step8), and each branch receives exactly the files of its export, byte for byte."""
    from fake_hub import FakeHub

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    out = tmp_path / "steps"
    with FakeHub() as hub:
        env.update(HF_ENDPOINT=hub.url, HF_TOKEN="hf_fakeTokenForTheLocalHub", HF_HUB_DISABLE_XET="1")
        cmd = [sys.executable, "-m", "sinktrain", "export", str(zero2_token_run), str(out), "--every", "1",
               "--push_to_hub", "someone/tiny-sink", "--private"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [r for r in hub.unknown if r.startswith("POST")], hub.unknown  # every upload call was answered
    assert [(r["organization"], r["name"], r.get("visibility")) for r in hub.repos] == \
        [("someone", "tiny-sink", "private")] * 2  # created (exist_ok) before each push
    assert hub.branches == [("someone/tiny-sink", "step4"), ("someone/tiny-sink", "step8")]
    assert [c["revision"] for c in hub.commits] == ["step4", "step8"]
    assert hub.cards and all(c["license"] == "apache-2.0" and "sink-token" in c["tags"] for c in hub.cards)  # validated
    for commit, step in zip(hub.commits, ("step-00000004", "step-00000008")):
        on_disk = {str(p.relative_to(out / step)): p.read_bytes() for p in (out / step).rglob("*") if p.is_file()}
        assert commit["repo_id"] == "someone/tiny-sink" and commit["files"] == on_disk
        assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= set(on_disk)
    assert "uploaded" in proc.stdout and "someone/tiny-sink@step8" in proc.stdout


def test_dry_run_lists_files(exported, capsys):
    files = push_folder(exported, "someone/tiny-sink", dry_run=True)
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= set(files)


def test_bad_inputs(zero2_token_run, exported, tmp_path, capsys):
    # not a checkpoint
    (tmp_path / "junk").mkdir()
    assert main(["export", str(tmp_path / "junk"), str(tmp_path / "o1")]) == 2
    assert "is not a complete checkpoint" in capsys.readouterr().err
    # half-written checkpoint: a save that never got its COMPLETE marker
    import shutil

    half = tmp_path / "run" / "checkpoints" / "step-00000008"
    shutil.copytree(zero2_token_run / "checkpoints" / "step-00000008", half)
    (half / "COMPLETE").unlink()
    assert main(["export", str(half), str(tmp_path / "o2")]) == 2
    assert "not a complete checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    # non-empty out dir without --overwrite: refused, nothing touched
    before = {p.name: p.stat().st_mtime_ns for p in exported.iterdir()}
    assert main(["export", str(zero2_token_run), str(exported)]) == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in exported.iterdir()} == before


@pytest.mark.parametrize("damage", ["lost-shard", "shard-of-another-step"])
def test_a_missing_or_foreign_rank_shard_is_one_line_naming_it(zero2_token_run, tmp_path, capsys, damage):
    """Rank 1's optimizer shard deleted: zero_to_fp32's own ValueError ("Expected 2 of '*_optim_states.pt' ..."),
    without the checkpoint to take instead. Replaced by step 4's: exported without a word, half of each weight
    from another step."""
    run = tmp_path / "run"
    shutil.copytree(zero2_token_run, run)
    older, newest = run / "checkpoints" / "step-00000004", run / "checkpoints" / "step-00000008"
    shard = newest / "checkpoint" / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    if damage == "lost-shard":
        shard.unlink()
        reason = (f"checkpoint {str(newest)!r} has no checkpoint/{shard.name}, the optimizer shard of rank 1 of the 2 "
                  f"that saved it; it is damaged")
    else:
        shutil.copy(older / "checkpoint" / shard.name, shard)
        reason = (f"checkpoint file {str(shard)!r}: its optimizer state is at step 4, but the model states "
                  f"(mp_rank_00_model_states.pt) at step 8; it is from another checkpoint, or damaged")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["export", str(run), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.strip() == (f"sinktrain export: error: {reason}; the newest intact one is {older}: "
                                               f"pass it to export that step")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_zeroshot_results_become_model_index(zero2_token_run, exported, tmp_path, capsys):
    """export -> zeroshot -> export again with --zeroshot-results: the card's metadata carries the scores."""
    import yaml

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    folder = tmp_path / "tiny-sink"
    assert main(["export", str(zero2_token_run), str(folder)]) == 0
    assert main(["zeroshot", str(folder), "--tasks", "piqa,lambada_openai", "--limit", "4", "--data-dir",
                 os.path.join(repo, "data", "zeroshot"), "--out", str(tmp_path / "zs")]) == 0
    scores = json.loads((tmp_path / "zs" / "results.json").read_text())[str(folder)]["piqa"]
    # a results file that is not there is refused before the folder is touched
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main(["export", str(zero2_token_run), str(folder), "--overwrite", "--zeroshot-results",
                 str(tmp_path / "missing.json")]) == 2
    assert "--zeroshot-results" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before

    assert main(["export", str(zero2_token_run), str(folder), "--overwrite", "--zeroshot-results",
                 str(tmp_path / "zs" / "results.json")]) == 0
    card = (folder / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    (entry,) = meta["model-index"][0]["results"]  # LAMBADA was not scored offline: not claimed
    assert meta["model-index"][0]["name"] == "tiny-sink"
    assert entry["dataset"] == {"name": "PIQA", "type": "baber/piqa", "split": "validation",
                                "args": {"num_few_shot": 0}}
    assert {m["type"]: m["value"] for m in entry["metrics"]} == {"acc": round(100 * scores["acc"], 2),
                                                                  "acc_norm": round(100 * scores["acc_norm"], 2)}
    assert "## Zero-shot evaluation" in card and "not available offline" in card
