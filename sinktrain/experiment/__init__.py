"""The experiment stage: one command runs the whole study (data -> train variants -> export -> stream-eval ->
report), each stage through its own public entry."""

from sinktrain.experiment.config import ExperimentConfig, load_experiment
from sinktrain.experiment.run import run_experiment

__all__ = ["ExperimentConfig", "load_experiment", "run_experiment"]
