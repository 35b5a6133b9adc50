"""How long a .gguf model takes to load, and where: SmolLM2-135M-Instruct's Q4_1 GGUF (the zoo's), read as
stream-eval reads it (config, then weights dequantized to fp32, then tokenizer), printed as one JSON object.

Each round loads it twice in this process: as sinktrain does (the file parsed once for config, weights and
tokenizer, and gguf's tensor-name table built once: `sinktrain.model.source.gguf_parsed_once`, starting from no
parsed file) and as plain transformers does (three parses of the file, and the table built again at each of the
model's modules). Both loads must give the same logits as the zoo's converted fp32 folder.

    python benchmarks/gguf_load.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import time

import torch

from sinktrain import model_zoo as zoo
from sinktrain.model import source

from _args import int_at_least

NAME = "smollm2-135m-instruct"


def timed_load(gguf: str, parsed_once: bool) -> tuple[dict, torch.nn.Module]:
    spec = source.resolve_model_source(gguf)
    once = source.gguf_parsed_once
    source._GGUF_READER.clear()  # no file parsed yet, as in a fresh process
    if not parsed_once:
        source.gguf_parsed_once = contextlib.nullcontext  # sinktrain's loaders, without the memos
    try:
        t0 = time.perf_counter()
        config = source.load_config(spec)
        t1 = time.perf_counter()
        model = source.load_pretrained(spec, config=config)
        t2 = time.perf_counter()
        source.load_model_tokenizer(spec)
        t3 = time.perf_counter()
    finally:
        source.gguf_parsed_once = once
    return {"config_s": round(t1 - t0, 2), "weights_s": round(t2 - t1, 2), "tokenizer_s": round(t3 - t2, 2),
            "total_s": round(t3 - t0, 2)}, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int_at_least(1), default=2, help="loads of each kind, alternated")
    args = parser.parse_args()

    gguf = str(zoo.gguf_path(NAME))
    folder = source.load_pretrained(source.resolve_model_source(str(zoo.fetch(NAME))))
    ids = torch.arange(100, 164)[None]
    with torch.no_grad():
        expected = folder(input_ids=ids).logits
    rounds = {"sinktrain": [], "transformers": []}
    for _ in range(args.rounds):
        for kind in rounds:
            times, model = timed_load(gguf, parsed_once=kind == "sinktrain")
            with torch.no_grad():
                times["logits_equal_the_folder"] = bool(torch.equal(model(input_ids=ids).logits, expected))
            rounds[kind].append(times)
            del model
    print(json.dumps({
        "benchmark": "gguf_load", "model": NAME, "file_mb": round(os.path.getsize(gguf) / 2**20, 1),
        "date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "rounds": rounds,
    }, indent=1))


if __name__ == "__main__":
    main()
