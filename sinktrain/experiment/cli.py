"""`sinktrain experiment recipes/experiments/<name>.yaml [--runs-dir DIR]`."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("experiment", help="run a whole study: data, train variants, export, stream-eval, report")
    p.add_argument("config", help="study YAML, e.g. recipes/experiments/demo-cpu.yaml")
    p.add_argument("--runs-dir", default=None, help="parent folder of runs/<name> (default: the file's runs_dir, runs)")
    p.set_defaults(func=run)


def run(args) -> int:
    from sinktrain.experiment import load_experiment, run_experiment

    report = run_experiment(load_experiment(args.config, runs_dir=args.runs_dir))
    if report is not None:
        print(f"report: {report}")
    return 0
