"""The export stage: a training checkpoint -> a Hugging Face folder (safetensors, config with a `sinktrain`
block, tokenizer with the sink tokens, model card), and an optional push to the hub."""

from sinktrain.export.folder import ExportConfig, export_checkpoint, export_every, step_branch
from sinktrain.export.hub import PushError, push_folder
from sinktrain.export.model_card import read_metrics

__all__ = ["ExportConfig", "PushError", "export_checkpoint", "export_every", "push_folder", "read_metrics",
           "step_branch"]
