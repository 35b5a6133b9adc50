"""Databricks DBRX (`dbrx`): MPT's naming (`transformer.wte`, `blocks`, `norm_f`, fused and optionally clipped
`Wqkv`) with grouped-query attention (`attn_config.kv_n_heads`), rotary embeddings, bias-free LayerNorms around the
attention (`norm_attn_norm.norm_1` / `norm_2`), a sequential residual and a mixture of experts (`ffn`). Its
config.json names sizes `d_model`, `n_heads`, `n_layers`."""

from sinktrain.stream.families.base import FamilyAdapter
from sinktrain.stream.families.mpt import MptStyleLayout


class DbrxAdapter(MptStyleLayout, FamilyAdapter):
    family = "dbrx"
    model_types = ("dbrx",)
    mlp_takes_batches = True

    def kv_heads_and_head_dim(self):
        return int(self.config.attn_config.kv_n_heads), self.config.d_model // self.num_heads

    def attention(self, layer):
        return layer.norm_attn_norm.attn

    def qkv(self, layer, x):
        attn, n, d = self.attention(layer), x.shape[0], self.head_dim
        fused = attn.Wqkv(layer.norm_attn_norm.norm_1(x))
        if attn.clip_qkv is not None:
            fused = fused.clamp(min=-attn.clip_qkv, max=attn.clip_qkv)
        q, k, v = fused.split([self.num_heads * d, self.num_kv_heads * d, self.num_kv_heads * d], dim=-1)
        return q.view(n, self.num_heads, d), k.view(n, self.num_kv_heads, d), v.view(n, self.num_kv_heads, d)

    def mlp(self, layer, h):
        return layer.ffn(h[None])[0]

    def residual(self, layer, x, attn_out):
        x = x + self.attention(layer).out_proj(attn_out)
        return x + self.mlp(layer, layer.norm_attn_norm.norm_2(x))
