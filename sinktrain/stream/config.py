"""StreamEvalConfig: what `sinktrain stream-eval` and `evaluate()` take, and its validation."""

from __future__ import annotations

from dataclasses import field, fields
from typing import Annotated

from sinktrain.config_io import NonNegativeInt, PositiveInt, Range, configclass
from sinktrain.util.devices import DTYPES, check_device
from sinktrain.util.outputs import check_out_dir


def check_sizes(sinks: int, window: int | None) -> None:
    """One line for a cache that cannot stream (see the CLI's bad-input rules)."""
    if sinks < 0:
        raise ValueError(f"--sinks must be >= 0, got {sinks}")
    if window is not None and window < 1:
        raise ValueError(
            f"the cache ({sinks + window} entries) must be larger than the sink count ({sinks}); "
            f"raise --cache above --sinks"
        )


MODES = ("parallel", "reference")
BASELINES = ("dense", "recompute")
# What an earlier stream-eval folder holds, finished or left by a version before staging: its per-configuration
# NLLs. Not results.json: zeroshot and streameval write one too, and --overwrite must not replace their outputs.
OUT_MARKERS = ("nll/",)
# Every name stream-eval writes at the top of its folder (evaluation.py, report.py).
OWN_NAMES = ("results.json", "run.json", "attention_stats.json", "table.md", "table.csv", "log_ppl.png",
             "sink_attention.png", "attention_maps_*.png", "nll", "tb")


@configclass()
class StreamEvalConfig:
    """Streaming (StreamingLLM) perplexity of one or more models under caches of s sink + w recent tokens.
    Window attention is the s = 0 configuration."""

    models: list[str] = field(default_factory=list)
    """Models: folders (sinktrain exports, Pythia, Llama, Mistral, Qwen2/3 ...), .gguf files, hub ids (owner/name)
    or zoo names (smollm2-135m-instruct)."""
    text: str = "data/books/austen_persuasion.txt"
    """Long text: pg19, pg19:first, pg19:<i>, a .txt file, a folder of .txt files or a glob."""
    cache: PositiveInt = 1024
    """Cache size C = s + w entries kept after eviction."""
    sinks: list[NonNegativeInt] = field(default_factory=lambda: [0, 1, 2, 4])
    """Sink counts s to evaluate, e.g. 0,1,2,4 (w = C - s each)."""
    configs: list[str] | None = None
    """Explicit s+w configurations, e.g. [4+1020, 1+1023] (replaces cache and sinks: give neither with it)."""
    tokens: Annotated[int, Range(ge=2)] | None = None
    """Read at most this many text tokens (per tokenizer); None: the whole text."""
    out: str = "stream-eval"
    """Output folder (results.json, table.md, nll/, plots, run.json)."""
    overwrite: bool = False
    """Replace an earlier stream-eval's non-empty out folder (once the new results are complete)."""
    mode: str = "parallel"
    """parallel (exact block-parallel, fast) or reference (a KV cache, one token per forward)."""
    baselines: list[str] = field(default_factory=list)
    """Extra configurations: dense (no eviction) and/or recompute (sliding window with re-computation)."""
    block_size: PositiveInt = 1024
    """Queries per block in parallel mode."""
    recompute_batch: PositiveInt = 64
    """Windows per forward pass in the recompute baseline."""
    device: str = "cpu"
    """Torch device, e.g. cpu or cuda."""
    dtype: str = "float32"
    """float32, bfloat16 or float16 (GGUF weights are dequantized to it)."""
    tokenizer: str | None = None
    """Tokenizer for models stored without one (default: each model's own; one that disagrees is refused)."""
    bos: bool = False
    """Prepend the tokenizer's BOS token to the stream (cached like a sink; its successor is not scored)."""
    pg19_dataset: str = "emozilla/pg19-test"
    """Dataset name or local folder for pg19 texts."""
    pg19_split: str = "test"
    """Split of the pg19 dataset."""
    first_k: PositiveInt = 4
    """Attention statistics: mass on the first k tokens (fewer than attention_tokens)."""
    attention_tokens: PositiveInt = 64
    """Tokens of the stream used for attention statistics and maps."""
    plots: bool = True
    """Write PNG plots."""
    tensorboard: bool = True
    """Write TensorBoard scalars under out/tb."""


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


