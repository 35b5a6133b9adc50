"""DeepSeek-V3 / R1 (and the models built on its code: Moonlight, `glm4_moe_lite` (GLM-4.7-Flash), Youtu-LLM,
`sarvam_mla` (Sarvam-M's latent-attention models)) and Mistral Small 4 (`mistral4`, below):
multi-head latent attention (MLA) with a mixture of experts.

Per head, a query is [q_nope, q_rot] (from `q_proj`, or through the low-rank `q_a_proj` -> RMSNorm -> `q_b_proj`)
and a key is [k_nope, k_rot]: k_nope and the value come out of one normalized latent per token (`kv_b_proj` of
`kv_a_layernorm(kv_a_proj_with_mqa(h)[:kv_lora_rank])`), and k_rot, the only rotated part, is shared by all heads.
The adapter hands the evaluator q = [q_rot, q_nope] and k = [k_rot, k_nope] (the same dot product with the rotary
dims first, where the evaluator expects them), one K/V head per query head, and values of their own width
(`v_head_dim`). The softmax scale includes YaRN's mscale (the module's `scaling`).

With `rope_interleave` (the released checkpoints) the model rotates interleaved pairs (x0, x1), (x2, x3), ... and
returns them de-interleaved, [rotated evens, rotated odds]: exactly the ordinary rotate-half rotation of the
de-interleaved vector. So the adapter de-interleaves q_rot and k_rot itself and rotates with the model's
`apply_rotary_pos_emb` (the same arithmetic, bit for bit). transformers caches the latent and the rotated k_rot,
de-interleaved; the sink caches un-rotate and re-rotate k_rot in that layout (`cache_rotates_values`)."""

import torch

from sinktrain.stream.families.base import FamilyAdapter
from sinktrain.stream.families.complex_rotary import ComplexRotary
from sinktrain.stream.families.ministral import Llama4QueryScaling


class DeepseekV3Adapter(FamilyAdapter):
    family = "deepseek_v3"
    model_types = ("deepseek_v3", "glm4_moe_lite", "youtu", "sarvam_mla")
    mlp_takes_batches = True
    rotary_on_leading_slice = True
    cache_rotates_values = True

    def __init__(self, model):
        super().__init__(model)
        c = self.config
        self.nope_dim, self.rope_dim = int(c.qk_nope_head_dim), int(c.qk_rope_head_dim)
        self.head_dim, self.value_dim = self.nope_dim + self.rope_dim, int(c.v_head_dim)
        self.num_kv_heads = self.num_heads  # each head gets its own k_nope and value out of the latent

    @property
    def interleaved_rotary(self) -> bool:
        return bool(getattr(self.config, "rope_interleave", False))

    def qkv(self, layer, x):
        return self.latent_qkv(layer.self_attn, layer.input_layernorm(x))

    def latent_qkv(self, attn, h, q_scale: float | None = None, latent_scale: float | None = None):
        """q, k, v of normed hidden states h through latent attention module `attn` (LongCat-Flash scales the
        query and the normalized latent: `q_scale`, `latent_scale`)."""
        n, H = h.shape[0], self.num_heads
        q_proj = getattr(attn, "q_proj", None)  # (V3.2's module has only the low-rank form)
        q = q_proj(h) if q_proj is not None else attn.q_b_proj(attn.q_a_layernorm(attn.q_a_proj(h)))
        if q_scale is not None:
            q = q * q_scale
        q_nope, q_rot = q.view(n, H, self.head_dim).split([self.nope_dim, self.rope_dim], dim=-1)
        latent, k_rot = attn.kv_a_proj_with_mqa(h).split([attn.kv_lora_rank, self.rope_dim], dim=-1)
        latent = attn.kv_a_layernorm(latent)
        if latent_scale is not None:
            latent = latent * latent_scale
        k_nope, v = attn.kv_b_proj(latent).view(n, H, -1).split([self.nope_dim, self.value_dim], dim=-1)
        if self.interleaved_rotary:
            q_rot, k_rot = (torch.cat([t[..., 0::2], t[..., 1::2]], dim=-1) for t in (q_rot, k_rot))
        q = torch.cat([q_rot, q_nope], dim=-1)
        k = torch.cat([k_rot[:, None].expand(n, H, self.rope_dim), k_nope], dim=-1)
        return q, k, v


