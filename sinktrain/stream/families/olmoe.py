"""OLMoE: the Llama layout (pre-norm) with an RMSNorm over the whole query and key projections (all heads at
once, before the rotary embedding), q/k/v clamped to ±`clip_qkv` when set, and a mixture-of-experts MLP."""

from sinktrain.stream.families.base import FamilyAdapter


class OlmoeAdapter(FamilyAdapter):
    family = "olmoe"
    model_types = ("olmoe",)
    window_on_every_layer = True
    mlp_takes_batches = True

    def qkv(self, layer, x):
        attn, n, h = layer.self_attn, x.shape[0], layer.input_layernorm(x)
        q, k, v = attn.q_norm(attn.q_proj(h)), attn.k_norm(attn.k_proj(h)), attn.v_proj(h)
        clip = self.config.clip_qkv
        if clip is not None:
            q, k, v = (t.clamp(min=-clip, max=clip) for t in (q, k, v))
        return (q.view(n, self.num_heads, self.head_dim), k.view(n, self.num_kv_heads, self.head_dim),
                v.view(n, self.num_kv_heads, self.head_dim))
