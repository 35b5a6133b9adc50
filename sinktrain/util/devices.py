"""The weight dtypes and devices a verb may ask for, checked before anything loads (here, not in
`sinktrain.model.source`, so that the verbs' configs and `--help` load without transformers)."""

from __future__ import annotations


# The weight dtypes `load_pretrained` takes (by name); every verb that loads a model checks its --dtype against them.
DTYPES = ("float32", "bfloat16", "float16")


def check_device(device: str) -> None:
    """Refuse, before anything loads, a --device torch cannot use here (a typo, CUDA on a CPU-only build, a
    GPU index past the last one): each would otherwise end in a traceback after the model was read."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device; pass cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}); "
                             f"use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA GPU(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: the MPS backend is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device!r}: sinktrain runs on cpu, cuda or mps")
