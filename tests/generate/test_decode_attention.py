"""Decode forwards run without cuDNN attention while the cache grows and with torch's own choice once it is
full (sinktrain/model/decode_attention.py). cuDNN is a CUDA backend, but its on/off flag is global state that
the CPU can read, so the forwards record it."""

from __future__ import annotations

import numpy as np
import torch
from transformers import DynamicCache
from stream_helpers import tiny

from sinktrain.generate.decode import Decoder
from sinktrain.model.decode_attention import cache_is_full
from sinktrain.stream import reference_nll
from sinktrain.stream.model_info import cache_kwarg
from sinktrain.stream.sink_cache import SinkCache
from sinktrain.stream.static_sink_cache import StaticSinkCache

SINKS, WINDOW = 2, 6  # C = 8


def record_cudnn_flag(model) -> list[bool]:
    """The cuDNN-attention flag as each forward of `model` starts."""
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(torch.backends.cuda.cudnn_sdp_enabled()))
    return seen


def test_cache_is_full_only_at_capacity():
    model = tiny(seed=0)
    kw = cache_kwarg(model)
    assert not cache_is_full(DynamicCache(config=model.config))
    for cache in (SinkCache(model, SINKS, WINDOW), StaticSinkCache(model, SINKS, WINDOW)):
        states = []
        for t in range(10):
            states.append(cache_is_full(cache))
            with torch.no_grad():
                model(input_ids=torch.tensor([[t + 5]]), use_cache=True, **{kw: cache})
        assert states == [False] * 8 + [True] * 2, type(cache).__name__
    dense = SinkCache(model, SINKS, None)  # window None: it never stops growing
    with torch.no_grad():
        model(input_ids=torch.arange(5, 25)[None], use_cache=True, **{kw: dense})
    assert not cache_is_full(dense)


def test_decoder_avoids_cudnn_while_growing():
    model = tiny(seed=0)
    seen = record_cudnn_flag(model)
    decoder = Decoder(model, SinkCache(model, SINKS, WINDOW))
    for t in range(12):
        decoder.forward([t + 5])
    assert seen == [False] * 8 + [True] * 4
    assert torch.backends.cuda.cudnn_sdp_enabled()  # the global flag is back as it was


def test_reference_mode_avoids_cudnn_while_growing():
    model = tiny(seed=0)
    seen = record_cudnn_flag(model)
    nll = reference_nll(model, np.arange(5, 17), SINKS, WINDOW)  # 11 forwards: tokens 0..10
    assert len(nll) == 11
    assert seen == [False] * 8 + [True] * 3
    assert torch.backends.cuda.cudnn_sdp_enabled()
