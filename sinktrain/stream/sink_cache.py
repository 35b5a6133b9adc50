"""StreamingLLM's cache as a transformers 5 cache: s attention-sink entries plus a window of w recent ones.

`SinkCache(model, sinks, window)` is a `transformers.Cache` built from one `SinkCacheLayer` per decoder layer
(the documented extension point, `Cache(layers=[...])`), so it works with a plain forward pass and with
`model.generate(..., past_key_values=cache)` (which feeds a whole prompt in one forward: one longer than C + 1
tokens is attended densely, every token over every earlier one, before the eviction; sinktrain's decode loop
streams it instead, see sinktrain/generate/decode.py). Semantics (paper §3.2, the same as the streaming evaluator's):
- positions are re-assigned inside the cache: a new token's position is its cache index, i.e. the number of
  entries the cache holds when it arrives; the cached key at index i is rotated at position i;
- after each forward the cache is evicted back to C = s + w entries by dropping the oldest non-sink entries.

Keys are stored un-rotated and rotated at their current cache indices when a forward reads them, with the
model's own rotary module (through its family adapter), so an eviction (which moves later keys one index down)
needs no rotation of stored keys and a million-token run accumulates no rotation error. (Multi-head latent
attention, DeepSeek-V3's, hands the cache a latent as its "keys" and the rotated key part as its "values": the
layers then treat the value slot as the rotated one.)

`generate()` counts positions from the start of the text, which would rotate queries at ever larger positions
than the cache's keys. A forward pre-hook, installed once per model by the cache's constructor, replaces the
position ids (and 5.17's cache_position) of any forward that is given a SinkCache by the cache's own positions;
forwards with other caches are left alone. Models with a position per axis (Qwen-VL's multimodal RoPE) get the
cache position on every axis, which is right for text, the only input sinktrain streams (an image's tokens have
distinct positions per axis, which a sink cache does not keep). A padded batch is refused (see `_padded`).

`StaticSinkCache` keeps the same entries in fixed-size ring buffers (see static_sink_cache.py).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

from sinktrain.stream.config import check_sizes
from sinktrain.stream.families import FamilyAdapter, adapter_for


class RotaryTable:
    """cos/sin of the model's rotary module at positions 0..L-1, computed once and grown on demand; shared by
    every layer of a cache that uses that rotary `kind` (positions inside the cache never exceed C + the
    largest chunk)."""

    def __init__(self, adapter: FamilyAdapter, kind=None):
        self.adapter, self.kind = adapter, kind
        self.scaling = adapter.rotary_scaling(kind)
        self.cos = self.sin = None

    @staticmethod
    def per_layer(adapter: FamilyAdapter) -> list["RotaryTable"]:
        """One table per layer, shared by the layers of one rotary kind."""
        kinds = adapter.rotary_kinds()
        tables = {kind: RotaryTable(adapter, kind) for kind in dict.fromkeys(kinds)}
        return [tables[kind] for kind in kinds]

    def table(self, length: int, like: torch.Tensor):
        if (
            self.cos is None
            or self.cos.shape[0] < length
            or self.cos.dtype != like.dtype
            or self.cos.device != like.device
        ):
            size = max(length, 2 * (0 if self.cos is None else self.cos.shape[0]), 64)
            bound = self.adapter.position_bound
            if bound is not None and length <= bound:  # grow no further than the positions that are exact
                size = min(size, bound)
            self.cos, self.sin = self.adapter.cos_sin(torch.arange(size, device=like.device), like.dtype, self.kind)
        return self.cos, self.sin

    def rotate(self, x: torch.Tensor, positions: torch.Tensor, bound: int | None = None) -> torch.Tensor:
        """x [batch, heads, n, d] rotated at integer positions [n] (each >= 0 and < bound; passing the bound
        keeps the call free of a device-to-host read, which torch.compile / CUDA graphs cannot capture)."""
        cos, sin = self.table(int(positions.max()) + 1 if bound is None else bound, x)
        b, h, n, d = x.shape
        return self.adapter.apply_rotary(x.reshape(b * h, n, d), cos[positions], sin[positions]).view(b, h, n, d)

    def rotate_range(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """x [batch, heads, n, d] rotated at positions start..start+n-1."""
        n = x.shape[-2]
        cos, sin = self.table(start + n, x)
        b, h, _, d = x.shape
        return self.adapter.apply_rotary(x.reshape(b * h, n, d), cos[start : start + n], sin[start : start + n]).view(
            b, h, n, d
        )

    def unrotate_range(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Inverse of rotate_range."""
        b, h, n, d = x.shape
        cos, sin = self.table(start + n, x)
        return self.unrotate(x.reshape(b * h, n, d), cos[start : start + n], sin[start : start + n]).view(b, h, n, d)

    def unrotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [rows, n, head_dim] rotated by cos/sin [n, rotary_dim], un-rotated: R(p)^-1 = R(-p) / m^2 on the
        rotary dims (m: the rotary module's attention scaling, 1 unless YaRN or LongRoPE; cos(-a) = cos(a),
        sin(-a) = -sin(a)); the dims past rotary_dim (partial rotary) pass through both ways unscaled."""
        out = self.adapter.apply_rotary(x, cos, -sin)
        if self.scaling == 1.0:
            return out
        r = self.adapter.rotated_dims(cos)  # (not always cos's width: gpt-oss's holds one angle per pair of dims)
        return torch.cat([out[..., :r] / self.scaling**2, out[..., r:]], dim=-1)


class RotatedSlotFirst:
    """Mixed in before a cache layer class whose `_update(rotated, other)` takes first the tensor that carries the
    rotary embedding: the keys, or the value slot for multi-head latent attention (see the module doc)."""

    def update(self, key_states, value_states, *args, **kwargs):
        if self.rotary.adapter.cache_rotates_values:
            values, keys = self._update(value_states, key_states)
            return keys, values
        return self._update(key_states, value_states)


class SinkCacheLayer(RotatedSlotFirst, DynamicLayer):
    """One decoder layer's s + w entries. `keys` holds keys un-rotated (unlike DynamicLayer), `values` as is;
    `window=None` keeps every entry (dense attention with re-assigned positions = plain positions)."""

    is_sliding = False

    def __init__(self, rotary: RotaryTable, sinks: int, window: int | None):
        super().__init__()
        self.rotary, self.sinks, self.window = rotary, sinks, window
        self.indexer_keys = None  # DeepSeek sparse attention's (update_indexer)

    @property
    def capacity(self) -> int | None:
        return None if self.window is None else self.sinks + self.window

    def _update(self, key_states, value_states):
        """Store the new entries (their keys arrive rotated at positions n..n+q-1), return every entry's key
        rotated at its cache index, then evict back to C entries. (`self.keys` holds the rotated slot un-rotated.)"""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys, self.keys = self._append(self.keys, key_states)
        values = torch.cat([self.values, value_states], dim=-2)
        self.values = self._evict(values, 0)
        return keys, values

    def update_indexer(self, key_states):
        """DeepSeek sparse attention's indexer keys [batch, n, dim] (rotary dims first, arriving rotated at the
        next positions), kept as the keys are: return every entry's rotated at its cache index, then evict."""
        full, self.indexer_keys = self._append(self.indexer_keys, key_states[:, None])
        return full[:, 0]

    def _append(self, kept: torch.Tensor | None, rotated: torch.Tensor):
        """New entries `rotated` (rotated by the model at the next positions) joining the un-rotated `kept`:
        -> (every entry rotated at its cache index, the un-rotated entries left after eviction)."""
        n = 0 if kept is None or kept.numel() == 0 else kept.shape[-2]  # (DynamicLayer starts keys as [])
        raw = self.rotary.unrotate_range(rotated, n)
        # Old entries at their indices; the new ones exactly as the model rotated them (positions n.., see the hook).
        full = torch.cat([self.rotary.rotate_range(kept, 0), rotated], dim=-2) if n else rotated
        return full, self._evict(torch.cat([kept, raw], dim=-2) if n else raw, 0)

    def make_room(self, incoming: int) -> None:
        """Before a chunk of `incoming` tokens: evict the oldest window entries so that each token of the chunk
        sees at most C cached entries plus itself (as a token decoded alone does)."""
        if self.capacity is None or self.get_seq_length() == 0:
            return
        self.keys, self.values = self._evict(self.keys, incoming - 1), self._evict(self.values, incoming - 1)
        if self.indexer_keys is not None:
            self.indexer_keys = self._evict(self.indexer_keys, incoming - 1)

    def _evict(self, x: torch.Tensor, extra: int) -> torch.Tensor:
        """Keep the s sinks and the most recent w - extra window entries."""
        if self.capacity is None or x.shape[-2] <= self.capacity - extra:
            return x
        recent = self.window - extra
        return torch.cat([x[..., : self.sinks, :], x[..., x.shape[-2] - recent :, :]], dim=-2)

    def get_max_length(self) -> int:
        return -1 if self.capacity is None else self.capacity

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a sink cache cannot be cropped: evicted entries are gone")


