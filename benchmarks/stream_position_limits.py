"""How far apart the streaming evaluator's two modes land on each side of a position limit: the tiny models of
tests/stream/test_sources.py whose attention changes from position P = 24 on, printed as one JSON object.

For each model, the largest |ΔNLL| between the reference mode (the model's own forwards through a sink cache) and
the parallel mode, 4 sinks, on the tests' 90-token random stream, at a cache of C = 23 (the largest stream-eval
accepts: exact) and C = 24 (refused: the model's own attention changes there and the parallel mode does not
follow). The tests assert only the bounds (<= 1e-5 at C = 23, > 1e-3 at C = 24); this prints the values.

    python benchmarks/stream_position_limits.py      # about 10 s on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from sinktrain.stream import parallel_nll, reference_nll

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "stream"))
from family_helpers import MINISTRAL3_ROPE, VOCAB, family_model  # noqa: E402

SINKS = 4


def models() -> dict:
    """The three tests' models and stream seeds (test_longrope_streams_below_its_original_context,
    test_ministral3_query_scaling_..., test_sparse_attention_top_k_...)."""
    return {
        "phi3_longrope (original_max_position_embeddings 24)":
            (family_model("phi3-longrope", original_max_position_embeddings=24), 3),
        "ministral3 query scaling (original_max_position_embeddings 24)":
            (family_model("ministral3-scaled-queries",
                          rope_parameters={**MINISTRAL3_ROPE, "original_max_position_embeddings": 24}), 2),
        "deepseek_v32 sparse attention (index_topk 24)":
            (family_model("deepseek-v3.2-dsa", index_topk=24, index_n_heads=8), 3),
    }


def max_gap(model, stream: np.ndarray, cache: int, block_size: int = 1024) -> float:
    window = cache - SINKS
    ref = reference_nll(model, stream, SINKS, window)
    return float(np.abs(ref - parallel_nll(model, stream, SINKS, window, block_size=block_size)).max())


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(1)  # as the tests (tests/stream/conftest.py): the rounding then matches theirs
    result = {"torch": torch.__version__, "sinks": SINKS, "stream_tokens": 90, "max_abs_dnll": {}}
    for name, (model, seed) in models().items():
        stream = np.random.default_rng(seed).integers(0, VOCAB, 90)
        result["max_abs_dnll"][name] = {f"C={c}": max_gap(model, stream, c) for c in (23, 24)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    # No options; --help says what it does instead of running it.
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
