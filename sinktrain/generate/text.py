"""Token ids to text as they are produced, without re-decoding the whole output each step."""

from __future__ import annotations


class IncrementalDetokenizer:
    """Decodes new ids against a few ids of left context, so tokenizers that drop a leading space at the start
    of a decode (SentencePiece) and multi-byte characters split across tokens come out right."""

    CONTEXT = 4

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.context: list[int] = []
        self.pending: list[int] = []

    def push(self, token: int) -> str:
        self.pending.append(token)
        before = self.tok.decode(self.context, skip_special_tokens=False) if self.context else ""
        text = self.tok.decode(self.context + self.pending, skip_special_tokens=False)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 character: wait for its next byte
            return ""
        new = text[len(before):] if text.startswith(before) else self.tok.decode(self.pending)
        self.context = (self.context + self.pending)[-self.CONTEXT:]
        self.pending = []
        return new

    def flush(self) -> str:
        text = self.tok.decode(self.pending, skip_special_tokens=False) if self.pending else ""
        self.pending = []
        return text
