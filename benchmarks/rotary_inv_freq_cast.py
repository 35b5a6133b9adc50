"""How far off the rotary angles of a Pythia model are when its `inv_freq` buffer is cast to bf16 or fp16, as
DeepSpeed before 0.19.2 did when it cast the module (pyproject pins deepspeed>=0.19.2): the largest |angle error|
over the positions of the training context, against the fp32 buffer the export keeps. Prints one JSON object.

    python benchmarks/rotary_inv_freq_cast.py [--preset pythia-160m]      # about 5 s

The buffer comes from the model's own rotary module (transformers' GPTNeoXRotaryEmbedding built from sinktrain's
config: rotary_pct 0.25 of each head, base 10,000). transformers turns the buffer back to fp32 before it multiplies
by the positions, so a cast buffer's error is position x (cast value - fp32 value), computed here in float64.
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding

from sinktrain.model import ModelConfig
from sinktrain.model_config import PRESETS
from sinktrain.model.modeling import hf_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="pythia-160m", choices=list(PRESETS))
    args = ap.parse_args()
    cfg = ModelConfig(preset=args.preset)
    inv_freq = GPTNeoXRotaryEmbedding(hf_config(cfg)).inv_freq  # fp32, as the export holds it
    positions = torch.arange(cfg.seq_len, dtype=torch.float64)[:, None]
    result = {"preset": args.preset, "positions": cfg.seq_len, "rotary_dims": 2 * inv_freq.numel(),
              "rotary_base": cfg.rotary_base, "max_abs_angle_error_rad": {}}
    for dtype in (torch.bfloat16, torch.float16):
        error = positions * (inv_freq.to(dtype).double() - inv_freq.double())
        worst = error.abs().argmax().item()
        p, i = divmod(worst, inv_freq.numel())
        result["max_abs_angle_error_rad"][str(dtype).removeprefix("torch.")] = {
            "radians": round(error.abs().max().item(), 4), "position": p, "inv_freq_index": i}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
