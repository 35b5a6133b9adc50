"""Argument types shared by the benchmark scripts: argparse turns the ArgumentTypeError of a bad value into one
error line and exit status 2, before any work starts."""

from __future__ import annotations

import argparse


def int_at_least(low: int):
    """An int >= `low`, e.g. `type=int_at_least(1)`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def int_list(low: int = 1, allow_empty: bool = False):
    """A comma list of ints >= `low` ("256,512" -> [256, 512]), e.g. `type=int_list(1)`."""
    one = int_at_least(low)

    def parse(text: str) -> list[int]:
        values = [one(x.strip()) for x in text.split(",") if x.strip()]
        if not values and not allow_empty:
            raise argparse.ArgumentTypeError(f"expected a comma list of integers >= {low}, got {text!r}")
        return values

    return parse


def torch_device(text: str) -> str:
    """A device torch can name and this machine has ("cpu", "cuda", "cuda:0")."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError as e:
        raise argparse.ArgumentTypeError(str(e).splitlines()[0]) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available here")
    return text
