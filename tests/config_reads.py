"""Counting how often a model's config is read: the checks read it before anything loads, and the loader must
reuse that reading (a GGUF header takes seconds to parse)."""

from __future__ import annotations


def count_config_reads(monkeypatch) -> list[str]:
    """Every `load_config` call, by model location (the checks and the loader each import it)."""
    import importlib

    source_module = importlib.import_module("sinktrain.model.source")
    # by name: `sinktrain.stream` exports a function called `evaluate`
    evaluate_module = importlib.import_module("sinktrain.stream.evaluation")
    reads, real = [], source_module.load_config

    def counting(source):
        reads.append(source.location)
        return real(source)

    for module in (source_module, evaluate_module):
        monkeypatch.setattr(module, "load_config", counting)
    return reads
