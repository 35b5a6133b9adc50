"""Tokenization throughput of `sinktrain data prepare` on a real corpus; prints one JSON object.

    python benchmarks/tokenize_throughput.py [--corpus ../shared/data/corpus] [--num-workers 0]
        [--txt-documents paragraphs]

Runs the whole prepare pipeline (read + decompress + tokenize + pack + write shards) into a temporary
directory and reports MB of UTF-8 text per second and tokens per second, wall clock. The corpus's .txt.gz
files are concatenated documentation dumps, so a paragraph is the natural document there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _args import int_at_least

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus"


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from sinktrain.data.sources import TXT_DOCUMENTS, resolve_source

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="folder, file or glob of text")
    parser.add_argument("--num-workers", type=int_at_least(0), default=0,
                        help="0 = in process (Rust threads); N processes")
    parser.add_argument("--txt-documents", default="paragraphs", choices=list(TXT_DOCUMENTS))
    parser.add_argument("--batch-size", type=int_at_least(1), default=256)
    parser.add_argument("--max-documents", type=int_at_least(1), default=None, help="stop early (for a quick look)")
    args = parser.parse_args()
    try:  # a missing corpus: one line now, not a traceback from prepare
        resolve_source(args.corpus)
    except (FileNotFoundError, ValueError) as e:
        parser.error(f"--corpus: {e}")

    from sinktrain.data import PrepareConfig, prepare, read_manifest
    from sinktrain.data.preparation import LAST_RUN_STATS

    with tempfile.TemporaryDirectory() as tmp:
        cfg = PrepareConfig(sources=[args.corpus], out_dir=tmp, txt_documents=args.txt_documents,
                            num_workers=args.num_workers, batch_size=args.batch_size,
                            max_documents=args.max_documents, progress=True)
        start = time.perf_counter()
        prepare(cfg)
        wall = time.perf_counter() - start
        manifest = read_manifest(tmp)
        stats = dict(LAST_RUN_STATS)
    tokens = sum(s["tokens"] for s in manifest["splits"].values())
    result = {
        "benchmark": "tokenize_throughput",
        "corpus": args.corpus,
        "text_mb": round(stats["text_bytes"] / 1e6, 2),
        "documents": stats["documents"],
        "tokens": tokens,
        "pipeline_seconds": round(stats["seconds"], 2),  # first document read .. last token written
        "mb_per_s": round(stats["mb_per_s"], 3),
        "tokens_per_s": round(stats["tokens_per_s"]),
        "wall_seconds_with_setup": round(wall, 2),  # + tokenizer load and source resolution
        "num_workers": args.num_workers,
        "txt_documents": args.txt_documents,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
