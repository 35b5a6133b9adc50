"""Meituan LongCat-Flash (`longcat_flash`): DeepSeek-V3's latent attention (interleaved rotary, always a low-rank
query) with the query scaled by sqrt(hidden / q_lora_rank) and the normalized latent by sqrt(hidden /
kv_lora_rank), in a layer of two attention sublayers, each followed by a dense MLP, plus one mixture of experts
fed by the first sublayer's post-attention norm and added after the second ("shortcut-connected MoE"). transformers
numbers the sublayers' caches 2i and 2i + 1 (`num_hidden_layers` = 2 x `num_layers`).

The evaluator sees the sublayers as its layers (`Sublayer`), and its hidden state x as [h, shortcut]: the residual
stream and the experts' output that waits for the second sublayer."""

from dataclasses import dataclass

import torch

from sinktrain.stream.families.deepseek_v3 import DeepseekV3Adapter, InterleavedRotaryOnly


@dataclass(frozen=True)
class Sublayer:
    layer: torch.nn.Module  # the decoder layer holding both
    index: int  # 0 or 1


class LongcatFlashAdapter(InterleavedRotaryOnly, DeepseekV3Adapter):
    family = "longcat_flash"
    model_types = ("longcat_flash",)
    required_config_keys = ("hidden_size", "num_layers", "num_attention_heads", "vocab_size")  # (config.json's names)

    @property
    def layers(self):
        return [Sublayer(layer, i) for layer in self.backbone.layers for i in (0, 1)]

    def attention(self, sub):
        return sub.layer.self_attn[sub.index]

    def embed(self, ids):
        h = self.backbone.embed_tokens(ids)
        return torch.stack([h, torch.zeros_like(h)])

    def qkv(self, sub, x):
        attn = self.attention(sub)
        return self.latent_qkv(attn, sub.layer.input_layernorm[sub.index](x[0]), attn.mla_scale_q_lora,
                               attn.mla_scale_kv_lora)

    def residual(self, sub, x, attn_out):
        layer, i = sub.layer, sub.index
        h = x[0] + self.attention(sub).o_proj(attn_out)
        normed = layer.post_attention_layernorm[i](h)
        if i == 0:
            return torch.stack([h + layer.mlps[0](normed), layer.mlp(normed[None])[0]])
        return torch.stack([h + layer.mlps[1](normed) + x[1], torch.zeros_like(h)])

    def final_norm(self, x):
        return self.backbone.norm(x[0])

