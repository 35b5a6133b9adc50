"""Checkpoints: `<run_dir>/checkpoints/step-XXXXXXXX/`, written atomically, last K kept.

A checkpoint is written into `step-XXXXXXXX.tmp/` (Lightning's `lightning.ckpt` for single/DDP, DeepSpeed's
directory of model + per-rank optimizer shards for ZeRO), then `meta.json` and a `COMPLETE` marker are added
and the directory is renamed to its final name. A kill at any point leaves either the `.tmp` directory
(ignored, removed on the next start) or a complete checkpoint, never a half-written one under a final name.
Older checkpoints are pruned only after the new one is complete, and renamed away before being deleted.
The run directory must be on a filesystem all nodes share (as DeepSpeed's ZeRO shards require anyway).

Never unpickle what a user hands us: every pickle file of a checkpoint is opened with `torch.load(weights_only=True)`
(`verify_checkpoint`) before anything else reads it, with only the plain data classes DeepSpeed stores next to
its tensors allowed. A file that needs anything else is refused (`UnsafeCheckpointError`, naming the file); a file
that cannot be read at all, e.g. truncated by a full disk, is `UnreadableCheckpointError`.

This module only reads checkpoints (no Lightning import, so later stages load it cheaply); the callback that
writes them is `checkpoint_saver.CheckpointSaver`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import torch

CHECKPOINT_DIR = "checkpoints"
LIGHTNING_FILE = "lightning.ckpt"  # single / ddp checkpoints; DeepSpeed writes its own directory layout
DEEPSPEED_TAG = "checkpoint"  # Lightning's tag for DeepSpeed checkpoints
DEEPSPEED_MODEL_FILE = "mp_rank_00_model_states.pt"  # what DeepSpeed (ZeRO-1/2) and zero_to_fp32 load first
META = "meta.json"
COMPLETE = "COMPLETE"
FORMAT = "sinktrain-checkpoint/1"
_NAME = re.compile(r"^step-(\d{8})$")
PICKLE_SUFFIXES = (".ckpt", ".pt")
# Plain data classes (no code runs to rebuild them) that DeepSpeed pickles into its ZeRO optimizer files.
DEEPSPEED_SAFE_GLOBALS = (
    ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
    ("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler"),
    ("deepspeed.runtime.zero.config", "ZeroStageEnum"),
    ("deepspeed.utils.tensor_fragment", "fragment_address"),
)


# What wrote the checkpoint: a Lightning checkpoint file, or DeepSpeed's folder of per-rank shards.
KINDS = ("lightning", "deepspeed")


class UnreadableCheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, garbage): `--resume auto` falls back past it."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint file that would run code when unpickled: always refused."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def is_complete(path: Path) -> bool:
    """A step folder whose save finished (its COMPLETE marker is written last). One that lost its meta.json
    since is listed too, and read_meta calls it damaged: skipped in silence, it hid that a newer step was lost."""
    path = Path(path)
    return bool(_NAME.match(path.name)) and (path / COMPLETE).is_file()


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def read_meta(ckpt: str | Path) -> dict:
    """The checkpoint's meta.json; a clear ValueError for anything that is not a complete checkpoint."""
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        raise ValueError(
            f"{str(ckpt)!r} is not a checkpoint directory; pass a <run_dir>/checkpoints/step-XXXXXXXX path")
    if not is_complete(ckpt):
        raise ValueError(
            f"{str(ckpt)!r} is not a complete checkpoint (no {COMPLETE} marker or meta.json, or a .tmp name: "
            f"a save that did not finish); pass a complete step-XXXXXXXX folder, or the run directory for its newest"
        )
    if not (ckpt / META).is_file():
        raise UnreadableCheckpointError(f"{str(ckpt)!r} has no {META}; the checkpoint is damaged")
    try:
        meta = json.loads((ckpt / META).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UnreadableCheckpointError(f"{ckpt / META} is not valid JSON ({e}); the checkpoint is damaged") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{ckpt / META} has format {found!r}, expected {FORMAT!r}")
    config = meta.get("config")
    if not (isinstance(meta.get("step"), int) and meta.get("kind") in KINDS and isinstance(config, dict)
            and all(isinstance(config.get(k), dict) for k in ("model", "trainer", "data"))):
        raise UnreadableCheckpointError(f"{ckpt / META} lacks its step, kind or config (model, trainer, data); the "
                                        f"checkpoint is damaged")
    for key, least in (("tokens_seen", 0), ("world_size", 1)):  # what export and resume read next
        value = meta.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
            found = f"lacks {key}" if key not in meta else f"has {key} {value!r}, not a whole number >= {least}"
            raise UnreadableCheckpointError(f"{ckpt / META} {found}; the checkpoint is damaged")
    named = int(_NAME.match(ckpt.name).group(1))
    if meta["step"] != named:  # a copy under another name: resume and export go by the name, pruning too
        raise UnreadableCheckpointError(f"{str(ckpt)!r} is named for step {named} but its {META} says step "
                                        f"{meta['step']}: a checkpoint copied or renamed; move it back to "
                                        f"{checkpoint_name(meta['step'])} or remove it")
    return meta


def _safe_globals() -> list:
    import importlib

    found = []
    for module, name in DEEPSPEED_SAFE_GLOBALS:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):  # no deepspeed here: its classes cannot be in a loadable file anyway
            pass
    return found


