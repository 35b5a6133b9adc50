"""Gemma 4 (`gemma4_text`; the image-text checkpoints wrap it, image_text.py): Gemma 3's sandwich of norms around
both branches, q/k RMSNorm per head, sliding-window layers (512 or 1024) and soft-capped logits, plus
- full-attention layers with their own head width and K/V head count (`per_layer_config`), rotary with
  "proportional" RoPE (a fixed function of the position whose upper frequencies are 0), and optionally keys that
  double as values (`attention_k_eq_v`: no `v_proj`);
- values RMS-normed without a weight, and an attention scale of 1 (the q/k norms set the scale);
- the last `num_kv_shared_layers` layers compute no keys or values: each attends to those of the last earlier
  layer of its type (`kv_source`);
- per-layer embeddings (PLE): a second embedding of the token plus a projection of the first, one slice per
  layer, gated into the residual after the MLP;
- with `enable_moe_block`, a mixture of experts beside the dense MLP, each with its own norms;
- a per-layer scalar on the layer's output.
The model's rotation function takes one tensor, not a (query, key) pair."""

from sinktrain.stream.families.base import FamilyAdapter, soft_cap
from sinktrain.stream.families.gemma2 import Gemma2Adapter


class Gemma4Adapter(FamilyAdapter):
    family = "gemma4"
    model_types = ("gemma4_text",)
    rotary_per_layer_type = True

    def __init__(self, model):
        super().__init__(model)
        # Read off the attention modules (the config's description of the sharing changed after transformers 5.17):
        # a shared layer attends to the K/V of the layer of its type that stores them.
        attns = [self.attention(layer) for layer in self.layers]
        producer = {attn.layer_type: i for i, attn in enumerate(attns) if attn.store_full_length_kv}
        self._sources = [producer[attn.layer_type] if attn.is_kv_shared_layer else None for attn in attns]
        self._per_layer = None  # the current block's per-layer inputs [n, layers, d] (see embed)

    def kv_heads_and_head_dim(self):
        # The config refuses to name one head width or K/V head count for all layers; the evaluator reads each
        # layer's off its tensors, so these are the first layer's.
        attn = self.attention(self.layers[0])
        return self.num_heads // attn.num_key_value_groups, attn.head_dim

    @classmethod
    def unsupported(cls, config):
        if config.num_kv_shared_layers >= config.num_hidden_layers:
            return ("every layer of this Gemma 4 model attends to another model's keys and values (an assistant "
                    "model for speculative decoding); stream the model it assists")
        return None

    def kv_source(self, layer):
        return self._sources[layer.layer_idx]

    def embed(self, ids):
        x = self.backbone.embed_tokens(ids)
        if self.config.hidden_size_per_layer_input:
            per_layer = self.backbone.get_per_layer_inputs(ids[None], x[None])
            self._per_layer = self.backbone.project_per_layer_inputs(x[None], per_layer)[0]
        return x

    def qkv(self, layer, x):
        return self.project(layer.self_attn, layer.input_layernorm(x))

    @staticmethod
    def project(attn, h):
        """q, k, v of the normed input h [n, hidden]; k, v None in a layer that reuses another's."""
        n = h.shape[0]
        q = attn.q_norm(attn.q_proj(h).view(n, -1, attn.head_dim))
        if attn.is_kv_shared_layer:
            return q, None, None
        k = attn.k_proj(h).view(n, -1, attn.head_dim)
        v = k if attn.v_proj is None else attn.v_proj(h).view(n, -1, attn.head_dim)
        return q, attn.k_norm(k), attn.v_norm(v)

    def _rotate(self, x, cos, sin, seq_major):
        return self._apply_rotary(x[None], cos[None], sin[None], unsqueeze_dim=2 if seq_major else 1)[0]

    def residual(self, layer, x, attn_out):
        x = x + layer.post_attention_layernorm(layer.self_attn.o_proj(attn_out))
        out = layer.mlp(layer.pre_feedforward_layernorm(x))
        if layer.enable_moe_block:  # experts read the residual before the MLP's norm, beside the dense MLP
            _, weights, index = layer.router(x)
            experts = layer.experts(layer.pre_feedforward_layernorm_2(x), index, weights)
            out = layer.post_feedforward_layernorm_1(out) + layer.post_feedforward_layernorm_2(experts)
        x = x + layer.post_feedforward_layernorm(out)
        if layer.hidden_size_per_layer_input:
            x = x + self.per_layer_update(layer, x)
        return x * layer.layer_scalar

    def per_layer_update(self, layer, h):
        """The layer's per-layer input, gated by h [..., n, hidden] and projected back: what joins the residual."""
        gated = layer.act_fn(layer.per_layer_input_gate(h)) * self._per_layer[:, layer.layer_idx]
        return layer.post_per_layer_input_norm(layer.per_layer_projection(gated))

    def logits(self, x):
        return soft_cap(super().logits(x), self.config.final_logit_softcapping)


class Gemma4UnifiedTextAdapter(Gemma4Adapter):
    """Gemma 4 12B (`gemma4_unified_text`, inside the `gemma4_unified` image-text model): Gemma 4's attention (its
    head widths, keys as values, shared K/V layers) in Gemma 2's layer with the per-layer scalar: no per-layer
    embeddings and no experts."""

    family = "gemma4_unified"
    model_types = ("gemma4_unified_text",)

    def embed(self, ids):
        return self.backbone.embed_tokens(ids)

    def residual(self, layer, x, attn_out):
        return Gemma2Adapter.residual(self, layer, x, attn_out) * layer.layer_scalar
