"""What the streaming evaluator needs from a model family, stated once per family.

The exact block-parallel mode (`sinktrain.stream.parallel`) re-runs a decoder layer by layer with its own
attention, so it must know where each piece of a model lives: embeddings, the pre-attention norm, the q/k/v
projections (and any q/k norm), the rotary embedding, the attention output projection, the residual form
(sequential or GPT-NeoX's parallel), the final norm and the output head. A `FamilyAdapter` subclass states
exactly that for one family; everything else (positions, masks, eviction) is family-independent.

Rotary cos/sin always come from the model's own rotary module (one per layer kind where a family has several:
Gemma 3's two bases, SmolLM3's layers without any) and are applied with the model's own
`apply_rotary_pos_emb`, never from a copy of their arithmetic: static scaled RoPE (linear, llama3, YaRN) is a
fixed function of the position and is then exact too. LongRoPE is static below its original context, so caches
stay below that (`position_limit`). Dynamic NTK depends on the sequence length and is refused, and so are
sliding-window layers that cannot see the whole cache plus the query.
"""

from __future__ import annotations

import sys

import torch

# RoPE kinds whose cos/sin at a position do not depend on how long the sequence is.
STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn", "proportional")
# LongRoPE (Phi-3 128k, Phi-3.5, Phi-4-mini) is static below a position: its rotary module switches every
# frequency from the short to the long factors once a forward reaches `original_max_position_embeddings`.
BOUNDED_ROPE_TYPES = ("longrope",)


