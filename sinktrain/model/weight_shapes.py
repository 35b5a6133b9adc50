"""Whether a model folder's weights have the sizes its config.json calls for, read from the safetensors headers and
a model built on the meta device (nothing allocated, no weight read): a config.json from another model, or weights
cut to another vocabulary, fail in one line before the weights load (transformers prints its load report and a
RuntimeError), and zeroshot refuses them before it scores the first model."""

from __future__ import annotations

import math
import warnings
from pathlib import Path


def weight_shape_mismatch(source, config) -> str | None:
    """'KEY is [a, b] in FILE, config.json calls for [c, d]' for the first weight whose size differs from what
    `config` builds; None when all agree or nothing can be compared (not a folder, a quantized checkpoint)."""
    import torch
    from safetensors import safe_open

    from sinktrain.model.source import auto_model_class

    if source.kind != "folder" or getattr(config, "quantization_config", None) is not None:
        return None  # (a quantized checkpoint packs its weights into other shapes)
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ("Initializing zero-element tensors is a no-op", for a size of 0)
            model = auto_model_class(config).from_config(config)
    except Exception:  # whatever keeps the model from being built, the loader reports in its own words
        return None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    for path in sorted(Path(source.location).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for name in f.keys():
                have, want = tuple(f.get_slice(name).get_shape()), expected.get(name)
                # Element counts, not shapes: transformers may transpose or reshape a weight as it loads it. A name
                # the model does not have (another prefix, fused experts) is the loader's to map.
                if want is not None and math.prod(have) != math.prod(want):
                    return f"{name} is {list(have)} in {path.name}, config.json calls for {list(want)}"
    return None


def check_weight_shapes(source, config) -> None:
    mismatch = weight_shape_mismatch(source, config)
    if mismatch:
        raise ValueError(f"cannot load model {source.spec!r}: its weights do not fit its config.json ({mismatch}); "
                         f"config.json and the weights come from different models (or one was edited): export the "
                         f"model again, or put back the config.json saved with these weights")
