"""How many examples each zero-shot task's local copy holds (the split `sinktrain zeroshot --data-dir` scores when
no --limit cuts it), read from the copies as sinktrain finds them; prints one JSON object.

    python benchmarks/zeroshot_split_sizes.py [--data-dir ../shared/data/zeroshot]      # a few seconds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "zeroshot"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA), help="a folder laid out as docs/zeroshot.md says")
    args = ap.parse_args()
    if not Path(args.data_dir).is_dir():
        ap.error(f"--data-dir {args.data_dir}: no such folder")
    from datasets import Dataset, concatenate_datasets

    from sinktrain.zeroshot.tasks import TASKS, local_split

    sizes = {}
    for task, info in TASKS.items():
        found = local_split(args.data_dir, task)
        if found is None:
            sizes[task] = {"split": None, "examples": 0, "note": "no local copy"}
            continue
        split, arrows = found
        rows = len(concatenate_datasets([Dataset.from_file(str(a)) for a in arrows]))
        sizes[task] = {"split": split, "examples": rows, "split_scored_online": info.split}
    print(json.dumps({"data_dir": args.data_dir, "tasks": sizes}, indent=2))


if __name__ == "__main__":
    main()
