"""`sinktrain` console script. Each stage contributes its verbs through `<stage>/cli.py:register(subparsers)`;
a verb only parses arguments and calls the stage's public entry function.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Stages that contribute verbs, in pipeline order. Imported lazily so `sinktrain --help` stays fast.
STAGE_CLIS = [
    "sinktrain.model.cli",
    "sinktrain.data.cli",
    "sinktrain.train.cli",
    "sinktrain.export.cli",
    "sinktrain.stream.cli",
    "sinktrain.generate.cli",
    "sinktrain.experiment.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sinktrain", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for mod in STAGE_CLIS:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):  # stage not built yet: it adds no verb
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as e:
        # Bad input: one clear line, no traceback. SINKTRAIN_DEBUG=1 shows the traceback. OSError covers the
        # file system's own answers (not a directory, permission denied, disk full), which name the path.
        import os

        if os.environ.get("SINKTRAIN_DEBUG"):
            raise
        print(f"sinktrain {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
