"""Llama 4 (Scout, Maverick; the language model `llama4_text`): the Llama layout with
- complex-number rotary (complex_rotary.py) on three of every four layers, and none (NoPE) on the fourth
  (`no_rope_layers`, read off each attention module's `use_rope`);
- on the rotary layers an L2 norm of q and k (no weight) after the rotation: a rotation keeps a vector's length,
  so the norm commutes with it and the evaluator applies it before;
- on the NoPE layers, queries scaled by 1 + attn_scale·log(1 + ⌊(p + 1) / floor_scale⌋), exactly 1 below position
  floor_scale - 1 (8191 in the released models): positions stay below that (`position_limit`);
- chunked attention on the rotary layers (8192-token chunks aligned to positions 0, 8192, ...): a cache and its
  query inside one chunk see each other fully, so the chunk size bounds the cache as a sliding window does;
- a mixture of experts (routed plus shared, returning router logits) in `feed_forward`, dense in some layers.
The released checkpoints are image-text models (`llama4`); transformers' AutoModelForCausalLM loads their language
model alone (`Llama4ForCausalLM`), so their config.json is read through its `text_config`."""

from sinktrain.stream.families.base import FamilyAdapter
from sinktrain.stream.families.complex_rotary import ComplexRotary


class Llama4Adapter(ComplexRotary, FamilyAdapter):
    family = "llama4"
    model_types = ("llama4_text", "llama4")

    @classmethod
    def language_config(cls, config):
        return config.get_text_config()

    def rotary_kinds(self):
        return [None if attn.use_rope else "nope" for attn in map(self.attention, self.layers)]

    def qk_norm(self, attn, q, k):
        return (attn.qk_norm(q), attn.qk_norm(k)) if hasattr(attn, "qk_norm") else (q, k)

    def mlp(self, layer, h):
        out = layer.feed_forward(h)
        return out[0] if layer.is_moe_layer else out

    @classmethod
    def sliding_windows(cls, config):
        return [config.attention_chunk_size if t == "chunked_attention" else None for t in config.layer_types]

    @classmethod
    def position_limit(cls, config):
        if config.attn_temperature_tuning and not all(config.no_rope_layers):
            return (int(config.floor_scale) - 1,
                    "attention temperature tuning (it scales the queries of its layers without rotary)")
        return super().position_limit(config)
