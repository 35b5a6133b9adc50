"""Where a model comes from: a local folder, a Hugging Face hub id, a `.gguf` file, or a zoo name.

Every stage that takes a trained or pretrained model (stream-eval, and the verbs after it) resolves it here,
so the same spellings work everywhere and a bad one fails at once, in one line, before any long work:
- a folder with `config.json` (a sinktrain export, a stock `save_pretrained` folder);
- a `.gguf` file, loaded by transformers' GGUF reader and dequantized to the requested dtype (needs the
  `gguf` and `accelerate` packages: `pip install 'sinktrain[gguf]'`);
- a hub id `owner/name` (downloaded by transformers into the HF cache, or read from it offline);
- a zoo name (`sinktrain.model_zoo`, e.g. `smollm2-135m-instruct`), fetched once into the sinktrain cache.
A name that looks like a path (starts with `.`, `/` or `~`, has more than one `/`, or its first folder exists
here, as `exports/x` when `exports/` does) and does not exist is a local error at once, never a hub lookup.

Beside sinktrain/model/ rather than in it: importing anything in that package imports the package, which loads
torch and transformers (seconds), and a verb resolves its models before those load. The loaders are in
sinktrain/model/source.py.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    spec: str  # as the user gave it
    kind: str  # "folder" | "gguf" | "hub"
    location: str  # folder path, the .gguf file's folder, or the hub id
    gguf_file: str | None = None

    def kwargs(self) -> dict:
        # trust_remote_code=False, said explicitly: left unset, transformers asks on stdin whether to run the Python
        # files of a folder whose config.json has an auto_map (a `y` would run them); set, it refuses.
        return {"trust_remote_code": False, **({"gguf_file": self.gguf_file} if self.gguf_file else {})}

    def record(self) -> dict:
        """Where the model was read from, for a verb's run.json: the spec as given, its kind, and the folder (a zoo
        name's cached folder, a .gguf file's folder) or hub id; for a hub id also the commit read (`revision`):
        the id alone names whatever the repository holds later."""
        record = {"spec": self.spec, "kind": self.kind, "location": self.location}
        if self.kind == "hub":
            record["revision"] = hub_revision(self.location)
        else:  # a relative folder reads differently from another working directory
            record["location"] = str(Path(self.location).resolve())
        if self.gguf_file:
            record["gguf_file"] = self.gguf_file
        return record


def resolve_model_source(spec: str | Path) -> ModelSource:
    """Classify `spec` without loading anything heavy; a one-line ValueError/FileNotFoundError if it cannot be
    a model."""
    from sinktrain import model_zoo as zoo

    text = str(spec)
    if not text.strip():  # Path("") is the current folder, which was then said to have no config.json
        raise ValueError("no model given; pass MODEL (a model folder, a .gguf file, a hub id or a zoo name) as the "
                         "verb's first argument")
    path = Path(text).expanduser()
    if text.endswith(".gguf") and not path.is_dir():  # (a folder so named is a folder)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {text!r} does not exist; pass the path of a .gguf model file")
        with open(path, "rb") as f:  # the reader's own words name no file ("cannot mmap an empty file")
            magic = f.read(4)
        if magic != b"GGUF":
            what = "is empty" if not magic else "does not start with the GGUF magic bytes"
            raise ValueError(f"GGUF file {text!r} {what}, so it is no GGUF model; download or convert it again")
        if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None:
            raise ValueError(f"reading {text!r} needs the gguf and accelerate packages; pip install 'sinktrain[gguf]'")
        check_gguf_layout(path, text)
        return ModelSource(text, "gguf", str(path.parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            if (path / "run.json").is_file() or (path / "checkpoints").is_dir() or (
                    path.parent.name == "checkpoints" and (path / "meta.json").is_file()):
                raise FileNotFoundError(f"{text!r} is a training run or checkpoint, not a model folder; export it "
                                        f"first (sinktrain export {text} OUT_DIR) and pass OUT_DIR")
            raise FileNotFoundError(f"model folder {text!r} has no config.json; pass a Hugging Face model folder")
        return ModelSource(text, "folder", str(path))
    if path.exists():
        raise ValueError(f"model {text!r} is a file; pass a model folder, a .gguf file or a hub id (owner/name)")
    if text in zoo.MODELS:
        return ModelSource(text, "folder", str(zoo.fetch(text)))
    # `exports/tiny-snk` with an `exports/` folder here is a mistyped path: a hub lookup would retry for half a minute
    local = text.startswith((".", "/", "~"))  # ("/name" has an empty first part, which Path reads as ".")
    owner_here = not local and text.count("/") == 1 and Path(text.split("/", 1)[0]).expanduser().is_dir()
    if local or text.count("/") != 1 or not HUB_ID.match(text) or owner_here:
        here = f" (its first folder {text.split('/', 1)[0]!r} is here, so it is a path, not a hub id)" \
            if owner_here else ""
        raise FileNotFoundError(
            f"model {text!r} does not exist{here}; pass a model folder, a .gguf file, a hub id (owner/name) or one "
            f"of sinktrain's zoo names ({', '.join(zoo.MODELS)})"
        )
    return ModelSource(text, "hub", text)


def check_model_spec(spec: str | Path) -> None:
    """resolve_model_source's refusals without its downloads: a verb checks its models with this before torch loads
    and before its other checks (its text, its output folder), which a zoo model's first fetch (~100 MB) must not
    precede; the verb resolves them, fetching a zoo model, once those checks pass."""
    from sinktrain import model_zoo as zoo

    if str(spec) not in zoo.MODELS:
        resolve_model_source(spec)


# GGUF metadata value types of a fixed width (u8, i8, u16, i16, u32, i32, f32, bool, u64, i64, f64); 8 is a
# string, 9 an array.
GGUF_VALUE_WIDTHS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def check_gguf_layout(path: Path, text: str) -> None:
    """A GGUF file's header, metadata and tensor table parse, and every tensor lies inside the file. A file cut
    short (a broken download) otherwise ends in a struct.error traceback from the reader, or, cut inside the
    tensor data, in "cannot reshape array of size ..." naming no file, after the rest of the model has loaded.
    Reads the header only (a memory map; no tensor data), so it costs a fraction of a second."""
    import mmap
    import struct

    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    def damaged(reason: str) -> ValueError:
        return ValueError(f"GGUF file {text!r} is cut short or damaged ({reason}); download or convert it again")

    size = path.stat().st_size
    if size < 24:  # magic, version, tensor count, metadata count
        raise damaged(f"it is {size} bytes, shorter than the 24-byte GGUF header")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as blob:
        version, tensor_count, kv_count = struct.unpack_from("<IQQ", blob, 4)
        if version & 0xFFFF == 0:  # written on a big-endian machine: left to the reader
            return
        if version not in (2, 3):
            raise damaged(f"its version field reads {version}; GGUF files are v2 or v3")

        def string(pos: int) -> tuple[bytes, int]:
            (length,) = struct.unpack_from("<Q", blob, pos)
            if length > size - pos - 8:
                raise struct.error("a string runs past the end")
            return blob[pos + 8:pos + 8 + length], pos + 8 + length

        def skip_value(pos: int, kind: int) -> int:
            if kind in GGUF_VALUE_WIDTHS:
                return pos + GGUF_VALUE_WIDTHS[kind]
            if kind == 8:
                return string(pos)[1]
            if kind != 9:
                raise ValueError(f"a metadata value of unknown type {kind}")
            element, count = struct.unpack_from("<IQ", blob, pos)
            pos += 12
            if element in GGUF_VALUE_WIDTHS:
                return pos + count * GGUF_VALUE_WIDTHS[element]
            for _ in range(count):
                pos = skip_value(pos, element)
                if pos > size:
                    break
            return pos

        alignment, pos, tensors = 32, 24, []
        try:
            for _ in range(kv_count):
                key, pos = string(pos)
                (kind,) = struct.unpack_from("<I", blob, pos)
                if key == b"general.alignment" and kind == 4:
                    (alignment,) = struct.unpack_from("<I", blob, pos + 4)
                pos = skip_value(pos + 4, kind)
                if pos > size:
                    raise struct.error("a value runs past the end")
            for _ in range(tensor_count):
                name, pos = string(pos)
                (dims,) = struct.unpack_from("<I", blob, pos)
                shape = struct.unpack_from(f"<{dims}Q", blob, pos + 4)
                kind, offset = struct.unpack_from("<IQ", blob, pos + 4 + 8 * dims)
                pos += 16 + 8 * dims
                tensors.append((name, shape, kind, offset))
        except struct.error:
            raise damaged(f"it ends at byte {size:,}, inside its header") from None
        except ValueError as e:
            raise damaged(f"its header holds {e}") from None
    if alignment == 0 or alignment & (alignment - 1):
        raise damaged(f"its general.alignment is {alignment}, not a power of two")
    data_start = -(-pos // alignment) * alignment
    end = data_start
    for name, shape, kind, offset in tensors:
        try:
            block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (ValueError, KeyError):  # a type newer than this gguf package: the reader names it
            continue
        elements = 1
        for n in shape:
            elements *= n
        end = max(end, data_start + offset + elements // block * block_bytes)
    if end > size:
        raise damaged(f"its tensors need {end:,} bytes, it has {size:,}")


def hub_revision(repo_id: str) -> str | None:
    """The commit of a hub model that its loaders read: the snapshot folder of config.json in the local HF cache
    (hub/models--owner--name/snapshots/<commit>/), which the load has just filled or read offline. None when the
    cache does not hold it (a load that did not go through the cache) or cannot be read: the record is written
    after the work, which it must not fail."""
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(repo_id, "config.json")
    except (OSError, ValueError):  # an unreadable cache folder; an id the hub's validator refuses
        return None
    if not isinstance(path, str):  # None, or the marker of a file the hub is known not to have
        return None
    snapshot = Path(path).parent
    return snapshot.name if snapshot.parent.name == "snapshots" else None
