"""Model configuration: Pythia presets and the sink variant (`sinktrain.model` exports these names too).

The sink variant is decided here, once, and travels with every artifact (data sizing, training,
export metadata, streaming evaluation). This module sits beside `sinktrain/model/` rather than in it because
importing `sinktrain.model` registers the sink architecture with transformers' Auto classes, which loads
transformers' modeling code (~5 s on 2 cores), and a training config (`sinktrain train --help`, a refused
`--set`) needs none of that.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from sinktrain.config_io import NonNegativeInt, PositiveFloat, PositiveInt, Probability, configclass

# GPT-NeoX-20B / Pythia tokenizer: 50,277 entries; the embedding is padded to 50,304 rows, so rows
# 50277..50303 are never produced by the tokenizer. Learnable sink tokens take their ids from there.
PYTHIA_TOKENIZER_VOCAB = 50277
PYTHIA_PADDED_VOCAB = 50304

SINK_KINDS = ("none", "token", "softmax1", "logit")


@dataclass(frozen=True)
class Preset:
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    max_seq_len: int = 2048
    vocab_size: int = PYTHIA_PADDED_VOCAB


# Pythia's published architectures (EleutherAI/pythia, models/*.yml); "tiny" is ours, for tests.
PRESETS: dict[str, Preset] = {
    "tiny": Preset(num_layers=2, hidden_size=64, num_heads=4, intermediate_size=256, max_seq_len=512),
    "pythia-14m": Preset(6, 128, 4, 512),
    "pythia-31m": Preset(6, 256, 8, 1024),
    "pythia-70m": Preset(6, 512, 8, 2048),
    "pythia-160m": Preset(12, 768, 12, 3072),
    "pythia-410m": Preset(24, 1024, 16, 4096),
}


class ConfigError(ValueError):
    """A configuration value is wrong; the message says which and how to fix it."""


@configclass("model.sink")
class SinkConfig:
    """Which attention-sink mechanism the model uses.

    kind:
      none      vanilla GPT-NeoX.
      token     the paper's learnable sink: `num_tokens` dedicated ids prepended to every sample.
      softmax1  the paper's Zero Sink: exp(x_i) / (1 + sum_j exp(x_j)).
      logit     gpt-oss style: one learned logit per head per layer as an extra, value-less softmax column.
    num_tokens: how many sink tokens (only for kind=token).
    token_ids:  explicit ids for the sink tokens; default: the first free padded rows.
    """

    kind: str = "none"
    """none | token | softmax1 | logit."""
    num_tokens: NonNegativeInt = 0
    """How many sink tokens (kind=token only)."""
    token_ids: list[NonNegativeInt] | None = None
    """Explicit ids for the sink tokens; default: the first free padded embedding rows."""

    def __post_init__(self):
        if self.kind not in SINK_KINDS:
            raise ConfigError(f"unknown sink kind {self.kind!r}; choose one of {', '.join(SINK_KINDS)}")
        if self.kind == "token":
            if self.num_tokens == 0 and self.token_ids:
                self.num_tokens = len(self.token_ids)
            if self.num_tokens < 1:
                raise ConfigError("sink kind 'token' needs num_tokens >= 1 (e.g. sink: {kind: token, num_tokens: 1})")
        elif self.num_tokens or self.token_ids:
            raise ConfigError(
                f"sink kind {self.kind!r} takes no sink tokens; set num_tokens: 0 or use kind: token"
            )
        if self.token_ids is not None and len(self.token_ids) != self.num_tokens:
            raise ConfigError(
                f"sink token_ids has {len(self.token_ids)} ids but num_tokens is {self.num_tokens}; make them agree"
            )


@configclass("model")
class ModelConfig:
    """A Pythia-family model: a preset plus the sink variant."""

    preset: str = "tiny"
    """tiny, pythia-14m, -31m, -70m, -160m or -410m."""
    sink: SinkConfig = field(default_factory=SinkConfig)
    """The attention-sink variant."""
    tokenizer_vocab_size: PositiveInt = PYTHIA_TOKENIZER_VOCAB
    """How many ids the tokenizer produces; embedding rows >= this are free for sink tokens."""
    max_seq_len: PositiveInt | None = None
    """Training sequence length including sink tokens; None: the preset's context (2048)."""
    rotary_pct: Probability = 0.25
    """Fraction of each head's dimensions that get rotary embeddings."""
    rotary_base: PositiveFloat = 10000.0
    """Rotary embedding base (theta)."""

    def __post_init__(self):
        if isinstance(self.sink, dict):
            self.sink = SinkConfig(**self.sink)
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.tokenizer_vocab_size > self.arch.vocab_size:
            raise ConfigError(
                f"tokenizer has {self.tokenizer_vocab_size} ids but preset {self.preset!r} has only "
                f"{self.arch.vocab_size} embedding rows; use a smaller tokenizer or a larger vocab"
            )
        self.sink_token_ids  # validates the sink ids eagerly

    @property
    def arch(self) -> Preset:
        return PRESETS[self.preset]

    @property
    def seq_len(self) -> int:
        return self.max_seq_len or self.arch.max_seq_len

    @property
    def num_sink_tokens(self) -> int:
        return self.sink.num_tokens if self.sink.kind == "token" else 0

    @property
    def sink_token_ids(self) -> list[int]:
        """Ids of the learnable sink tokens (empty unless kind == 'token')."""
        if self.sink.kind != "token":
            return []
        free = list(range(self.tokenizer_vocab_size, self.arch.vocab_size))
        if self.sink.token_ids is None:
            if self.sink.num_tokens > len(free):
                raise ConfigError(
                    f"{self.sink.num_tokens} sink tokens requested but only {len(free)} padded embedding rows "
                    f"({free[0] if free else '-'}..{self.arch.vocab_size - 1}) are free of tokenizer ids; "
                    f"ask for at most {len(free)} sink tokens"
                )
            return free[: self.sink.num_tokens]
        bad = [i for i in self.sink.token_ids if i not in free]
        if bad:
            raise ConfigError(
                f"sink token ids {bad} are not free padded rows: the tokenizer produces ids < "
                f"{self.tokenizer_vocab_size} and the embedding has {self.arch.vocab_size} rows; choose ids in "
                f"{self.tokenizer_vocab_size}..{self.arch.vocab_size - 1}"
            )
        if len(set(self.sink.token_ids)) != len(self.sink.token_ids):
            raise ConfigError(f"sink token ids {self.sink.token_ids} repeat an id; give distinct ids")
        return list(self.sink.token_ids)

    @property
    def init_std(self) -> float:
        """Pythia small_init: sqrt(2 / (5 d))."""
        return math.sqrt(2.0 / (5.0 * self.arch.hidden_size))

    @property
    def output_init_std(self) -> float:
        """Pythia wang_init for attention-out and MLP-out: 2 / (L sqrt(d))."""
        return 2.0 / (self.arch.num_layers * math.sqrt(self.arch.hidden_size))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        from sinktrain.config_io import build_dataclass

        return build_dataclass(cls, d, where="model")
