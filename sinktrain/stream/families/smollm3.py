"""SmolLM3: the Llama layout, but every fourth layer (`config.no_rope_layers[i] == 0`) uses no rotary embedding
at all (NoPE): its rotary kind is the identity rotation, so re-assigned positions change nothing there."""

import torch

from sinktrain.stream.families.base import FamilyAdapter


class SmolLM3Adapter(FamilyAdapter):
    family = "smollm3"
    model_types = ("smollm3",)

    def rotary_kinds(self):
        return [None if use_rope else "nope" for use_rope in self.config.no_rope_layers]

    def cos_sin(self, positions, dtype, kind=None):
        if kind == "nope":  # cos 1, sin 0: the model's own rotation function then leaves q and k as they are
            shape = (positions.shape[0], self.head_dim)
            return (torch.ones(shape, dtype=dtype, device=positions.device),
                    torch.zeros(shape, dtype=dtype, device=positions.device))
        return super().cos_sin(positions, dtype)

    def rotary_scaling(self, kind=None):
        return 1.0 if kind == "nope" else super().rotary_scaling(kind)
