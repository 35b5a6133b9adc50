"""Whether a file is UTF-8, read in chunks (a corpus file need not fit in memory): a source that is not is refused
before anything is tokenized or streamed, not when its turn comes hours later.

CPython's UTF-8 decoder checks ASCII text at several GB/s and other text at hundreds of MB/s, so a whole pass costs
about what the sha256 of the same bytes does."""

from __future__ import annotations

import codecs
from typing import BinaryIO

CHUNK = 1 << 20


def first_non_utf8(stream: BinaryIO, limit: int | None = None) -> tuple[int, int] | None:
    """(byte, offset) of the first byte of `stream` that does not decode as UTF-8, else None. `limit`: check only
    the first `limit` bytes or so (a character cut at that point is not an error)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes handed to the decoder so far
    while limit is None or offset < limit:
        chunk = stream.read(CHUNK)
        pending = len(decoder.getstate()[0])  # the start of a character cut by the previous chunk
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as e:  # e.object: the pending bytes, then this chunk
            return e.object[e.start], offset - pending + e.start
        if not chunk:
            break
        offset += len(chunk)
    return None


def non_utf8_file(path, limit: int | None = None) -> tuple[int, int] | None:
    with open(path, "rb") as f:
        return first_non_utf8(f, limit)