def safe_load(path: Path, mmap: bool = False):
    """`torch.load(path, weights_only=True)`; a clear error naming the file for anything else."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            detail = next((line.strip() for line in str(e).splitlines() if "Unsupported" in line), "")
            raise UnsafeCheckpointError(
                f"checkpoint file {str(path)!r} holds pickled objects beyond tensors and plain data "
                f"({detail.split('. ')[0] or 'refused by weights_only'}); sinktrain does not load it, since "
                f"unpickling it could run code. Use a checkpoint written by sinktrain"
            ) from e
        raise UnreadableCheckpointError(f"checkpoint file {str(path)!r} cannot be read ({e}); it is damaged") from e
    except Exception as e:  # noqa: BLE001 - truncated zip, garbage bytes, a folder where a file should be
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UnreadableCheckpointError(
            f"checkpoint file {str(path)!r} cannot be read ({type(e).__name__}: {first}); it is truncated or damaged"
        ) from e


def _checkpoint_files(ckpt: Path) -> list[Path]:
    """Every file under a checkpoint folder. A symbolic link anywhere under it is refused: the checks below would
    look at one file (Path.rglob does not descend into a linked folder) while Lightning or DeepSpeed loads another,
    the link's target, which need not be a checkpoint at all. The step folder itself may be reached through links."""
    files = []
    for root, dirs, names in os.walk(ckpt):  # os.walk lists a linked folder among `dirs` but does not enter it
        for name in dirs + names:
            path = Path(root) / name
            if path.is_symlink():
                raise UnsafeCheckpointError(
                    f"checkpoint {str(ckpt)!r} holds a symbolic link, {str(path)!r}; sinktrain only loads files "
                    f"that are inside the checkpoint. Copy the real files in place of the link")
        files += [Path(root) / name for name in names]
    return sorted(files)


def _check_deepspeed_tag(ckpt: Path) -> None:
    """DeepSpeed loads `<ckpt>/<tag>/...` with weights_only=False, the tag read from `<ckpt>/latest` when none is
    given. sinktrain always saves under DEEPSPEED_TAG, and only that folder is checked, so a `latest` naming any
    other folder (an absolute path, `../x`) would have DeepSpeed unpickle files nobody checked."""
    latest = ckpt / "latest"
    tag = latest.read_text(errors="replace").strip() if latest.is_file() else None  # DeepSpeed strips it too
    if tag is None:
        raise UnreadableCheckpointError(f"DeepSpeed checkpoint {str(ckpt)!r} has no 'latest' file; it is damaged")
    if tag != DEEPSPEED_TAG:
        raise UnsafeCheckpointError(
            f"DeepSpeed checkpoint {str(ckpt)!r}: its 'latest' file names {tag[:80]!r}, not {DEEPSPEED_TAG!r}, so "
            f"DeepSpeed would load files from outside the checked folder; use a checkpoint written by sinktrain")


