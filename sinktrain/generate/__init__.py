"""Streaming generation with a sink cache: `sinktrain generate`, `chat` and `streameval` (StreamingLLM §4.3)."""
