"""BLOOM (`bloom`: BLOOM, BLOOMZ): ALiBi like MPT (mpt.py; slopes from the model's own `build_alibi_tensor`, whose
bias grows with a key's index in the cache), a LayerNorm right after the word embeddings, fused per-head q/k/v
(split with the model's own `_reshape`), and residual adds done inside the attention and MLP modules (from the
LayerNorm's output instead of the input with `apply_residual_connection_post_layernorm`). Its config.json names
the head and layer counts `n_head` / `n_layer`."""

import torch

from sinktrain.stream.families.base import BloomStyleLayout, FamilyAdapter


class BloomAdapter(BloomStyleLayout, FamilyAdapter):
    family = "bloom"
    model_types = ("bloom",)
    required_config_keys = ("n_head", "n_layer", "vocab_size")
    uses_rotary = False

    @classmethod
    def unsupported(cls, config) -> str | None:
        if getattr(config, "slow_but_exact", False) and getattr(config, "pretraining_tp", 1) > 1:
            return ("the model's config asks for BLOOM's slow_but_exact tensor-parallel emulation, which the streaming "
                    "evaluator does not implement; set slow_but_exact to false in config.json")
        return None

    def embed(self, ids):
        return self.backbone.word_embeddings_layernorm(self.backbone.word_embeddings(ids))

    def qkv(self, layer, x):
        attn = layer.self_attention
        q, k, v = attn._reshape(attn.query_key_value(layer.input_layernorm(x))[None])  # [1, heads, n, d] each
        return q[0].transpose(0, 1), k[0].transpose(0, 1), v[0].transpose(0, 1)

    def attention_scale(self, layer):
        return float(layer.self_attention.inv_norm_factor)

    def residual(self, layer, x, attn_out):
        post_ln = layer.apply_residual_connection_post_layernorm
        x = layer.self_attention.dense(attn_out) + (layer.input_layernorm(x) if post_ln else x)
        h = layer.post_attention_layernorm(x)
        return layer.mlp(h, h if post_ln else x)  # BLOOM's MLP adds the residual itself

    def alibi_slopes(self) -> torch.Tensor:
        # The model's bias over two keys, [0, slope] per head.
        bias = self.backbone.build_alibi_tensor(torch.ones(1, 2, dtype=torch.long), self.num_heads, torch.float32)
        return bias[:, 0, 1].float()
