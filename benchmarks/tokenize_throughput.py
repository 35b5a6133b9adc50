"""Tokenization throughput of `sinktrain data prepare` on a real corpus; prints one JSON object.

    python benchmarks/tokenize_throughput.py [--corpus ../shared/data/corpus] [--num-workers 0]
        [--txt-documents paragraphs] [--profile]

Runs the whole prepare pipeline (read + decompress + tokenize + pack + write shards) into a temporary
directory and reports MB of UTF-8 text per second and tokens per second, wall clock. The corpus's .txt.gz
files are concatenated documentation dumps, so a paragraph is the natural document there.

--profile (in process only) also reads a clock before and after every `encode_batch_fast` call of the pipeline
(no profiler, so the Python parts run at their normal speed) and reports their share of the pipeline's time; the
rest is reading, gunzip, turning the encodings into arrays, packing and writing.
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


class TimedTokenizer:
    """The pipeline's tokenizer, with its `encode_batch_fast` calls timed into `clock`."""

    def __init__(self, tokenizer, clock: dict):
        self.tokenizer, self.clock = tokenizer, clock

    def encode_batch_fast(self, texts, **kwargs):
        start = time.perf_counter()
        try:
            return self.tokenizer.encode_batch_fast(texts, **kwargs)
        finally:
            self.clock["seconds"] += time.perf_counter() - start
            self.clock["calls"] += 1

    def __getattr__(self, name):  # everything else is the tokenizer's own
        return getattr(self.tokenizer, name)


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
    parser.add_argument("--profile", action="store_true", help="also the share of time inside encode_batch_fast")
    args = parser.parse_args()
    if args.profile and args.num_workers:
        parser.error("--profile times the in-process pipeline; pass --num-workers 0")
    try:  # a missing corpus: one line now, not a traceback from prepare
        resolve_source(args.corpus)
    except (FileNotFoundError, ValueError) as e:
        parser.error(f"--corpus: {e}")

    from sinktrain.data import PrepareConfig, prepare, preparation, read_manifest
    from sinktrain.data.preparation import LAST_RUN_STATS

    clock = {"seconds": 0.0, "calls": 0}
    untimed = preparation.encode_batch
    if args.profile:
        preparation.encode_batch = lambda tokenizer, texts: untimed(TimedTokenizer(tokenizer, clock), texts)
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
    if args.profile:
        if clock["calls"] == 0:
            raise SystemExit("the pipeline never called encode_batch_fast (has sinktrain.data.preparation changed?)")
        result.update(encode_batch_fast_calls=clock["calls"], encode_batch_fast_seconds=round(clock["seconds"], 2),
                      encode_batch_fast_share=round(clock["seconds"] / stats["seconds"], 3))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
