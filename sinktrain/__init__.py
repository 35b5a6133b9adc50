"""sinktrain: pretrain language models with and without learnable attention-sink tokens, and measure
what that does to streaming (StreamingLLM) inference.

Stages, one subpackage each, joined by artifacts on disk: data -> train -> export -> stream.
Importing `sinktrain.model` registers the sink attention variants with transformers.
"""

__version__ = "0.1.0"