def verify_checkpoint(ckpt: str | Path) -> dict:
    """Open every pickle file of a complete checkpoint with weights_only=True; return its meta.

    Raises UnsafeCheckpointError for files that would run code (or links and a DeepSpeed `latest` that would make
    the loaders read files outside the checkpoint), UnreadableCheckpointError for damaged ones.
    Tensors are memory-mapped, so this reads little more than the pickles' structure.
    """
    ckpt = Path(ckpt)
    meta = read_meta(ckpt)
    files = [p for p in _checkpoint_files(ckpt) if p.suffix in PICKLE_SUFFIXES]
    needed = ckpt / DEEPSPEED_TAG / DEEPSPEED_MODEL_FILE if meta.get("kind") == "deepspeed" else ckpt / LIGHTNING_FILE
    if needed not in files:
        raise UnreadableCheckpointError(
            f"checkpoint {str(ckpt)!r} has no {needed.relative_to(ckpt)}; it is damaged")
    for path in files:
        loaded = safe_load(path, mmap=True)
        if path == ckpt / LIGHTNING_FILE and meta["kind"] == "lightning":  # memory-mapped: shapes cost no reads
            check_model_weights(ckpt, _model_weights(_lightning_state_dict(path, loaded)), meta)
    if meta.get("kind") == "deepspeed":
        _check_deepspeed_tag(ckpt)
    return meta


def resume_target(ckpt: Path) -> Path:
    """What Trainer.fit(ckpt_path=...) takes: the directory for DeepSpeed, the file otherwise."""
    meta = read_meta(ckpt)
    return ckpt if meta["kind"] == "deepspeed" else ckpt / LIGHTNING_FILE


def _hf_state_dict_spec(ckpt: Path, model_cfg: dict) -> dict[str, tuple[torch.Size, bool]]:
    """{GPTNeoXForCausalLM.state_dict() key: (shape, whether floating point)} of the model a checkpoint's config
    describes (built on the meta device: no memory, no time)."""
    from sinktrain.model import ModelConfig, build_model

    try:
        model_config = ModelConfig.from_dict(model_cfg)
    except (ValueError, TypeError, KeyError) as e:
        raise UnreadableCheckpointError(f"{ckpt / META} holds a model config sinktrain cannot build ({e}); the "
                                        f"checkpoint is damaged") from e
    with torch.device("meta"):
        model = build_model(model_config, seed=None)
    return {k: (v.shape, v.is_floating_point()) for k, v in model.state_dict().items()}


def _lightning_state_dict(path: Path, loaded) -> dict:
    """The `state_dict` of a loaded Lightning checkpoint file; UnreadableCheckpointError if it holds none."""
    state = loaded.get("state_dict") if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        found = (f"a {type(loaded).__name__}" if not isinstance(loaded, dict) else
                 "no state_dict" if "state_dict" not in loaded else f"a {type(state).__name__} as its state_dict")
        raise UnreadableCheckpointError(f"checkpoint file {str(path)!r} holds {found}, not Lightning's checkpoint "
                                        f"of tensors; it is damaged")
    return state


