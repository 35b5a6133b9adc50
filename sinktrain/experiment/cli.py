"""`sinktrain experiment STUDY.yaml [--runs_dir DIR] [--set KEY=VALUE ...]`: the study file is the config
(`--config STUDY.yaml` works too); its keys are ExperimentConfig's (`sinktrain experiment --help`)."""

from __future__ import annotations

from sinktrain.cli_config import add_config_verb
from sinktrain.verbs import verb_help


def register(sub) -> None:
    from sinktrain.experiment.config import ExperimentConfig

    add_config_verb(sub, "experiment", ExperimentConfig, run, positionals=("config",),
                    help=verb_help("experiment"))


def run(cfg) -> int:
    from sinktrain.experiment import run_experiment

    cfg.validate()
    report = run_experiment(cfg)
    if report is not None:
        print(f"report: {report}")
    return 0
