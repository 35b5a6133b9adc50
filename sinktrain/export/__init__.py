"""The export stage: a training checkpoint -> a Hugging Face folder (safetensors, config with a `sinktrain`
block, tokenizer with the sink tokens, model card), and an optional push to the hub.

Names load from their submodules on first use (sinktrain/util/lazy.py): importing the package, or only its config,
loads no torch or transformers.
"""

from __future__ import annotations

from sinktrain.util.lazy import lazy_exports

_EXPORTS = {
    "ExportConfig": "config",
    "export_checkpoint": "folder",
    "export_every": "folder",
    "step_branch": "folder",
    "PushError": "hub",
    "push_folder": "hub",
    "read_metrics": "model_card",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
__all__ = sorted(_EXPORTS)
