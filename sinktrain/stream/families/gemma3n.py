"""Gemma 3n (E2B, E4B; `gemma3n_text`): Gemma 4's attention (q/k/v norms, scale 1, single-tensor rotation, shared
K/V layers, per-layer embeddings: gemma4.py) inside AltUp ("alternating updates"): the residual stream is
`altup_num_inputs` parallel copies of the hidden state. The embedding seeds them (the extra copies are
projections rescaled to the embedding's RMS); each layer predicts all copies from all, runs attention, a LAuReL
low-rank branch and the MLP on the active one, then corrects every copy from the result and adds the gated
per-layer input to the others; the head averages the copies (unprojected and rescaled the same way).

The evaluator's hidden state x is the stack of copies [copies, n, hidden]. `qkv` keeps the layer's predictions for
`residual` (the evaluator calls the two in turn for each layer)."""

import math

import torch

from sinktrain.stream.families.base import soft_cap
from sinktrain.stream.families.gemma4 import Gemma4Adapter


def _rescaled(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """h scaled to like's RMS per token, as Gemma 3n's model does for its extra AltUp copies."""
    target = torch.mean(like**2, dim=-1, keepdim=True) ** 0.5
    return h * target / torch.sqrt(torch.mean(h**2, dim=-1, keepdim=True).clamp(min=1e-5))


class Gemma3nAdapter(Gemma4Adapter):
    family = "gemma3n"
    model_types = ("gemma3n_text",)

    def embed(self, ids):
        bb = self.backbone
        x0 = bb.embed_tokens(ids)
        self._per_layer = bb.project_per_layer_inputs(x0[None], bb.get_per_layer_inputs(ids[None]))[0]
        return torch.stack([x0] + [_rescaled(proj(x0), x0) for proj in bb.altup_projections])

    def qkv(self, layer, x):
        predictions = layer.altup.predict(x[:, None])  # [copies, 1, n, hidden]
        active = predictions[self.config.altup_active_idx]
        normed = layer.input_layernorm(active)
        self._layer_state = predictions, active, normed
        return self.project(layer.self_attn, normed[0])

    def residual(self, layer, x, attn_out):
        predictions, active, normed = self._layer_state
        attn = layer.post_attention_layernorm(layer.self_attn.o_proj(attn_out[None]))
        h = (active + attn + layer.laurel(normed)) / math.sqrt(2)
        h = h + layer.post_feedforward_layernorm(layer.mlp(layer.pre_feedforward_layernorm(h)))
        corrected = layer.altup.correct(predictions, h)
        first = corrected[self.config.altup_active_idx].clone()
        if self.config.altup_correct_scale:
            first = layer.altup.scale_corrected_output(first)
        corrected[1:] += self.per_layer_update(layer, first)
        return corrected[:, 0]

    def logits(self, x):
        unembed = self.backbone.altup_unembed_projections
        copies = [x[0]] + [_rescaled(proj(x[i + 1]), x[0]) for i, proj in enumerate(unembed)]
        logits = self.model.get_output_embeddings()(self.backbone.norm(torch.mean(torch.stack(copies), dim=0)))
        return soft_cap(logits, self.config.final_logit_softcapping)
