"""OLMo (the first OLMo, e.g. OLMo-1B-hf, OLMo-7B-0724-hf): the Llama layout with LayerNorms that have no weights
(the norm modules' business) and q, k, v clamped to ±`clip_qkv` when set. OLMoE adds norms and experts (olmoe.py)."""

from sinktrain.stream.families.base import FamilyAdapter


class OlmoAdapter(FamilyAdapter):
    family = "olmo"
    model_types = ("olmo",)

    def clip_qkv(self, q, k, v):
        clip = self.config.clip_qkv
        if clip is None:
            return q, k, v
        return tuple(t.clamp(min=-clip, max=clip) for t in (q, k, v))
