"""Token ids to text as they are produced, without re-decoding the whole output each step."""

from __future__ import annotations


class IncrementalDetokenizer:
    """Decodes new ids against a few ids of left context, so tokenizers that drop a leading space at the start
    of a decode (SentencePiece) and multi-byte characters split across tokens come out right."""

    CONTEXT = 4

    def __init__(self, tokenizer, context: list[int] = ()):
        """`context`: the ids fed before the first one pushed (the prompt's), so that the first token's leading
        space survives: SentencePiece drops it when a decode starts there ('France isParis')."""
        self.tok = tokenizer
        self.context: list[int] = list(context)[-self.CONTEXT :]
        self.pending: list[int] = []

    def push(self, token: int) -> str:
        self.pending.append(token)
        if self.decode(self.context + self.pending).endswith("\ufffd"):  # an incomplete UTF-8 character: wait
            return ""
        return self.flush()

    def flush(self) -> str:
        """The text of the pending ids, as it follows the context."""
        if not self.pending:
            return ""
        before = self.decode(self.context)
        text = self.decode(self.context + self.pending)
        new = text[len(before) :] if text.startswith(before) else self.decode(self.pending)
        self.context = (self.context + self.pending)[-self.CONTEXT :]
        self.pending = []
        return new

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False) if ids else ""
