"""Loading a model from where it comes from (sinktrain/model_source.py resolves that: a local folder, a hub id, a
`.gguf` file or a zoo name): its config, weights and tokenizer, each failure one line naming the model.

The resolution lives beside this package, so that a verb refuses a mistyped model before torch and transformers
load; its names are imported here too, for the loaders and for callers that take both.
"""

from __future__ import annotations

import functools
import json
import os
import re
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sinktrain.model_source import ModelSource, resolve_model_source  # noqa: F401  (callers take it with the loaders)


def refuse_custom_code(source) -> None:
    """A folder whose config.json maps its architecture to code shipped beside it (`auto_map`) for a model type
    that neither transformers nor sinktrain defines: transformers would ask on stdin whether to run that code.
    sinktrain never runs a model's own code, so it refuses in one line instead of asking."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    import sinktrain.model  # noqa: F401  registers sinktrain_gpt_neox, whose exports carry an auto_map too
    if source.kind != "folder":
        return
    raw = raw_config(source) or {}
    if raw.get("auto_map") and raw.get("model_type") not in CONFIG_MAPPING:
        raise ValueError(f"cannot load model {source.spec!r}: its config.json maps model_type "
                         f"{raw.get('model_type')!r} to code shipped in the folder (auto_map), and sinktrain never "
                         f"runs a model's own code; use a model whose architecture transformers or sinktrain defines")


# Weight files that are pickles (pytorch_model.bin, *.pt, ...): a folder holding only these has nothing to load.
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def check_weight_files(source) -> None:
    """Every .safetensors file of a model folder opens: its header is whole and its tensors lie inside the file.
    Opening maps the file without reading the tensors, so a cut-short copy fails here in a second, not when the
    model loads after hours of other work."""
    from safetensors import safe_open

    if source.kind != "folder":  # a hub id is checked by its download, a GGUF file by its reader
        return
    weights = sorted(Path(source.location).glob("*.safetensors"))
    if not weights:  # transformers would fall back to pytorch_model.bin: a pickle, never unpickled here
        pickles = sorted(p.name for p in Path(source.location).iterdir() if p.suffix in PICKLED_WEIGHTS)
        held = f" (it holds {', '.join(pickles[:3])}, a pickle, which sinktrain never loads)" if pickles else ""
        raise ValueError(f"cannot load model {source.spec!r}: the folder has no .safetensors weights{held}; export or "
                         f"save it with safetensors")
    for path in weights:
        try:
            with safe_open(str(path), "pt"):
                pass
        except Exception as e:  # SafetensorError, or an OSError naming the file
            raise ValueError(f"cannot load model {source.spec!r}: {path.name} is damaged "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); copy or export it again") \
                from None


def raw_config(source: ModelSource) -> dict | None:
    """config.json as written (before transformers fills in defaults); None for GGUF (its header is the config)."""
    if source.kind == "folder":
        try:
            raw = json.loads((Path(source.location) / "config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{source.location}/config.json is not valid JSON ({e}); re-export the model") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("model_type"), str):
            what = "has no model_type" if isinstance(raw, dict) else f"holds a JSON {type(raw).__name__}, not an object"
            raise ValueError(f"{source.location}/config.json {what}, so no architecture can be read from it; "
                             f"re-export the model or restore its config.json")
        return raw
    if source.kind == "hub":
        from transformers import PretrainedConfig

        return _hub_call(source, lambda: PretrainedConfig.get_config_dict(source.location)[0])
    return None


# Sizes that divide or index something as soon as transformers or an adapter builds the model (0 heads: a division
# by zero inside transformers' own config check; -1 layers: an empty layer list), so none can be below 1.
POSITIVE_CONFIG_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                        "vocab_size", "head_dim")


def load_config(source: ModelSource):
    """The model's config as transformers reads it, with an impossible value in config.json (a size below 1, a
    string or null where transformers wants a number, heads that do not divide the width) refused in one line naming
    config.json and the key, instead of transformers' multi-line validation error or a ZeroDivisionError/IndexError
    later."""
    import sinktrain.model  # noqa: F401  registers sinktrain_gpt_neox with the Auto classes
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    where = f"{source.location}/config.json" if source.kind == "folder" else f"the config.json of {source.spec!r}"
    raw = raw_config(source)
    for block, prefix in ((raw or {}, ""), ((raw or {}).get("text_config") or {}, "text_config.")):
        if not isinstance(block, dict):
            continue
        for key in POSITIVE_CONFIG_KEYS:
            value = block.get(key)
            # (only numbers: a string or null is transformers' to judge, some wrappers leave a size null)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 1:
                raise ValueError(f"{where}: {prefix}{key} is {value!r}, but a model needs at least 1; fix "
                                 f"config.json (or export the model again)")
    try:
        with gguf_parsed_once() if source.kind == "gguf" else nullcontext():
            return _hub_call(source, lambda: AutoConfig.from_pretrained(source.location, **source.kwargs()))
    except StrictDataclassError as e:
        # "Validation error for field 'hidden_size':\n    TypeError: Field 'hidden_size' expected int, got str ..."
        # The indented line says what is wrong; for a field it names the key too.
        cause = e.__cause__ or e
        field = re.match(r"Validation error for field '([^']+)'", str(e))
        what = f"{field[1]}: {cause}" if field and field[1] not in str(cause) else str(cause)
        raise ValueError(f"{where} is invalid: {what.strip().rstrip('.!')}; fix config.json (or export the model "
                         f"again)") from None


def load_pretrained(source: ModelSource, device: str = "cpu", dtype: str = "float32", config=None):
    """The model in eval mode on `device`, weights in `dtype` (GGUF weights are dequantized to it). `config`: the
    source's config (`load_config`) where the caller has read it already; a GGUF header takes seconds to parse."""
    import torch

    import sinktrain.model  # noqa: F401
    from sinktrain.model.weight_shapes import check_weight_shapes

    if config is None:
        config = load_config(source)  # read once and handed to the loader
    kwargs = source.kwargs()
    if getattr(getattr(config, "text_config", None) or config, "attn_logit_softcapping", None) is not None:
        # Soft-capped attention scores (Gemma 2): no SDPA kernel can cap them, and transformers 5.17 loads such
        # a model with SDPA by default, which silently drops the cap. The eager attention is the definition.
        kwargs["attn_implementation"] = "eager"
    if source.kind != "gguf":  # never a pickled pytorch_model.bin (check_weight_files names what a folder holds)
        kwargs["use_safetensors"] = True
    auto = auto_model_class(config)
    check_weight_shapes(source, config)  # before transformers' multi-line load report and RuntimeError
    try:
        with gguf_parsed_once() if source.kind == "gguf" else nullcontext():
            model, info = _hub_call(source, lambda: auto.from_pretrained(
                source.location, config=config, dtype=getattr(torch, dtype), output_loading_info=True, **kwargs))
    except RuntimeError as e:  # a mismatch the headers did not show (a hub model, renamed weights)
        if "ignore_mismatched_sizes" not in str(e):
            raise
        first = next((" ".join(line.split()) for line in str(e).splitlines() if "size mismatch" in line), "")
        raise ValueError(f"cannot load model {source.spec!r}: some of its weights have other sizes than its "
                         f"config.json calls for ({first or 'transformers lists them above'}); config and weights "
                         f"come from different models: export the model again, or restore the config saved with "
                         f"these weights") from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:  # transformers only warns, and initializes them at random: every number after that would be noise
        raise ValueError(f"cannot load model {source.spec!r}: {len(missing)} of the weights its config calls for are "
                         f"not in its checkpoint (e.g. {missing[0]!r}), so they would be random; the checkpoint was "
                         f"saved for another architecture than {type(model).__name__}, or is incomplete")
    return model.to(device).eval()


