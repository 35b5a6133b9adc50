"""The decode loop behind `generate`, `chat` and `streameval`: chunked prefill with eviction, then one token
per forward through a sink cache, sampling greedily or with temperature / top-p.

It calls the model's forward directly (not `model.generate`) so that nothing grows with the number of tokens
produced: `generate()` keeps every token id and a 2D attention mask of the whole text, which a million-token
stream does not need. `model.generate(past_key_values=SinkCache(...))` works too and gives the same tokens for
prompts of at most C + 1 tokens (tests/generate/test_sink_cache.py), which both feed in one forward. A longer prompt
differs: generate() feeds it in one forward too, each token attending to every earlier one (positions up to its
length - 1, memory growing with it) before the cache evicts to C, where this loop streams it through the cache
(exactly with prefill_chunk=1, approximately with larger chunks; see `Decoder`).
"""

from __future__ import annotations

from typing import Iterator

import torch

from sinktrain.config_io import NonNegativeFloat, configclass
from sinktrain.generate.config import TopP
from sinktrain.model.decode_attention import decode_attention
from sinktrain.stream.model_info import cache_kwarg


@configclass()
class Sampler:
    """Greedy when temperature == 0; otherwise temperature, then nucleus (top-p) sampling, seeded. The ranges
    are checked on construction, as the verbs' SamplingOptions are."""

    temperature: NonNegativeFloat = 0.0
    top_p: TopP = 1.0
    seed: int = 0

    def __post_init__(self):
        self.generator = None

    def __call__(self, logits: torch.Tensor) -> int:
        """One token id from logits [vocab]."""
        if self.temperature == 0:
            return int(logits.argmax())
        if self.generator is None or self.generator.device != logits.device:
            self.generator = torch.Generator(device=logits.device).manual_seed(self.seed)
        # The largest logit taken out first, in float64: a tiny temperature (1e-40) then sends the others to -inf
        # and the top one to 0, i.e. greedy, where dividing the raw logits overflowed to inf and the softmax to nan.
        logits = logits.double()
        probs = torch.softmax((logits - logits.max()) / self.temperature, dim=-1)
        if self.top_p < 1:
            sorted_p, order = probs.sort(descending=True)
            # Keep the smallest prefix whose mass reaches top_p; the first token always stays (a top_p that
            # underflows to 0 dropped it too, and multinomial met no mass at all).
            drop = sorted_p.cumsum(-1) - sorted_p >= self.top_p
            drop[0] = False
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p.masked_fill(drop, 0.0))
        return int(torch.multinomial(probs, 1, generator=self.generator))


class Decoder:
    """A model and a cache, fed token ids; returns next-token logits. `prefill_chunk`: tokens per forward once
    the cache is full (the first C + 1 tokens always go in one forward; exact StreamingLLM decoding needs 1)."""

    def __init__(self, model, cache, prefill_chunk: int = 64):
        if prefill_chunk < 1:
            raise ValueError(f"--prefill-chunk must be >= 1, got {prefill_chunk}")
        self.model, self.cache, self.prefill_chunk = model, cache, prefill_chunk
        self.kw = cache_kwarg(model)
        self.device = model.get_input_embeddings().weight.device
        self.tokens_seen = 0

    @torch.no_grad()
    def forward(self, ids: list[int]) -> torch.Tensor:
        """Feed `ids` (any length) in chunks with eviction; logits [vocab] after the last one."""
        if not ids:
            raise ValueError("nothing to feed: the prompt is empty")
        i, logits = 0, None
        while i < len(ids):
            room = self.cache.max_chunk()
            free = None if self.cache.capacity is None else self.cache.capacity + 1 - int(self.cache.get_seq_length())
            # Whatever fits without eviction goes at once; past that, chunks of prefill_chunk after make_room.
            size = len(ids) - i if free is None else max(free, min(self.prefill_chunk, room))
            size = min(size, len(ids) - i)
            if free is not None and size > free:
                self.cache.make_room(size)
            chunk = torch.tensor([ids[i : i + size]], dtype=torch.long, device=self.device)
            with decode_attention(self.cache):  # no cuDNN graph build per step while the cache grows
                out = self.model(input_ids=chunk, use_cache=True, logits_to_keep=1, **{self.kw: self.cache})
            logits = out.logits[0, -1]
            i += size
        self.tokens_seen += len(ids)
        return logits

    def stream(self, prompt: list[int], max_new_tokens: int, sampler: Sampler,
               stop_ids: set[int] | None = None) -> Iterator[int]:
        """Feed the prompt, then yield up to max_new_tokens sampled ids, stopping after one in stop_ids.
        The last yielded token is not fed (a chat feeds it in front of the next turn)."""
        logits = self.forward(prompt)
        for k in range(max_new_tokens):
            tok = sampler(logits)
            yield tok
            if stop_ids and tok in stop_ids:
                return
            if k + 1 < max_new_tokens:
                logits = self.forward([tok])
