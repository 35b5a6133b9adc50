"""`sinktrain data prepare` (typed config: --config FILE, --set KEY=VALUE, --KEY VALUE) and `sinktrain data info`."""

from __future__ import annotations

import json
import sys

from sinktrain.cli_config import add_config_verb
from sinktrain.verbs import verb_help


def register(sub) -> None:
    from sinktrain.data.preparation import PrepareConfig

    p = sub.add_parser("data", help=verb_help("data"))
    verbs = p.add_subparsers(dest="data_verb", required=True, metavar="SUBVERB")
    add_config_verb(verbs, "prepare", PrepareConfig, run_prepare,
                    help="tokenize sources into <out_dir>/manifest.json + train/val shards")

    info = verbs.add_parser("info", help="print a data directory's manifest summary")
    info.add_argument("data_dir")
    info.set_defaults(func=run_info)


def run_prepare(cfg) -> int:
    from sinktrain.data import prepare

    print(prepare(cfg))
    return 0


def run_info(args) -> int:
    from sinktrain.data import read_manifest

    m = read_manifest(args.data_dir)
    summary = {k: m[k] for k in ("format", "tokenizer", "dtype", "eod_id", "seed", "splits")}
    summary["sources"] = [{k: s[k] for k in ("spec", "kind", "documents", "tokens")} for s in m["sources"]]
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")  # one write: see sinktrain.model_cli.run
    return 0