def _model_weights(raw: dict) -> dict:
    prefix = "model."  # the LightningModule holds the HF model as `self.model`
    return {k[len(prefix):]: v for k, v in raw.items() if isinstance(k, str) and k.startswith(prefix)}


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{'an' if dtype[0] in 'aeiou' else 'a'} {dtype} tensor of shape {list(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def check_model_weights(ckpt: Path, weights: dict, meta: dict) -> list[str]:
    """The model's state-dict keys, once every one of them is in `weights` as a tensor of the model's shape (and
    floating point where the model's is); UnreadableCheckpointError naming the first that is not."""
    spec = _hf_state_dict_spec(ckpt, meta["config"]["model"])
    missing = [k for k in spec if k not in weights]
    if missing:
        raise UnreadableCheckpointError(
            f"checkpoint {str(ckpt)!r} lacks {len(missing)} model tensors (e.g. {missing[0]!r}); it is damaged, or "
            f"not a sinktrain checkpoint of the model its {META} describes")
    for key, (shape, floating) in spec.items():
        value = weights[key]
        if not (isinstance(value, torch.Tensor) and value.shape == shape and value.is_floating_point() == floating):
            raise UnreadableCheckpointError(
                f"checkpoint {str(ckpt)!r}: model tensor {key!r} is {_describe(value)}, not a "
                f"{'floating-point' if floating else 'non-floating'} tensor of shape {list(shape)}; it is damaged")
    return list(spec)


def load_checkpoint_weights(ckpt_path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(fp32 state dict with GPTNeoXForCausalLM.state_dict() keys, {step, tokens_seen, config, data_manifest_sha256}).

    ZeRO checkpoints are consolidated with DeepSpeed's own converter (fp32 master weights from the
    optimizer shards of every rank). Weights that are missing, or not tensors of the model's shapes, are an
    UnreadableCheckpointError naming the checkpoint.
    """
    ckpt = Path(ckpt_path)
    meta = verify_checkpoint(ckpt)  # before DeepSpeed's converter, which unpickles with weights_only=False
    if meta["kind"] == "deepspeed" and _bf16_optimizer_files(ckpt):
        raw = _bf16_optimizer_fp32_weights(ckpt)
    elif meta["kind"] == "deepspeed":
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        raw = get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=DEEPSPEED_TAG)
    else:
        raw = _lightning_state_dict(ckpt / LIGHTNING_FILE, safe_load(ckpt / LIGHTNING_FILE))
    weights = _model_weights(raw)
    keys = check_model_weights(ckpt, weights, meta)
    state = {k: weights[k].detach().to("cpu", torch.float32) if weights[k].is_floating_point() else weights[k]
             for k in keys}
    return state, {"step": meta["step"], "tokens_seen": meta["tokens_seen"], "config": meta["config"],
                   "data_manifest_sha256": meta.get("data_manifest_sha256")}


def _bf16_optimizer_files(ckpt: Path) -> list[Path]:
    """DeepSpeed's BF16_Optimizer shards (ZeRO-1 with bf16 weights and fp32 gradient accumulation), rank order."""
    files = (Path(ckpt) / DEEPSPEED_TAG).glob("bf16_zero_pp_rank_*_mp_rank_00_optim_states.pt")
    return sorted(files, key=lambda f: int(f.name.split("_")[4]))


def _bf16_optimizer_fp32_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The fp32 master weights of a BF16_Optimizer checkpoint, which DeepSpeed's zero_to_fp32 does not read
    ("is not a zero checkpoint"). Each parameter group is one flat fp32 tensor split evenly over the ranks
    (the last rank's share padded at its end); the parameters lie in it in the order of the model file's
    `param_shapes`, the same layout zero_to_fp32 walks for ZeRO-1/2."""
    folder = Path(ckpt) / DEEPSPEED_TAG
    shards = [safe_load(f)["optimizer_state_dict"] for f in _bf16_optimizer_files(ckpt)]
    model_file = safe_load(folder / DEEPSPEED_MODEL_FILE)
    weights: dict[str, torch.Tensor] = {}
    for group, shapes in enumerate(model_file["param_shapes"]):
        flat = torch.cat([shard["single_partition_of_fp32_groups"][group] for shard in shards])
        offset = 0
        for name, shape in shapes.items():
            n = int(torch.Size(shape).numel())
            weights[name] = flat[offset: offset + n].view(shape).clone()
            offset += n
        if offset + int(shards[-1]["group_paddings"][group]) != flat.numel():
            raise UnreadableCheckpointError(
                f"checkpoint {str(ckpt)!r}: parameter group {group} holds {flat.numel()} values but its parameters "
                f"need {offset}; the optimizer shards do not belong to this model file")
    for name, tensor in model_file["module"].items():  # buffers, and anything frozen, as the model file has them
        weights.setdefault(name, tensor)
    return weights


def remove_partial_checkpoints(run_dir: str | Path) -> list[Path]:
    """Delete `.tmp` / `.deleting` leftovers of interrupted saves or prunes. Call on rank 0 before training."""
    root = Path(run_dir) / CHECKPOINT_DIR
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.endswith((".tmp", ".deleting")):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed
