"""The experiment stage: one command runs the whole study (data -> train variants -> export -> stream-eval ->
report), each stage through its own public entry.

Names load from their submodules on first use (sinktrain/util/lazy.py): importing the package, or only its config,
loads no torch or transformers.
"""

from __future__ import annotations

from sinktrain.util.lazy import lazy_exports

_EXPORTS = {
    "ExperimentConfig": "config",
    "load_experiment": "config",
    "run_experiment": "run",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = sorted(_EXPORTS)
