"""GPT-J (GPT-J-6B, GPT4All-J): one LayerNorm feeds both branches, added in parallel (x + attn + mlp(ln(x))), biases
in the MLP and the head, and rotary on interleaved pairs of the first `rotary_dim` dims of each head. Its rotary
module reads a precomputed sin/cos table (returned as (sin, cos), half width: one angle per pair) that ends at
`n_positions`, and its rotation function takes one tensor, sequence-major. Its config.json names sizes `n_embd`,
`n_head`, `n_layer`."""

import torch

from sinktrain.stream.families.base import BloomStyleLayout, FamilyAdapter


class GptjAdapter(BloomStyleLayout, FamilyAdapter):
    family = "gptj"
    model_types = ("gptj",)
    required_config_keys = ("n_embd", "n_head", "n_layer", "vocab_size")
    rotary_on_leading_slice = True

    def attention(self, layer):
        return layer.attn

    def embed(self, ids):
        return self.backbone.wte(ids)

    def attention_input(self, layer, x):
        return layer.ln_1(x)

    def residual(self, layer, x, attn_out):
        return x + layer.attn.out_proj(attn_out) + self.mlp(layer, layer.ln_1(x))

    @classmethod
    def position_limit(cls, config):
        return int(config.n_positions), "precomputed rotary table (it holds n_positions positions)"

    def cos_sin(self, positions, dtype, kind=None):
        if positions.numel() == 0:
            return super().cos_sin(positions, dtype, kind)
        module = getattr(self.backbone, "rotary_emb", None)
        if module is None:  # transformers 5.17 keeps the table in each attention module
            sincos = self.attention(self.layers[0]).embed_positions.to(positions.device)[positions].to(dtype)
            sin, cos = torch.split(sincos, sincos.shape[-1] // 2, dim=-1)
            return cos, sin
        sin, cos = module(torch.empty(0, dtype=dtype, device=positions.device), positions[None])
        return cos[0], sin[0]

    def rotated_dims(self, cos):
        return 2 * int(cos.shape[-1])  # one angle per interleaved pair

    def _rotate(self, x, cos, sin, seq_major):
        xs = x if seq_major else x.transpose(0, 1)
        out = self._apply_rotary(xs[None], sin[None], cos[None])[0]
        return out if seq_major else out.transpose(0, 1)
