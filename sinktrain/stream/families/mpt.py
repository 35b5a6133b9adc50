"""MPT (7B, 30B; `mpt`), one of the paper's four streamed families (Figure 3): no rotary embedding but ALiBi, a
linear bias -slope_h · (distance) added to each head's scores. Inside a StreamingLLM cache the distance is
counted in cache indices ("contiguous" ALiBi, the paper's §3.2), which is what MPT's own attention does with a
cache: its bias depends on a key's index among the keys only (-slope · (n - j) for key j of a query at index n,
softmax being shift-invariant). The slopes come from the model's own `build_mpt_alibi_tensor`.

Fused q/k/v (`Wqkv`, optionally clipped), bias-free LayerNorms `norm_1` / `norm_2`, a sequential residual, the
final `norm_f`, scores scaled by `attn_config.softmax_scale`. Its config.json names sizes `d_model`, `n_heads`,
`n_layers`."""

import torch

from sinktrain.stream.families.base import FamilyAdapter


class MptStyleLayout:
    """Mixed in before FamilyAdapter by MPT and DBRX (DBRX grew out of MPT's code): the decoder at
    `model.transformer`, its layers in `.blocks`, the embedding `wte`, the final LayerNorm `norm_f`, and sizes named
    `d_model`, `n_heads`, `n_layers` in config.json."""

    required_config_keys = ("d_model", "n_heads", "n_layers", "vocab_size")

    @property
    def backbone(self):
        return self.model.transformer

    @property
    def layers(self):
        return list(self.backbone.blocks)

    def embed(self, ids):
        return self.backbone.wte(ids)

    def final_norm(self, x):
        return self.backbone.norm_f(x)


class MptAdapter(MptStyleLayout, FamilyAdapter):
    family = "mpt"
    model_types = ("mpt",)
    uses_rotary = False

    @classmethod
    def position_limit(cls, config):
        # MPT's forward slices its bias from a table of max_seq_len keys and fails on more.
        return int(config.max_seq_len), "ALiBi bias (a table of max_seq_len keys)"

    def attention(self, layer):
        return layer.attn

    def qkv(self, layer, x):
        attn, n = layer.attn, x.shape[0]
        fused = attn.Wqkv(layer.norm_1(x))
        if attn.clip_qkv:
            fused = fused.clamp(min=-attn.clip_qkv, max=attn.clip_qkv)
        q, k, v = fused.chunk(3, dim=-1)
        shape = (n, self.num_heads, self.head_dim)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def attention_scale(self, layer):
        return float(layer.attn.softmax_scale)

    def residual(self, layer, x, attn_out):
        x = x + layer.attn.out_proj(attn_out)
        return layer.ffn(layer.norm_2(x), x)  # MPT's MLP adds the residual itself

    def alibi_slopes(self) -> torch.Tensor:
        # The model's bias for 2 keys seen from the second: [-slope, 0] per head.
        bias = self.backbone.build_mpt_alibi_tensor(self.num_heads, 2, self.config.attn_config.alibi_bias_max)
        return -bias[:, 0, 0].float()