@contextmanager
def gguf_parsed_once():
    """While a GGUF loads, parse its file once and build gguf's tensor-name tables once.

    - transformers parses the whole file (every metadata field, the 49k vocabulary strings one numpy view each) for
      the config, again for the weights, and again for the tokenizer (and once more for the config when a weights'
      load is not handed it): three parses of SmolLM2's, 4 s each. Inside this context `gguf.GGUFReader` hands
      back the reader of the file parsed last, while the file is the same (path, inode, size, mtime): a reader
      only reads.
    - transformers matches a GGUF's tensor names to the model's by walking the model's modules, and at each one
      (397 in SmolLM2-135M) asks gguf for its whole tensor-name table, which gguf builds anew every time: 7 of the
      12 s that SmolLM2's weights took. The table is a fixed function of (architecture, block count).
    transformers imports both from gguf at each call, and gguf's own are back in place when the context ends. The
    last reader is kept between contexts (config, weights and tokenizer are loaded by separate calls): its memory
    map of the file, and the parsed fields, until another GGUF is read (benchmarks/gguf_load.py)."""
    import gguf

    build, reader_class = gguf.get_tensor_name_map, gguf.GGUFReader

    def reader(path, mode="r"):
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, mode)
        if key not in _GGUF_READER:
            _GGUF_READER.clear()  # one file at a time: a reader holds its metadata in memory
            _GGUF_READER[key] = reader_class(path, mode)
        return _GGUF_READER[key]

    gguf.get_tensor_name_map, gguf.GGUFReader = functools.cache(build), reader
    try:
        yield
    finally:
        gguf.get_tensor_name_map, gguf.GGUFReader = build, reader_class