def default(name: str):
    """StreamEvalConfig's default for field `name`."""
    f = next(f for f in fields(StreamEvalConfig) if f.name == name)
    return f.default_factory() if callable(f.default_factory) else f.default


def sink_window_pairs(cfg: StreamEvalConfig) -> list[tuple[int, int]]:
    """The (s, w) pairs to evaluate, validated, each once (in the order given): a repeated one would be streamed
    again for the same column."""
    if cfg.configs:
        # A changed --cache or --sinks beside --configs would be ignored while run.json recorded it as if used.
        # (A value equal to its default cannot be told from one not given; that one is ignored unsaid.)
        if cfg.cache != default("cache") or list(cfg.sinks) != default("sinks"):
            raise ValueError("--configs replaces --cache and --sinks; drop them")
        return list(dict.fromkeys(parse_config_name(c) for c in cfg.configs))
    if cfg.cache < 1:
        raise ValueError(f"cache size must be at least 1, got {cfg.cache}")
    pairs = []
    for s in cfg.sinks:
        if s < 0:
            raise ValueError(f"sink count {s} is negative; use s >= 0")
        if s >= cfg.cache:
            raise ValueError(f"sink count s={s} is not below the cache size C={cfg.cache}; "
                             f"w = C - s must be at least 1")
        pairs.append((s, cfg.cache - s))
    return list(dict.fromkeys(pairs))


def cache_size(cfg: StreamEvalConfig, pairs: list[tuple[int, int]]) -> int | None:
    """The cache the run holds: the longest s+w (the recompute baseline re-encodes windows of this size too);
    with no s+w configuration, --cache if the recompute baseline runs, else None: a dense-only run keeps no cache,
    so the text need not be longer than one."""
    if pairs:
        return max(s + w for s, w in pairs)
    return cfg.cache if "recompute" in cfg.baselines else None


def check_text(cfg: StreamEvalConfig) -> None:
    """A missing or empty local text, before any model loads. The default is a path inside the repository
    checkout, which an installed sinktrain run elsewhere does not have: say so, not only that it is missing."""
    from sinktrain.data.longtext import check_long_text_source

    try:
        check_long_text_source(cfg.text)
    except FileNotFoundError as e:
        if cfg.text != default("text"):
            raise
        raise FileNotFoundError(f"the default --text {cfg.text!r} (a book in sinktrain's repository, read relative to "
                                f"the current folder) does not exist here; pass --text with a .txt file, a folder of "
                                f"them, a glob or pg19") from e


def check_values(cfg: StreamEvalConfig) -> list[tuple[int, int]]:
    """The checks that read no file and load nothing (each value, and the values together); the (s, w) pairs to
    evaluate. The CLI runs them before the evaluator's imports (torch and transformers, seconds), so a bad value is
    refused at once."""
    if not cfg.models:
        raise ValueError("no model given; pass at least one model (a folder, a .gguf file, a hub id or a zoo name)")
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
    if cfg.first_k >= cfg.attention_tokens:  # the statistics need keys past the first k, or there are none
        raise ValueError(f"--first_k {cfg.first_k} is not below --attention_tokens {cfg.attention_tokens}; the "
                         f"attention statistics need more tokens than k: lower --first_k or raise --attention_tokens")
    pairs = sink_window_pairs(cfg)
    if not pairs and not cfg.baselines:
        raise ValueError("nothing to evaluate; give sink counts, s+w configurations or baselines")
    return pairs


def validate(cfg: StreamEvalConfig) -> list[tuple[int, int]]:
    """Every check before anything loads: `check_values`, the device, then the text and the output folder."""
    pairs = check_values(cfg)
    check_device(cfg.device)  # it imports torch (~2 s)
    check_text(cfg)
    check_out_dir(cfg.out, overwrite=cfg.overwrite, markers=OUT_MARKERS, what="stream-eval output", own=OWN_NAMES,
                  inputs={"model": cfg.models, "--text": cfg.text, "--tokenizer": cfg.tokenizer}, staging="stream-eval")
    return pairs
