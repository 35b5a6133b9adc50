"""The study report describes each variant from what its run actually trained with (its config.yaml)."""

import json
from pathlib import Path

import yaml

from sinktrain.experiment.config import ExperimentConfig
from sinktrain.experiment.report import write_report
from sinktrain.train import load_train_config

REPO = Path(__file__).resolve().parents[2]


def test_report_reads_each_runs_config_yaml(tmp_path):
    recipe = REPO / "recipes/tiny-cpu.yaml"  # the study says: tiny preset, no sink
    cfg = ExperimentConfig(name="r", recipe=str(recipe), variants={"a": {}}, data={"dir": str(tmp_path / "data")},
                           stream={"text": "book.txt", "cache": 32, "sinks": [0, 1]}, runs_dir=str(tmp_path))
    cfg.root.mkdir(parents=True)
    run = tmp_path / "run-a"  # ... but the run trained another model (the recipe changed since, or overrides)
    run.mkdir()
    trained = load_train_config(recipe, ["model.preset=pythia-14m", "model.sink={kind: token, num_tokens: 2}"])
    (run / "config.yaml").write_text(yaml.safe_dump(trained.to_dict()))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 5, "loss": 3.5, "val_loss": 3.75}) + "\n")
    results = {"a": {"0+32": {"ppl": 10.0}, "1+31": {"ppl": 9.5}}}

    report = write_report(cfg, results, {"a": run}).read_text()
    assert "| a | pythia-14m | token x2 | 5 of 20 | 3.5000 | 3.7500 | - |" in report  # tiny-cpu.yaml: 20 steps
    assert "| a | 10.00 | 9.50 |" in report and "Streaming perplexity on `book.txt`" in report
    assert json.loads((cfg.root / "report.json").read_text()) == results
    assert "schedule changed" not in report
    (run / "run.json").write_text(json.dumps({"schedule_changes": [
        {"at_step": 3, "changes": ["trainer.max_steps 3 -> 5", "schedule.total_steps 3 -> 5"]}]}))
    report = write_report(cfg, results, {"a": run}).read_text()
    assert ("Schedule changed during training (learning rate, steps or grad_clip): `a` resumed at step 3 with "
            "trainer.max_steps 3 -> 5, schedule.total_steps 3 -> 5. Those weights differ from a run trained straight"
            ) in report
    # the study's relative paths (book.txt here) hold only from the folder it ran in: the report names it
    assert f"sinktrain experiment {cfg.root / 'experiment.yaml'}\n```\n\nfrom `{Path.cwd()}`, the folder" in report


def test_read_metrics_takes_a_run_folder_or_a_copy_of_its_metrics_file(tmp_path):
    from sinktrain.export import read_metrics

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": 0, "sink_score": [0.01, 0.02]}, {"step": 50, "loss": 6.4, "val_loss": 6.5}]
    # A kill can cut the last line short; a line that is not a metrics row is not one either.
    text = "".join(json.dumps(r) + "\n" for r in rows) + '["not", "a", "row"]\n{"step": 100, "lo'
    (run / "metrics.jsonl").write_text(text)
    copy = tmp_path / "sink.jsonl"  # as benchmarks/gpu_sink_emergence.sh brings it back from a GPU machine
    copy.write_text(text)

    assert read_metrics(run) == rows
    assert read_metrics(copy) == rows
    assert read_metrics(tmp_path / "missing") == [] and read_metrics(None) == []


def test_report_marks_a_variant_stopped_early_and_leaves_missing_losses_blank(tmp_path):
    recipe = REPO / "recipes/tiny-cpu.yaml"
    cfg = ExperimentConfig(name="r", recipe=str(recipe), variants={"done": {}, "short": {}},
                           data={"dir": str(tmp_path / "data")}, stream={"text": "book.txt", "cache": 32, "sinks": [0]},
                           runs_dir=str(tmp_path))
    cfg.root.mkdir(parents=True)
    runs = {}
    probe = {"sink_score": [0.5], "sink_dependence": 0.25}
    for name, rows in (("done", [{"step": 0, **probe}, {"step": 20, "loss": 2.5, "val_loss": 2.75, **probe}]),
                       ("short", [{"step": 0, "sink_score": [0.1]}, {"step": 1, "loss": 9.25}])):  # max_time spent
        run = runs[name] = tmp_path / f"run-{name}"
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump(load_train_config(recipe).to_dict()))
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    report = write_report(cfg, {"done": {"0+32": {"ppl": 1.0}}, "short": {"0+32": {"ppl": 2.0}}}, runs).read_text()
    assert "| done | tiny | none | 20 | 2.5000 | 2.7500 | 0.2500 |" in report
    assert "| short | tiny | none | 1 of 20 | 9.2500 | - | - |" in report
    assert "![sink dependence](sink_dependence.png)" in report and (cfg.root / "sink_dependence.png").stat().st_size


def test_first_token_attention_gives_the_cost_of_hiding_the_first_tokens(tmp_path):
    from sinktrain.experiment.report import first_token_attention

    stats = tmp_path / "attention_stats.json"
    stats.write_text(json.dumps({
        "smollm2": {"first_k": 4, "tokens": 64, "per_layer": [0.2, 0.8], "hidden": 1, "sink_dependence": 1.5714},
        "other": {"first_k": 4, "tokens": 64, "per_layer": [0.1, 0.1], "hidden": 1, "sink_dependence": None}}))
    lines = first_token_attention(stats)
    assert "| smollm2 | 2 | 50.0% | 80.0% (layer 1) | +1.571 nats (1 hidden) |" in lines
    assert "| other | 2 | 10.0% | 10.0% (layer 0) | - |" in lines
