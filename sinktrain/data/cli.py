"""`sinktrain data prepare` (flags or a YAML) and `sinktrain data info`."""

from __future__ import annotations

import json

# flag -> PrepareConfig field, for flags that take a value
VALUE_FLAGS = {
    "--out": ("out_dir", str, "output data directory"),
    "--tokenizer": ("tokenizer", str, "tokenizer.json, folder or hub name (default: bundled GPT-NeoX-20B)"),
    "--val-fraction": ("val_fraction", float, "fraction of documents for validation (default 0.01)"),
    "--val-documents": ("val_documents", int, "at most this many validation documents"),
    "--seed": ("seed", int, "seed of the train/val assignment (default 1234)"),
    "--text-field": ("text_field", str, "record field with the text (default text)"),
    "--split": ("split", str, "split of hub datasets (default train)"),
    "--hub-config": ("hub_config", str, "config name of hub datasets"),
    "--txt-documents": ("txt_documents", str, "a .txt document is a: file (default) | paragraphs | lines"),
    "--num-workers": ("num_workers", int, "0 = in process (Rust threads); N = N worker processes"),
    "--batch-size": ("batch_size", int, "documents per tokenization batch (default 256)"),
    "--max-documents": ("max_documents", int, "stop after this many documents"),
    "--max-tokens": ("max_tokens", int, "stop after about this many tokens (whole documents)"),
    "--dtype": ("dtype", str, "auto | uint16 | uint32"),
    "--shard-tokens": ("shard_tokens", int, "tokens per shard file"),
}


def register(sub) -> None:
    p = sub.add_parser("data", help="tokenize corpora into packed shards; inspect a data directory")
    verbs = p.add_subparsers(dest="data_verb", required=True, metavar="SUBVERB")

    prep = verbs.add_parser("prepare", help="tokenize sources into <out>/manifest.json + train/val shards")
    prep.add_argument("--config", help="YAML with PrepareConfig keys (flags given here override it)")
    prep.add_argument("--source", action="append", dest="sources", metavar="SRC",
                      help="file, folder, glob, hub:NAME or hub dataset name; repeat for several")
    for flag, (dest, typ, text) in VALUE_FLAGS.items():
        prep.add_argument(flag, dest=dest, type=typ, help=text)
    prep.add_argument("--overwrite", action="store_true", default=None, help="redo an existing data directory")
    prep.add_argument("--quiet", action="store_true", help="no progress lines")
    prep.set_defaults(func=run_prepare)

    info = verbs.add_parser("info", help="print a data directory's manifest summary")
    info.add_argument("data_dir")
    info.set_defaults(func=run_info)


def run_prepare(args) -> int:
    from sinktrain.config_io import build_dataclass, load_yaml
    from sinktrain.data import PrepareConfig, prepare

    values = {}
    if args.config:
        values = load_yaml(args.config)
        if isinstance(values.get("data"), dict) and len(values) == 1:  # a recipe's `data:` block
            values = values["data"]
    for dest in ["sources", "overwrite", *(d for d, _, _ in VALUE_FLAGS.values())]:
        if getattr(args, dest) is not None:
            values[dest] = getattr(args, dest)
    if args.quiet:
        values["progress"] = False
    cfg = build_dataclass(PrepareConfig, values, where=args.config or "data prepare")
    print(prepare(cfg))
    return 0


def run_info(args) -> int:
    from sinktrain.data import read_manifest

    m = read_manifest(args.data_dir)
    summary = {k: m[k] for k in ("format", "tokenizer", "dtype", "eod_id", "seed", "splits")}
    summary["sources"] = [{k: s[k] for k in ("spec", "kind", "documents", "tokens")} for s in m["sources"]]
    print(json.dumps(summary, indent=2))
    return 0
