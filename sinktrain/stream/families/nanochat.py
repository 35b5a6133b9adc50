"""nanochat (Karpathy's): the Llama layout with weightless RMSNorms everywhere, one more after the embedding, a
squared-ReLU MLP (the MLP module's business), q and k RMS-normed after the rotary embedding (a rotation keeps a
vector's length, so the norm commutes with it and the evaluator applies it before), and soft-capped logits."""

from sinktrain.stream.families.base import FamilyAdapter, soft_cap


class NanoChatAdapter(FamilyAdapter):
    family = "nanochat"
    model_types = ("nanochat",)

    def embed(self, ids):
        return self.backbone.norm(super().embed(ids))

    def qk_norm(self, attn, q, k):
        return attn.q_norm(q), attn.k_norm(k)

    def logits(self, x):
        return soft_cap(super().logits(x), self.config.final_logit_softcapping)
