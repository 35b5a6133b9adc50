"""The largest |ΔNLL| between the streaming evaluator's two modes (reference vs parallel) in fp32 on the tiny random
models of tests/stream/test_families.py, as test_parallel_matches_reference runs them (seed 1, a 70-token random
stream, window 16, 0 / 1 / 4 sinks, query block 37, and again in attention chunks of 5 queries), printed as one JSON
object. The test asserts only a bound: 1e-5, or 1e-4 for the Gemma 4 / 3n cases, whose scores reach about the head
width (they agree within 1e-9 in float64: test_gemma4_and_3n_modes_agree_in_float64).

    python benchmarks/stream_family_fp32_gaps.py [--cases gemma4-plain,llama-gqa-tied] [--all]
        # the default cases (the Gemma 4 / 3n ones and one Llama for scale): about 10 s on 2 cores
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
from family_helpers import FAMILY_CASES, VOCAB, family_model  # noqa: E402

DEFAULT_CASES = ["gemma4-shared-kv", "gemma4-plain", "gemma4-multimodal", "gemma3n-altup", "gemma4-unified",
                 "gemma4-unified-multimodal", "llama-gqa-tied"]


def case_list(text: str) -> list[str]:
    cases = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in cases if c not in FAMILY_CASES]
    if unknown or not cases:
        raise argparse.ArgumentTypeError(f"unknown case(s) {unknown or text!r}; the cases are tests/stream/"
                                         "family_helpers.py's FAMILY_CASES")
    return cases


@torch.no_grad()
def max_gaps(case: str) -> dict:
    model = family_model(case, seed=1)
    stream = torch.randint(0, VOCAB, (70,), generator=torch.Generator().manual_seed(0)).numpy()  # random_tokens(70)
    gaps = {}
    for sinks in (0, 1, 4):
        ref = reference_nll(model, stream, sinks, 16)
        for name, chunk in (("", None), (", attn_chunk 5", 5)):
            par = parallel_nll(model, stream, sinks, 16, block_size=37, attn_chunk=chunk)
            gaps[f"{sinks}+16{name}"] = float(np.abs(ref - par).max())
    return gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=case_list, default=DEFAULT_CASES, help="comma list of FAMILY_CASES names")
    ap.add_argument("--all", action="store_true", help="every case of FAMILY_CASES (minutes)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the tests (tests/stream/conftest.py)
    cases = list(FAMILY_CASES) if args.all else args.cases
    gaps = {case: max_gaps(case) for case in cases}
    worst, case = max((max(g.values()), case) for case, g in gaps.items())
    print(json.dumps({"torch": torch.__version__, "dtype": "float32", "max_abs_dnll": gaps,
                      "largest": {"case": case, "max_abs_dnll": worst}}, indent=2))


if __name__ == "__main__":
    main()
