"""IBM Granite (3.x dense): the Llama layout with four scalars from the config: the embeddings are multiplied by
`embedding_multiplier`, each branch by `residual_multiplier` before it joins the residual, the logits divided by
`logits_scaling`, and the attention scale is `attention_multiplier` (the attention module's `scaling`).
Granite-Docling's language model (`granite_docling_text`) is this layout.

Granite 3 MoE (`granitemoe`: granite-3.x-1b-a400m, 3b-a800m) and its shared-expert variant (`granitemoeshared`)
put a mixture of experts (`block_sparse_moe`, reading [batch, seq, hidden]) in place of the MLP; the shared
variant adds a dense `shared_mlp` on the same input."""

import torch

from sinktrain.stream.families.base import FamilyAdapter, LearnedSinkLogits


class GraniteAdapter(FamilyAdapter):
    family = "granite"
    model_types = ("granite", "granite_docling_text")
    required_config_keys = FamilyAdapter.required_config_keys + (
        "embedding_multiplier", "residual_multiplier", "logits_scaling", "attention_multiplier")

    def embed(self, ids):
        return self.backbone.embed_tokens(ids) * self.config.embedding_multiplier

    def residual(self, layer, x, attn_out):
        m = self.config.residual_multiplier
        x = x + layer.self_attn.o_proj(attn_out) * m
        return x + self.mlp(layer, layer.post_attention_layernorm(x)) * m

    def logits(self, x):
        return super().logits(x) / self.config.logits_scaling


class GraniteMoeAdapter(GraniteAdapter):
    family = "granitemoe"
    model_types = ("granitemoe", "granitemoeshared")

    def mlp(self, layer, h):
        out = layer.block_sparse_moe(h[None])[0]
        shared = getattr(layer, "shared_mlp", None)
        return out if shared is None else out + shared(h)


class RopePerLayerWithSinks(LearnedSinkLogits):
    """Mixed in before a Granite adapter by the sliding-window models (`granite_swa`, `granitemoe_swa`, e.g.
    granite-swash-2b): a learned attention sink per head (an extra softmax logit with no value, as gpt-oss's:
    sinktrain's `logit` kind), sliding windows on the layers `layer_types` marks, and a rotary base per layer
    (`layer_rope_theta`; 0: no position encoding at all), computed by one rotary module per distinct base."""

    def rotary_kinds(self):
        return [theta if theta else "nope" for theta in self.config.layer_rope_theta]

    def cos_sin(self, positions, dtype, kind=None):
        if kind in (None, "nope") or positions.numel() == 0:  # (None: the module at the global base)
            return super().cos_sin(positions, dtype, kind)
        module = next(m for m in self.backbone.rotary_embs if m.config.rope_parameters["rope_theta"] == kind)
        cos, sin = module(torch.empty(0, dtype=dtype, device=positions.device), positions[None])
        return cos[0], sin[0]


class GraniteSwaAdapter(RopePerLayerWithSinks, GraniteAdapter):
    family = "granite_swa"
    model_types = ("granite_swa",)


class GraniteMoeSwaAdapter(RopePerLayerWithSinks, GraniteMoeAdapter):
    family = "granitemoe_swa"
    model_types = ("granitemoe_swa",)


class HyperClovaXAdapter(GraniteAdapter):
    """NAVER HyperCLOVA X SEED Think (`hyperclovax`): Granite's muP scalars, except that the logits are multiplied
    by `logits_scaling`, and with `use_post_norm` an RMSNorm on each branch's output before it joins the residual
    (Peri-LN; `nn.Identity` otherwise)."""

    family = "hyperclovax"
    model_types = ("hyperclovax",)

    def residual(self, layer, x, attn_out):
        m = self.config.residual_multiplier
        x = x + layer.post_norm1(layer.self_attn.o_proj(attn_out)) * m
        return x + layer.post_norm2(self.mlp(layer, layer.post_attention_layernorm(x))) * m

    def logits(self, x):
        return FamilyAdapter.logits(self, x) * self.config.logits_scaling
