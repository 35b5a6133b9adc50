"""StreamEvalConfig: what `sinktrain stream-eval` and `evaluate()` take, and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field

MODES = ("parallel", "reference")
BASELINES = ("dense", "recompute")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class StreamEvalConfig:
    """models: what `sinktrain.model.source` accepts: model folders (sinktrain exports, Pythia, Llama, Mistral,
    Qwen2/3 ...), `.gguf` files, hub ids (owner/name) or zoo names (smollm2-135m-instruct).
    text: 'pg19', 'pg19:first', 'pg19:<i>', a .txt file, a folder of .txt or a glob (see sinktrain.data.longtext).
    cache: C = s + w entries kept after eviction; sinks: the s values to evaluate (w = C - s each), or
    configs: explicit "s+w" names (overrides cache/sinks). tokens: text tokens to read (None: all).
    baselines: extra configurations, "dense" (no eviction) and/or "recompute" (sliding window with
    re-computation over the last C tokens). Window attention is the s = 0 configuration.
    tokenizer: None uses each model's own tokenizer; a spec here replaces it for models that have none, and is
    refused where it disagrees with the model's own. bos: prepend the tokenizer's BOS token to the stream (it
    is then the first cached token, like a sink token, and its successor is not scored)."""

    models: list[str] = field(default_factory=list)
    text: str = "data/books/austen_persuasion.txt"
    cache: int = 1024
    sinks: list[int] = field(default_factory=lambda: [0, 1, 2, 4])
    configs: list[str] | None = None
    tokens: int | None = None
    out: str = "stream-eval"
    mode: str = "parallel"
    baselines: list[str] = field(default_factory=list)
    block_size: int = 1024
    recompute_batch: int = 64
    device: str = "cpu"
    dtype: str = "float32"
    tokenizer: str | None = None
    bos: bool = False
    pg19_dataset: str = "emozilla/pg19-test"
    pg19_split: str = "test"
    first_k: int = 4  # attention statistics: mass on the first k positions
    attention_tokens: int = 64  # tokens of the stream used for attention statistics and maps
    plots: bool = True
    tensorboard: bool = True


def parse_config_name(name: str) -> tuple[int, int]:
    """"4+1020" -> (4, 1020), with a one-sentence error for anything else."""
    parts = name.split("+")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise ValueError(f"configuration {name!r} is not of the form s+w (e.g. 4+1020)")
    s, w = (int(p) for p in parts)
    if s < 0:
        raise ValueError(f"configuration {name!r} has a negative sink count; use s >= 0")
    if w <= 0:
        raise ValueError(f"configuration {name!r} has w = {w} recent tokens; the window must be w >= 1")
    return s, w


def sink_window_pairs(cfg: StreamEvalConfig) -> list[tuple[int, int]]:
    """The (s, w) pairs to evaluate, validated."""
    if cfg.configs:
        return [parse_config_name(c) for c in cfg.configs]
    if cfg.cache < 1:
        raise ValueError(f"cache size must be at least 1, got {cfg.cache}")
    pairs = []
    for s in cfg.sinks:
        if s < 0:
            raise ValueError(f"sink count {s} is negative; use s >= 0")
        if s >= cfg.cache:
            raise ValueError(f"sink count s={s} is not below the cache size C={cfg.cache}; w = C - s must be at least 1")
        pairs.append((s, cfg.cache - s))
    return pairs


def validate(cfg: StreamEvalConfig) -> list[tuple[int, int]]:
    if not cfg.models:
        raise ValueError("no model given; pass at least one HF model folder")
    if cfg.mode not in MODES:
        raise ValueError(f"unknown mode {cfg.mode!r}; choose one of {', '.join(MODES)}")
    bad = [b for b in cfg.baselines if b not in BASELINES]
    if bad:
        raise ValueError(f"unknown baseline(s) {', '.join(bad)}; choose from {', '.join(BASELINES)}")
    if cfg.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {cfg.dtype!r}; choose one of {', '.join(DTYPES)}")
    if cfg.tokens is not None and cfg.tokens < 2:
        raise ValueError(f"tokens must be at least 2, got {cfg.tokens}")
    if cfg.block_size < 1 or cfg.recompute_batch < 1:
        raise ValueError("block_size and recompute_batch must be positive")
    pairs = sink_window_pairs(cfg)
    if not pairs and not cfg.baselines:
        raise ValueError("nothing to evaluate; give sink counts, s+w configurations or baselines")
    return pairs