class InterleavedRotaryOnly:
    """Mixed in before DeepseekV3Adapter by families whose rotary is always interleaved and whose modeling file has
    only the interleaved rotation (GLM-5, LongCat-Flash). That function rotates pairs (x0, x1), ... and returns them
    as [rotated evens, rotated odds], the layout the adapter works in: re-interleaving first makes it the ordinary
    rotate-half rotation of its input (also what the sparse-attention indexers' cached keys need)."""

    interleaved_rotary = True
    rotary_function = "apply_rotary_pos_emb_interleave"

    def _rotate(self, x, cos, sin, seq_major):
        half = x.shape[-1] // 2
        return super()._rotate(torch.stack([x[..., :half], x[..., half:]], dim=-1).flatten(-2), cos, sin, seq_major)


class DeepseekV32Adapter(InterleavedRotaryOnly, DeepseekV3Adapter):
    """DeepSeek-V3.2 (`deepseek_v32`) and GLM-5 (`glm_moe_dsa`): V3's latent attention plus DeepSeek Sparse
    Attention, whose indexer keeps for each query the `index_topk` keys it scores highest (2048 in the released
    models) and masks the rest. A query that sees at most that many keys keeps them all, so its attention is V3's
    exactly: positions stay below `index_topk` (`position_limit`; caches of at most index_topk - 1 tokens). The sink
    caches keep the indexer's own keys beside the others (un-rotated, re-rotated at their cache indices), so the
    model's indexer runs on them as on transformers' cache."""

    family = "deepseek_v32"
    model_types = ("deepseek_v32", "glm_moe_dsa")
    # (the interleaved rotation also un-rotates both indexers' cached keys: see InterleavedRotaryOnly)

    @classmethod
    def unsupported(cls, config):
        import transformers
        from packaging.version import Version

        if Version(transformers.__version__) < Version("5.18"):
            return ("DeepSeek-V3.2 and GLM-5 need transformers >= 5.18: 5.17 caches their expanded keys and values "
                    "instead of the latent that the sink caches keep; pip install 'transformers>=5.18'")
        return super().unsupported(config)

    @classmethod
    def position_limit(cls, config):
        limit = super().position_limit(config)
        topk = int(config.index_topk), "sparse attention (its indexer keeps each query's index_topk top-scored keys)"
        return topk if limit is None or topk[0] < limit[0] else limit


class DeepseekV2Adapter(ComplexRotary, DeepseekV3Adapter):
    """DeepSeek-V2 / V2-Lite / V2.5 and DeepSeek-Coder-V2: V3's latent attention with complex-number rotary
    (complex_rotary.py) on adjacent pairs, which its function takes head-major and returns in place, so nothing
    is de-interleaved."""

    family = "deepseek_v2"
    model_types = ("deepseek_v2",)
    rotary_seq_major = False


class Mistral4Adapter(Llama4QueryScaling, DeepseekV3Adapter):
    """Mistral Small 4 (`mistral4`): DeepSeek-V3's latent attention and experts, rotary interleaved or not
    (`rope_interleave`), and Ministral 3's query scaling, which is exactly 1 below its original context."""

    family = "mistral4"
    model_types = ("mistral4",)


class MiniCPM3Adapter(DeepseekV3Adapter):
    """MiniCPM3 (`minicpm3`): DeepSeek-V2's latent attention with ordinary rotate-half rotary, in the Llama layer with
    a dense MLP; muP-style scalars: embeddings times `scale_emb` (inside its embedding module), each branch times
    scale_depth / sqrt(layers) before it joins the residual, and the final hidden state divided by hidden_size /
    dim_model_base (the config's `logits_scaling`) before the head."""

    family = "minicpm3"
    model_types = ("minicpm3",)

    def residual(self, layer, x, attn_out):
        m = layer.residual_scale
        x = x + layer.self_attn.o_proj(attn_out) * m
        return x + self.mlp(layer, layer.post_attention_layernorm(x)) * m

    def logits(self, x):
        return self.model.get_output_embeddings()(self.final_norm(x) / self.config.logits_scaling)
