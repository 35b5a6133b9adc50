"""The model stage: Pythia presets, sink variants, and the transformers models that implement them.

This is the one stage every other stage may import.
"""

from sinktrain.model_config import PRESETS, ConfigError, ModelConfig, SinkConfig
from sinktrain.model.modeling import (
    SinkGPTNeoXConfig,
    SinkGPTNeoXForCausalLM,
    build_model,
    compile_blocks,
    count_parameters,
    hf_config,
    init_pythia_weights,
    lm_labels,
    prepend_sink_tokens,
    save_model,
)

__all__ = [
    "PRESETS",
    "ConfigError",
    "ModelConfig",
    "SinkConfig",
    "SinkGPTNeoXConfig",
    "SinkGPTNeoXForCausalLM",
    "build_model",
    "compile_blocks",
    "count_parameters",
    "hf_config",
    "init_pythia_weights",
    "lm_labels",
    "prepend_sink_tokens",
    "save_model",
]
