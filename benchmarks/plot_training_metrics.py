"""Loss curves and sink scores of training runs as PNGs (the study report's plots, for runs trained outside
`sinktrain study`, such as benchmarks/gpu_sink_emergence.sh's), and one JSON line per run with its last figures.

    python benchmarks/plot_training_metrics.py vanilla=RUN_DIR sink=RUN_DIR --out DIR     # a few seconds
RUN_DIR is a run folder or a copy of its metrics.jsonl. DIR gets loss.png, sink_score.png and (for runs
that logged it) sink_dependence.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def named_run(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not Path(path).exists():
        raise argparse.ArgumentTypeError(f"expected NAME=RUN_DIR (or NAME=metrics.jsonl) that exists, got {text!r}")
    return name, Path(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=named_run, help="NAME=RUN_DIR or NAME=metrics.jsonl, one per run")
    ap.add_argument("--out", required=True, help="folder for the PNGs")
    args = ap.parse_args()
    from sinktrain.experiment.report import plot_loss_curves, plot_sink_dependence, plot_sink_scores
    from sinktrain.export import read_metrics

    metrics = {name: read_metrics(path) for name, path in args.runs}
    empty = [name for name, rows in metrics.items() if not rows]
    if empty:
        ap.error(f"no metrics rows for {', '.join(empty)}: point at a run folder or its metrics.jsonl")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_loss_curves(metrics, out / "loss.png")
    plot_sink_scores(metrics, out / "sink_score.png")
    plot_sink_dependence(metrics, out / "sink_dependence.png")
    for name, rows in metrics.items():
        val = [r for r in rows if r.get("val_loss") is not None]
        sink = [r for r in rows if r.get("sink_score")]
        print(json.dumps({"run": name, "last_step": rows[-1]["step"],
                          "val_loss": val and {"step": val[-1]["step"], "value": round(val[-1]["val_loss"], 4)},
                          "sink_score": sink and {"step": sink[-1]["step"],
                                                  "per_layer": [round(x, 4) for x in sink[-1]["sink_score"]],
                                                  "dependence": sink[-1].get("sink_dependence")}}))


if __name__ == "__main__":
    main()