class SinkCache(Cache):
    """StreamingLLM cache for `model`: `sinks` first entries plus the `window` most recent (window=None: keep
    everything). Pass it as the forward's cache argument or as `generate(past_key_values=...)`."""

    reassigns_positions = True  # read by the position hook

    def __init__(self, model, sinks: int, window: int | None, adapter: FamilyAdapter | None = None):
        check_sizes(sinks, window)
        self.adapter = adapter or adapter_for(model)
        self.sinks, self.window = sinks, window
        super().__init__(layers=[self.make_layer(rotary) for rotary in RotaryTable.per_layer(self.adapter)])
        install_position_hook(model)

    def make_layer(self, rotary: RotaryTable):
        return SinkCacheLayer(rotary, self.sinks, self.window)

    @property
    def capacity(self) -> int | None:
        return None if self.window is None else self.sinks + self.window

    def positions(self, length: int, device) -> torch.Tensor:
        """Positions of the next `length` tokens: their cache indices."""
        start = self.get_seq_length()
        return torch.arange(start, start + length, device=device)

    def make_room(self, incoming: int) -> None:
        for layer in self.layers:
            layer.make_room(incoming)

    def max_chunk(self) -> int:
        """The largest chunk a prefill may feed now (the cache must hold C + chunk entries during it)."""
        if self.capacity is None:
            return 1 << 30
        return self.window + 1

    def nbytes(self) -> int:
        """Bytes held by the cached tensors (the constant-memory check)."""
        return sum(
            t.numel() * t.element_size()
            for layer in self.layers
            if layer.is_initialized
            for t in (layer.keys, layer.values, layer.indexer_keys)
            if t is not None
        )


