"""Write the bundled zero-shot sample: the first ROWS validation examples of each local task copy, in the same
`datasets.save_to_disk` layout, so `--data-dir data/zeroshot` works on a fresh checkout (tests, the demo).

    python data/zeroshot/make_sample.py ../shared/data/zeroshot data/zeroshot 50
"""

import sys
from pathlib import Path

from datasets import load_from_disk

FOLDERS = ["ai2_arc/ARC-Challenge/validation", "ai2_arc/ARC-Easy/validation", "hellaswag/none/validation",
           "openbookqa/main/validation", "piqa/plain_text/validation", "winogrande/winogrande_xl/validation"]


def main(src: str, dst: str, rows: int) -> None:
    for rel in FOLDERS:
        ds = load_from_disk(str(Path(src) / rel))
        ds.select(range(min(rows, len(ds)))).save_to_disk(str(Path(dst) / rel))
        print(f"{rel}: {min(rows, len(ds))} of {len(ds)} rows")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
