"""Package namespaces that import their submodules on first use (PEP 562).

A stage package exports its public names (`from sinktrain.stream import parallel_nll`), but importing them all up
front costs seconds: torch, transformers and Lightning load with them. A verb's `--help`, and a config refused
before anything runs, need only the stage's config module. So a package lists which submodule holds each name,
and a name's submodule is imported the first time the name is read.
"""

from __future__ import annotations

import importlib


def lazy_exports(namespace: dict, exports: dict[str, str]):
    """`(__getattr__, __dir__)` for the package whose globals are `namespace`: `exports` maps each name to the
    submodule that holds it, relative to the package (e.g. {"parallel_nll": "parallel"}). A name is looked up
    once; the package keeps it as an attribute afterwards. No name may also be a submodule's name: importing that
    submodule sets the package's attribute to the module (tests/test_lazy_packages.py checks it)."""
    package = namespace["__name__"]

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