def _query_length(args, kwargs) -> int | None:
    for name in ("input_ids", "inputs_embeds"):
        x = kwargs.get(name)
        if x is not None:
            return int(x.shape[1])
    return int(args[0].shape[1]) if args and isinstance(args[0], torch.Tensor) else None


def _padded(kwargs) -> bool:
    """Rows padded to one length: a 2D attention mask with zeros, or position ids that differ between rows
    (generate() derives them from its 2D mask, also where it hands the model a 4D mask, as for the static cache)."""
    mask, pos = kwargs.get("attention_mask"), kwargs.get("position_ids")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2 and bool((mask == 0).any()):
        return True
    return isinstance(pos, torch.Tensor) and pos.dim() >= 2 and bool((pos != pos[..., :1, :]).any())


def _streaming_positions(module, args, kwargs):
    """Forward pre-hook: a forward given a sink cache (dynamic or static) sees positions = cache indices (see the
    module doc)."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if not getattr(cache, "reassigns_positions", False):
        return None
    if not torch.compiler.is_compiling() and _padded(kwargs):
        # transformers reads a padding mask by cache index, which eviction shifts: pads would be kept as sinks and
        # real tokens masked. (A device sync, only when a mask or position ids are passed, as generate() does.)
        raise ValueError("a sink cache cannot follow padding (the attention mask has zeros): batch rows must be "
                         "unpadded; run rows of different lengths one at a time")
    q = _query_length(args, kwargs)
    if q is None:
        return None
    device = module.get_input_embeddings().weight.device
    pos = cache.positions(q, device)
    if kwargs.get("position_ids") is not None:  # [batch, q], or [axes, batch, q] (Qwen-VL's multimodal RoPE)
        kwargs["position_ids"] = pos.expand(kwargs["position_ids"].shape)
    if kwargs.get("cache_position") is not None:  # transformers 5.17 derives masks and positions from it
        kwargs["cache_position"] = pos
    return args, kwargs


def install_position_hook(model) -> None:
    if not getattr(model, "_sinktrain_position_hook", False):
        model.register_forward_pre_hook(_streaming_positions, with_kwargs=True)
        model._sinktrain_position_hook = True