_GGUF_READER: dict = {}  # (path, inode, size, mtime_ns, mode) -> the gguf.GGUFReader of the GGUF parsed last


def auto_model_class(config):
    """AutoModelForCausalLM, or AutoModelForImageTextToText for an image-text model that transformers does not map
    to a causal LM (Mistral 3, LLaVA, ...; Gemma 3's wrapper it does). Both give logits over the vocabulary."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    mtype = getattr(config, "model_type", None)
    if mtype in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and (
        mtype not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or mtype in IMAGE_TEXT_LOADER_ONLY
    ):
        return AutoModelForImageTextToText
    return AutoModelForCausalLM


# Image-text models that transformers maps to a causal LM whose loader then refuses their checkpoints (Llama 3.2
# Vision: "Unrecognized configuration class MllamaTextConfig").
IMAGE_TEXT_LOADER_ONLY = {"mllama"}


def load_model_tokenizer(source: ModelSource):
    """The tokenizer stored with the model, or None when the folder has none."""
    from transformers import AutoTokenizer

    from sinktrain.data.tokenizer import custom_tokenizer_refusal, refused_custom_code

    if source.kind == "folder" and not any(
        (Path(source.location) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
    ):
        return None
    try:
        if source.kind == "gguf":
            return _gguf_tokenizer(source)
        return _hub_call(source, lambda: AutoTokenizer.from_pretrained(source.location, **source.kwargs()))
    except (ValueError, TypeError) as e:  # garbage tokenizer.json: "Expecting value: line 1 column 1 (char 0)"
        if refused_custom_code(e):  # by trust_remote_code=False (source.kwargs)
            raise ValueError(custom_tokenizer_refusal(f"model {source.spec!r}")) from None
        if source.kind != "folder":
            raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot read the tokenizer stored with {source.spec!r} ({first}); restore its tokenizer "
                         f"files, or pass --tokenizer with the one it was trained with") from None


def _gguf_tokenizer(source: ModelSource):
    """The tokenizer (and chat template) stored in a GGUF file itself. Given the file's folder, transformers reads
    any tokenizer.json, tokenizer_config.json, chat_template.jinja ... lying beside the .gguf in place of the
    GGUF's own vocabulary, while the config comes from the GGUF: a foreign tokenizer, and garbage text. So it reads
    from a folder of its own that holds only a link to the file."""
    import tempfile

    from transformers import AutoTokenizer

    gguf = Path(source.location, source.gguf_file).resolve()
    with tempfile.TemporaryDirectory(prefix="sinktrain-gguf-") as alone:
        try:
            os.symlink(gguf, Path(alone, gguf.name))
            name = gguf.name
        except OSError:  # no symlinks here (Windows without the right): the absolute path, joined to the folder
            name = str(gguf)
        with gguf_parsed_once():
            return _hub_call(source, lambda: AutoTokenizer.from_pretrained(alone, gguf_file=name,
                                                                           trust_remote_code=False))


def _hub_call(source: ModelSource, fn):
    """Run a transformers loader; turn 'not found / offline' into one line naming the model."""
    try:
        return fn()
    except OSError as e:
        if source.kind != "hub":
            raise ValueError(f"cannot load model {source.spec!r}: {str(e).splitlines()[0]}") from None
        raise ValueError(
            f"cannot load {source.spec!r} from the Hugging Face hub ({str(e).splitlines()[0]}); check the id, "
            f"or download it first when offline (HF_HUB_OFFLINE=1 reads only the local HF cache)"
        ) from None
