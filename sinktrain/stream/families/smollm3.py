"""SmolLM3: the Llama layout, but every fourth layer (`config.no_rope_layers[i] == 0`) uses no rotary embedding
at all (NoPE): its rotary kind is the identity rotation, so re-assigned positions change nothing there."""

from sinktrain.stream.families.base import FamilyAdapter


class SmolLM3Adapter(FamilyAdapter):
    family = "smollm3"
    model_types = ("smollm3",)

    def rotary_kinds(self):
        return [None if use_rope else "nope" for use_rope in self.config.no_rope_layers]