class FamilyAdapter:
    """One model family's layout. Subclasses set `family`, `model_types`, `required_config_keys` and override
    the accessors whose attribute names differ from the Llama layout used here by default."""

    family = "base"
    model_types: tuple[str, ...] = ()
    # config.json keys without which transformers silently falls back to defaults (e.g. 64 heads).
    required_config_keys: tuple[str, ...] = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")

    def __init__(self, model):
        self.model = model
        self.config = self.language_config(model.config)
        check_config(model.config, type(self))
        self.num_heads = int(self.config.num_attention_heads)
        self.num_kv_heads, self.head_dim = self.kv_heads_and_head_dim()
        self.value_dim = self.head_dim  # (latent attention: a value head narrower than the query/key head)
        if not self.uses_rotary:  # (ALiBi): every layer is "nope", no dims rotate
            self._apply_rotary, self.rotary_dim = None, 0
            return
        self._apply_rotary = _model_function((model, self.backbone), self.rotary_function, self.family)
        with torch.no_grad():
            cos, _ = self.cos_sin(torch.zeros(1, dtype=torch.long), torch.float32, self.rotary_kinds()[0])
        self.rotary_dim = self.rotated_dims(cos)  # GPT-NeoX rotates only part of each head

    def kv_heads_and_head_dim(self) -> tuple[int, int]:
        """K/V heads and the width of a head, from the config (a family whose layers differ: its first layer's)."""
        c = self.config
        return (int(getattr(c, "num_key_value_heads", None) or self.num_heads),
                int(getattr(c, "head_dim", None) or c.hidden_size // self.num_heads))

    # --- where things live (Llama layout; override per family) ---------------------------------------------------
    @classmethod
    def language_config(cls, config):
        """The config of the language model (a multimodal wrapper keeps it in `text_config`)."""
        return config

    @property
    def backbone(self):
        return self.model.model

    @property
    def layers(self):
        return list(self.backbone.layers)

    @property
    def rotary_module(self):
        return self.backbone.rotary_emb

    def attention(self, layer):
        return layer.self_attn

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed_tokens(ids)

    def qkv(self, layer, x: torch.Tensor):
        """Un-rotated q [n, heads, d] and k, v [n, kv_heads, d] of hidden states x [n, hidden] (sequence-major:
        contiguous views of the projections, so rotation and concatenation along the sequence stay cheap)."""
        attn, n = self.attention(layer), x.shape[0]
        h = self.attention_input(layer, x)
        q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
        if self.qk_norm_across_heads:
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k, v = self.clip_qkv(q, k, v)
        q = q.view(n, self.num_heads, self.head_dim)
        k = k.view(n, self.num_kv_heads, self.head_dim)
        v = v.view(n, self.num_kv_heads, self.head_dim)
        q, k = self.qk_norm(attn, q, k)
        return q, k, v

    def attention_input(self, layer, x: torch.Tensor) -> torch.Tensor:
        """What the q/k/v projections read: the pre-attention norm of x (post-norm families: x itself)."""
        return layer.input_layernorm(x)

    # OLMo 2, OLMoE, MiniMax-M2: one RMSNorm over all heads' queries (and one over the keys), before the heads are
    # split; per-head norms (Qwen3 and most others) go in `qk_norm`.
    qk_norm_across_heads = False

    def qk_norm(self, attn, q, k):
        """Per-head q/k norms of q [n, heads, d], k [n, kv_heads, d] (none here)."""
        return q, k

    def skips(self, layer) -> bool:
        """Whether the model's own forward skips this layer for text (Mllama's cross-attention layers, which see
        only images); the evaluator then skips it too."""
        return False

    def kv_source(self, layer) -> int | None:
        """The index of an earlier layer whose keys and values this layer attends to instead of its own (Gemma 4's
        shared K/V layers; `qkv` then returns None for k and v); None: its own."""
        return None

    def clip_qkv(self, q, k, v):
        """The projections as the attention uses them (OLMo clamps them to a range; nothing here)."""
        return q, k, v

    def attention_scale(self, layer) -> float:
        return float(getattr(self.attention(layer), "scaling", self.head_dim**-0.5))

    def attention_softcap(self) -> float | None:
        """Scores become cap·tanh(score / cap) before the mask (Gemma 2); None: plain scores."""
        return None

    # Mixture-of-experts blocks read [batch, seq, hidden]; dense MLPs take the [n, hidden] rows as they are.
    mlp_takes_batches = False

    def mlp(self, layer, h: torch.Tensor) -> torch.Tensor:
        return layer.mlp(h[None])[0] if self.mlp_takes_batches else layer.mlp(h)

    def residual(self, layer, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        """x after the layer, given its attention output (already projected back to the hidden size)."""
        x = x + self.attention(layer).o_proj(attn_out)
        return x + self.mlp(layer, layer.post_attention_layernorm(x))

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.norm(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.get_output_embeddings()(self.final_norm(x))

    # Families whose attention applies `config.sliding_window` (None: full) to every layer without marking it in
    # `config.layer_types` (Mistral, Phi-3).
    window_on_every_layer = False

    @classmethod
    def sliding_windows(cls, config) -> list[int | None]:
        """Per layer: the attention window of a sliding-window layer, None for full attention (transformers 5
        marks them in `config.layer_types`)."""
        window = getattr(config, "sliding_window", None)
        if cls.window_on_every_layer:
            return [window] * config.num_hidden_layers
        types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
        return [window if t == "sliding_attention" else None for t in types]

    @classmethod
    def unsupported(cls, config) -> str | None:
        """Why a config of this family cannot stream (a family variant the adapter does not implement), as the
        one line the user sees; None when it can."""
        return None

    @classmethod
    def position_limit(cls, config) -> tuple[int, str] | None:
        """(N, what changes): the model's attention changes from position N on in a way the evaluator does not
        reproduce, so every position it uses must stay below N (caches hold at most N - 1 tokens). None: no
        limit. Here: LongRoPE's switch to its long factors."""
        rope = getattr(config, "rope_parameters", None) or {}
        if rope.get("rope_type") in BOUNDED_ROPE_TYPES and rope.get("original_max_position_embeddings"):
            return int(rope["original_max_position_embeddings"]), "LongRoPE (its long-context frequencies)"
        return None

    @property
    def position_bound(self) -> int | None:
        """Positions at which cos/sin may be asked of the rotary module: below `position_limit` (a LongRoPE module
        asked for any position past it rotates every position with its long factors)."""
        limit = self.position_limit(self.config)
        return None if limit is None else limit[0]

    # --- rotary, from the model's own module ---------------------------------------------------------------------
    # Families whose rotary module takes the layer type and keeps frequencies (and a YaRN factor) per type
    # (Gemma 3, OLMo 3).
    rotary_per_layer_type = False

    # False: no rotary embedding at all (ALiBi: MPT, BLOOM; see alibi_slopes).
    uses_rotary = True

    def rotary_kinds(self) -> list:
        """Per layer, which rotary embedding it uses (a key for `cos_sin`); one for all layers (None) unless a
        family has several (a set per layer type), or layers without any ("nope": SmolLM3, Cohere 2)."""
        if not self.uses_rotary:
            return ["nope"] * len(self.layers)
        if self.rotary_per_layer_type:
            return list(self.config.layer_types)
        return [None] * len(self.layers)

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype, kind=None):
        """cos, sin [n, rotary_dim] at integer positions [n] (any sign), from the model's rotary module."""
        if positions.numel() == 0:  # (no sinks yet): LongRoPE's module cannot take an empty batch of positions
            cos, sin = self.cos_sin(positions.new_zeros(1), dtype, kind)
            return cos[:0], sin[:0]
        if kind == "nope":  # cos 1, sin 0: the model's own rotation function then leaves q and k as they are
            shape = (positions.shape[0], self.head_dim)
            return (torch.ones(shape, dtype=dtype, device=positions.device),
                    torch.zeros(shape, dtype=dtype, device=positions.device))
        probe = torch.empty(0, dtype=dtype, device=positions.device)
        cos, sin = self.rotary_module(probe, positions[None], *(() if kind is None else (kind,)))
        return cos[0], sin[0]

    def rotary_scaling(self, kind=None) -> float:
        """The factor m the rotary module multiplies cos and sin by (1 unless YaRN or LongRoPE): R(p)^-1 = R(-p) / m^2.
        Read off the module's output (cos 0 = 1, so cos at position 0 is m), not an attribute: Phi-3.5-MoE's module
        multiplies by its config's `short_mscale`, not by its `attention_scaling`."""
        with torch.no_grad():
            cos, _ = self.cos_sin(torch.zeros(1, dtype=torch.long), torch.float32, kind)
        return float(cos[0, 0])

    # The modeling file's rotation function (complex-number rotary has its own: complex_rotary.py).
    rotary_function = "apply_rotary_pos_emb"

    # Multi-head latent attention (DeepSeek-V3) caches a normalized latent in the key slot and the rotated key part
    # shared by all heads in the value slot: the sink caches then un-rotate and re-rotate the value slot.
    cache_rotates_values = False

    # Partial rotary where the attention module hands apply_rotary_pos_emb only the leading rotary_dim dims
    # (Phi, StableLM); otherwise the function takes the whole head and passes the rest through itself (GPT-NeoX).
    rotary_on_leading_slice = False

    def apply_rotary(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, seq_major: bool = False):
        """x [heads, n, head_dim] (or [n, heads, head_dim] with seq_major) rotated by cos/sin [n, rotary_dim],
        with the model's own apply_rotary_pos_emb."""
        if self._apply_rotary is None:
            return x
        r = self.rotated_dims(cos)
        if self.rotary_on_leading_slice and r < x.shape[-1]:
            return torch.cat([self._rotate(x[..., :r], cos, sin, seq_major), x[..., r:]], dim=-1)
        return self._rotate(x, cos, sin, seq_major)

    def rotated_dims(self, cos: torch.Tensor) -> int:
        """How many dims of a head cos/sin of this width rotate (one per entry; complex rotary: two)."""
        return int(cos.shape[-1])

    def _rotate(self, x, cos, sin, seq_major):
        # The model's function rotates a query and a key at once; the key slot gets one head (not a second copy
        # of x), so the rotation costs what one tensor's does.
        one_head = x[None, :, :1] if seq_major else x[None, :1]
        rotated, _ = self._apply_rotary(x[None], one_head, cos[None], sin[None], unsqueeze_dim=2 if seq_major else 1)
        return rotated[0]

    # --- sink variants that change the softmax (sinktrain's softmax1 / logit) -------------------------------------
    def softmax_sink_kind(self) -> str:
        """'softmax1' / 'logit' for a softmax with a value-less extra column, else 'none'."""
        return "none"

    def sink_logit(self, layer) -> torch.Tensor:
        raise NotImplementedError

    # --- ALiBi ---------------------------------------------------------------------------------------------------
    def alibi_slopes(self) -> torch.Tensor | None:
        """Per head, the slope m of an ALiBi bias -m · (query index - key index) added to the scores (indices inside
        the cache); None for rotary families."""
        return None


def soft_cap(x: torch.Tensor, cap: float | None) -> torch.Tensor:
    """cap·tanh(x / cap), the soft-capping of Gemma 2's attention scores and of several families' logits; x itself
    when cap is None."""
    return x if cap is None else torch.tanh(x / cap) * cap


class LearnedSinkLogits:
    """Mixed in before FamilyAdapter by models trained with a learned attention-sink logit per head (`sinks` on
    each attention module: gpt-oss, Granite SWASH): an extra softmax column with no value, sinktrain's `logit`
    sink kind."""

    def softmax_sink_kind(self):
        return "logit"

    def sink_logit(self, layer):
        return self.attention(layer).sinks


class BloomStyleLayout:
    """Mixed in before FamilyAdapter by BLOOM and Falcon (Falcon grew out of BLOOM's code): the decoder at
    `model.transformer`, its layers in `.h`, each layer's attention in `.self_attention`, the final LayerNorm
    `ln_f`."""

    @property
    def backbone(self):
        return self.model.transformer

    @property
    def layers(self):
        return list(self.backbone.h)

    def attention(self, layer):
        return layer.self_attention

    def final_norm(self, x):
        return self.backbone.ln_f(x)


def _model_function(models, name: str, family: str):
    """`name` from the modeling file of the first of `models` (the model, then its language model: an image-text
    wrapper's file has no rotary) whose class, or a base class of it, has it (a sinktrain softmax1/logit model
    subclasses transformers' GPT-NeoX)."""
    classes = [cls for m in models for cls in type(m).__mro__]
    modules = (sys.modules.get(cls.__module__) for cls in classes)
    fn = next((getattr(m, name) for m in modules if m is not None and hasattr(m, name)), None)
    if fn is None:
        raise RuntimeError(
            f"the {family} family adapter found no {name}() in {type(models[-1]).__module__}; this transformers "
            f"release changed the modeling file, so the streaming evaluator cannot run this model"
        )
    return fn


def check_config(config, adapter_cls, cache: int | None = None) -> None:
    """Refuse a config the evaluator cannot treat exactly, in one line. `cache`: the most entries the cache
    will hold, C = s + w. A query sees those C keys plus its own, while a sliding-window layer of window W
    sees W keys, its own included (transformers' masks), so it would drop the oldest cached key (the first
    sink, at cache index 0) unless W > C."""
    config = adapter_cls.language_config(config)
    missing = [k for k in adapter_cls.required_config_keys if getattr(config, k, None) is None]
    if missing:
        raise ValueError(f"model config lacks {', '.join(missing)}; the {adapter_cls.family} adapter needs them")
    rope = getattr(config, "rope_parameters", None) or {}
    per_layer_type = [r for r in rope.values() if isinstance(r, dict)]  # Gemma 3: one set per layer type
    for rope_type in sorted({r.get("rope_type", "default") for r in per_layer_type or [rope]}):
        if rope_type not in STATIC_ROPE_TYPES + BOUNDED_ROPE_TYPES:
            raise ValueError(
                f"rotary embedding type {rope_type!r} depends on the sequence length, so re-positioned keys are not "
                f"exact; the streaming evaluator supports static RoPE only ({', '.join(STATIC_ROPE_TYPES)}; "
                f"{', '.join(BOUNDED_ROPE_TYPES)} below its original context)"
            )
    reason = adapter_cls.unsupported(config)
    if reason is not None:
        raise ValueError(reason)
    if getattr(config, "use_bidirectional_attention", False) not in (False, None, "vision"):  # (Gemma 4's "vision":
        # image tokens see each other, text stays causal)
        raise ValueError("the model attends in both directions (an embedding model, such as EmbeddingGemma), so it "
                         "predicts no next token to stream; use a causal language model")
    if cache is not None:
        narrow = narrowest_window(adapter_cls, config, cache + 1)
        if narrow is not None:
            raise ValueError(
                f"the model has sliding-window attention layers of window {narrow} (keys a query sees, its own "
                f"included), too narrow for a cache of {cache} tokens plus the query; use a cache of at most "
                f"{narrow - 1} tokens"
            )
        limit = adapter_cls.position_limit(config)
        if limit is not None and cache + 1 > limit[0]:  # a full cache's query sits at position C
            raise ValueError(f"the model's {limit[1]} changes its attention from position {limit[0]} on, which the "
                             f"streaming evaluator does not reproduce; use a cache of at most {limit[0] - 1} tokens")


def narrowest_window(adapter_cls, config, keys: int) -> int | None:
    """The narrowest sliding window among the layers of `config` (a language model's) that would drop some of
    `keys` keys, a query's own among them (a window W shows W); None when every layer sees them all."""
    return min((w for w in adapter_cls.sliding_windows(config) if w is not None and w < keys), default=None)


def dense_bound(adapter_cls, config, keys: int) -> tuple[int, str | None] | None:
    """What keeps a query over `keys` keys (its own included) from attending densely, for the dense baselines of
    stream-eval and streameval: (W, None) for the narrowest sliding window W that drops some of them, else
    (P, name) for a position switch at P that the query (at position keys - 1) reaches; None when neither.
    Either way a query fits with at most that many keys."""
    narrow = narrowest_window(adapter_cls, config, keys)
    if narrow is not None:
        return narrow, None
    limit = adapter_cls.position_limit(config)
    return limit if limit is not None and keys > limit[0] else None
