"""The sink cache in fixed-size buffers, so a decode step has the same shapes every time (what CUDA graphs
and `torch.compile` need): `StaticSinkCache(model, sinks, window)`.

Each layer holds C + 1 slots (C = s + w): slots 0..s-1 keep the sinks, slots s..C form a ring of w + 1
window entries in which the next token overwrites the oldest one, which is exactly the eviction of
`SinkCache`. Keys are stored un-rotated; each step rotates every slot at its position inside the cache:
a sink at its slot, a window entry at s + (its age rank), so the newest sits at C once the cache is full.
Attention is order-free apart from its mask, so the ring order needs no reshuffling: while the cache fills,
slot == position and the causal mask hides the empty slots; once full, every slot is visible. (DeepSeek sparse
attention's top-k is order-free too, except that it breaks exact ties between indexer scores by slot order; its keys
get a ring of their own.) All state
(the token count) is a tensor updated in place, and the buffers keep their addresses.

Prompts longer than the cache are fed one token at a time once it is full (the ring has no room for a
chunk); the tokens are the same as `SinkCache` with --prefill-chunk 1.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, StaticLayer

from sinktrain.stream.families import FamilyAdapter, adapter_for
from sinktrain.stream.config import check_sizes
from sinktrain.stream.sink_cache import RotaryTable, RotatedSlotFirst, install_position_hook


class StaticSinkCacheLayer(RotatedSlotFirst, StaticLayer):
    """`keys`/`values`: [batch, kv_heads, C + 1, head_dim]; `cumulative_length`: tokens fed so far."""

    def __init__(self, rotary: RotaryTable, sinks: int, window: int):
        super().__init__(max_cache_len=sinks + window + 1)
        self.rotary, self.sinks, self.window = rotary, sinks, window
        self.capacity = sinks + window
        self.indexer_keys = self.indexer_fed = None  # DeepSeek sparse attention's (update_indexer)

    def _slots(self, stamps: torch.Tensor) -> torch.Tensor:
        """Slot of the token with absolute index `stamps` (sinks keep theirs, the window wraps)."""
        s, ring = self.sinks, self.window + 1
        return torch.where(stamps < s, stamps, s + (stamps - s) % ring)

    def _positions(self, fed: torch.Tensor) -> torch.Tensor:
        """Position inside the cache of every slot once `fed` tokens are in (empty slots: clamped, masked)."""
        s, ring, slots = self.sinks, self.window + 1, torch.arange(self.max_cache_len, device=self.device)
        newest = fed - 1
        # The stamp each window slot holds: the latest stamp <= newest that maps to that slot.
        stamp = newest - (newest - s - (slots - s)) % ring
        pos = stamp - torch.clamp(newest - self.capacity, min=0)
        return torch.where(slots < s, slots, pos).clamp(min=0)

    def _update(self, key_states, value_states):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.rotary.table(self.max_cache_len, key_states)
        q = key_states.shape[-2]
        fed = self.cumulative_length
        if q > 1 and int(fed) + q > self.max_cache_len:
            raise RuntimeError("a static sink cache takes multi-token chunks only until it is full; feed the rest "
                               "one token at a time")
        slots = self._store(self.keys, key_states, fed)
        self.values.index_copy_(2, slots, value_states)
        self.cumulative_length.add_(q)
        return self._rotated(self.keys, self.cumulative_length), self.values

    def update_indexer(self, key_states):
        """DeepSeek sparse attention's indexer keys [batch, n, dim], kept in a ring of their own as the keys are
        (see sink_cache.SinkCacheLayer.update_indexer); returns all C + 1 slots, rotated."""
        x = key_states[:, None]
        if self.indexer_keys is None:
            self.indexer_keys = x.new_zeros(x.shape[0], 1, self.max_cache_len, x.shape[-1])
            self.indexer_fed = torch.zeros((), dtype=torch.long, device=x.device)
        self._store(self.indexer_keys, x, self.indexer_fed)
        self.indexer_fed.add_(x.shape[-2])
        return self._rotated(self.indexer_keys, self.indexer_fed)[:, 0]

    def _store(self, buffer: torch.Tensor, rotated: torch.Tensor, fed: torch.Tensor) -> torch.Tensor:
        """Write the new entries (rotated by the model at the next positions) un-rotated into their slots of
        `buffer`, `fed` entries having come before; returns the slots."""
        b, h, q, d = rotated.shape
        cos, sin = self.rotary.table(self.max_cache_len, rotated)
        new_pos = torch.clamp(fed, max=self.capacity) + torch.arange(q, device=self.device)
        raw = self.rotary.unrotate(rotated.reshape(b * h, q, d), cos[new_pos], sin[new_pos]).view(b, h, q, d)
        slots = self._slots(fed + torch.arange(q, device=self.device))
        buffer.index_copy_(2, slots, raw)
        return slots

    def _rotated(self, buffer: torch.Tensor, fed: torch.Tensor) -> torch.Tensor:
        return self.rotary.rotate(buffer, self._positions(fed), self.max_cache_len)

    def get_seq_length(self):
        """Entries the cache holds (<= C): the next token's position."""
        return torch.clamp(self.cumulative_length, max=self.capacity) if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a sink cache cannot be cropped: evicted entries are gone")


def check_ring_order(adapter_cls) -> None:
    """The ring keeps entries out of order, which only rotary models cannot tell: ALiBi (MPT, BLOOM) biases a key
    by its index."""
    if not adapter_cls.uses_rotary:
        raise ValueError(f"the static sink cache keeps its entries in ring order, but the model's ALiBi bias "
                         f"({adapter_cls.family}) depends on each key's index in the cache; use --cache-kind sink")


class StaticSinkCache(Cache):
    """Ring-buffer StreamingLLM cache: `sinks` + `window` entries in C + 1 fixed slots per layer."""

    reassigns_positions = True  # read by the position hook

    def __init__(self, model, sinks: int, window: int, adapter: FamilyAdapter | None = None):
        check_sizes(sinks, window)
        self.adapter = adapter or adapter_for(model)
        check_ring_order(type(self.adapter))
        self.sinks, self.window, self.capacity = sinks, window, sinks + window
        super().__init__(layers=[StaticSinkCacheLayer(rotary, sinks, window)
                                 for rotary in RotaryTable.per_layer(self.adapter)])
        install_position_hook(model)

    def positions(self, length: int, device) -> torch.Tensor:
        return torch.arange(length, device=device) + self.get_seq_length()  # a tensor: no host read

    def max_chunk(self) -> int:
        """Only what fits before the ring wraps (at least one token)."""
        return max(1, self.capacity + 1 - int(self.get_seq_length()))

    def make_room(self, incoming: int) -> None:
        if incoming > self.max_chunk():
            raise RuntimeError(f"a full static sink cache takes one token at a time, not {incoming}")

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers if layer.is_initialized
                   for t in (layer.keys, layer.values, layer.indexer_keys) if t is not None)
