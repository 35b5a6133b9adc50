"""`sinktrain info`: print a preset's resolved config and parameter counts.

Beside sinktrain/model/, not in it, as model_config.py is: importing anything in that package imports the package,
which registers the sink architecture with transformers (~5 s), and `info --help` or a refused preset need none of
that."""

from __future__ import annotations

import json
import sys

from sinktrain.verbs import verb_help


def register(sub) -> None:
    p = sub.add_parser("info", help=verb_help("info"))
    p.add_argument("--preset", required=True, help="tiny, pythia-14m, -31m, -70m, -160m, -410m")
    p.add_argument("--sink-kind", default="none", help="none | token | softmax1 | logit")
    p.add_argument("--sink-tokens", type=int, default=None, help="number of sink tokens (kind=token; default 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from sinktrain.model_config import ModelConfig, SinkConfig

    n = args.sink_tokens if args.sink_tokens is not None else (1 if args.sink_kind == "token" else 0)
    cfg = ModelConfig(preset=args.preset, sink=SinkConfig(kind=args.sink_kind, num_tokens=n))  # refused before torch
    import torch

    from sinktrain.model import build_model, count_parameters, hf_config

    with torch.device("meta"):  # counted on the meta device: no memory, no init time, same shapes
        model = build_model(cfg, seed=None)
    counts = count_parameters(model)
    # One write, not a print per line: with Python's stdout unbuffered (PYTHONUNBUFFERED), `| grep -q parameters`
    # stopped reading at its match and the next line's write failed (exit 141 under `set -o pipefail`).
    sys.stdout.write(json.dumps({"model": cfg.to_dict(), "sink_token_ids": cfg.sink_token_ids,
                                 "hf_config": hf_config(cfg).to_diff_dict()}, indent=2)
                     + f"\nparameters: {counts['total']}\nnon_embedding_parameters: {counts['non_embedding']}\n")
    return 0
