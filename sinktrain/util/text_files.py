"""Reading a user's text file: UTF-8 or one clear line.

Decoding with replacement characters would go on with text that is not what the file says (a Latin-1 book
streamed with U+FFFD where its accents were, a binary file read as text) and report a number with exit 0."""

from __future__ import annotations

import errno
import json
import stat
from pathlib import Path

from sinktrain.util.utf8 import non_utf8_file

MISSING, FOLDER = "does not exist", "is a folder"
FILE_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
              stat.S_IFSOCK: "a socket"}


def file_problem(path: str | Path) -> str | None:
    """Why `path` is not a regular file to read, as the rest of a sentence after it (MISSING where it does not
    exist), or None where it is one. Path.is_file() is False alike for a missing path, a device, a FIFO and a
    symlink loop, so a line built on it alone calls all of them missing."""
    if str(path) == "":  # Path("") is the current folder
        return "is an empty path"
    try:
        mode = Path(path).stat().st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symlink loop"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return MISSING
        return f"cannot be read ({e.strerror})"
    if stat.S_ISDIR(mode):
        return FOLDER
    if not stat.S_ISREG(mode):
        return f"is not a regular file ({FILE_KINDS.get(stat.S_IFMT(mode), 'a special file')})"
    return None


def read_utf8(path: str | Path, what: str = "file") -> str:
    """The text of `path`; a file that is not UTF-8 raises ValueError naming it, the first bad byte and the fix."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(path, what, e.object[e.start], e.start) from None
    except OSError as e:  # a read error (/proc/self/mem: EIO) was a bare "[Errno 5] Input/output error", no file named
        raise _unreadable(path, what, e) from None


def check_utf8_file(path: str | Path, what: str = "file") -> None:
    """Raise what read_utf8 would for `path`, reading it in chunks instead of whole: a check before the work that
    reads it (a study's stream text, before hours of training)."""
    try:
        bad = non_utf8_file(path)
    except OSError as e:
        raise _unreadable(path, what, e) from None
    if bad is not None:
        raise _not_utf8(path, what, *bad)


def _not_utf8(path, what: str, byte: int, offset: int) -> ValueError:
    return ValueError(f"{what} {str(path)!r} is not UTF-8 text (byte 0x{byte:02x} at offset {offset:,}); convert "
                      f"it first (e.g. iconv -f latin1 -t utf-8)")


def _unreadable(path, what: str, e: OSError) -> OSError:
    return type(e)(f"{what} {str(path)!r} cannot be read ({e.strerror or e}); pass a readable UTF-8 text file")


def check_utf8_text(text: str, what: str) -> None:
    """Refuse text from the command line that was not UTF-8: Python keeps its bytes as lone surrogates
    (surrogateescape), which a tokenizer cannot encode. The line reads like read_utf8's for a file."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = e.object[e.start]
        byte = ord(bad) - 0xDC00 if "\udc80" <= bad <= "\udcff" else None  # surrogateescape's range
        offset = len(text[: e.start].encode("utf-8", "surrogateescape"))
        shown = f"byte 0x{byte:02x}" if byte is not None else f"character U+{ord(bad):04X}"
        raise ValueError(f"{what} is not UTF-8 text ({shown} at offset {offset:,}); pass UTF-8 text (e.g. "
                         f"through iconv -f latin1 -t utf-8)") from None


def load_json(path: str | Path):
    """The JSON in a file. JSON nested too deeply for the parser is a ValueError like any JSON it cannot read, so
    the caller's one line names the file (it was a RecursionError traceback)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
