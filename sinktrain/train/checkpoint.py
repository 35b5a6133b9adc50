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
that cannot be read at all, e.g. truncated by a full disk, is `UnreadableCheckpointError`, and so are contents
that do not fit the model its meta.json describes: for DeepSpeed, the model states, their param_shapes and one
optimizer shard per rank, checked against each other, so neither DeepSpeed's loader nor the export's readers meet them.

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


def checkpoint_step(path: Path) -> int:
    """The step a `step-XXXXXXXX` folder's name says."""
    return int(_NAME.match(path.name).group(1))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_complete(p)]
    return sorted(found, key=checkpoint_step)


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


# DeepSpeed's per-rank optimizer shards (ZeRO-1/2); `bf16_` when the model is bf16, whichever optimizer wrote them.
_OPTIMIZER_SHARD = re.compile(r"^(bf16_)?zero_pp_rank_(\d+)_mp_rank_00_optim_states\.pt$")
# What DeepSpeed's loader and zero_to_fp32 (or _bf16_optimizer_fp32_weights) read from them without a default.
_MODEL_STATES_KEYS = ("module", "param_shapes", "buffer_names", "shared_params", "dp_world_size", "mp_world_size",
                      "global_steps", "skipped_steps")
_OPTIMIZER_KEYS = ("single_partition_of_fp32_groups", "group_paddings", "partition_count", "base_optimizer_state")


def _check_deepspeed_files(ckpt: Path, meta: dict, found: dict, strict: bool) -> None:
    """The contents of a DeepSpeed ZeRO-1/2 checkpoint (`found`: {file name: loaded} of its tag folder's pickles):
    the model states hold the model's tensors and name its parameters (param_shapes), and every rank that saved it
    left one optimizer shard, whose flat fp32 weights add up to those parameters. DeepSpeed's loader, zero_to_fp32
    and _bf16_optimizer_fp32_weights met a damaged one with a KeyError or a size mismatch deep in their code, and
    DeepSpeed resumed from a cut fp32 partition, padded with zeros."""
    path = ckpt / DEEPSPEED_TAG / DEEPSPEED_MODEL_FILE
    model_file = found[DEEPSPEED_MODEL_FILE]
    module = model_file.get("module") if isinstance(model_file, dict) else None
    if not isinstance(module, dict):
        raise UnreadableCheckpointError(f"checkpoint file {str(path)!r} holds {_holds(model_file, 'module')}, not "
                                        f"DeepSpeed's model states; it is damaged")
    lacking = [key for key in _MODEL_STATES_KEYS if key not in model_file]
    if lacking:
        raise UnreadableCheckpointError(f"checkpoint file {str(path)!r} lacks {lacking[0]}, which DeepSpeed's model "
                                        f"states hold; it is damaged")
    _check_state_dict(ckpt, module, meta, strict)
    groups = _check_param_shapes(ckpt, path, model_file, meta)
    shards = _optimizer_shards(ckpt, found, meta["world_size"], model_file)
    for shard_path, osd in shards:
        _check_optimizer_shard(shard_path, osd, groups, meta["world_size"])
    for g, (names, numel) in enumerate(groups):
        # A group's values, padded, split evenly over the ranks. ZeRO-1/2 (which save a zero_stage) save each share
        # without its padding, BF16_Optimizer with it; the padding is at the end of the group, on the last ranks.
        padding = sum(osd["group_paddings"][g] for _, osd in shards)
        padded = numel + sum(shards[0][1].get("param_alignment_paddings", [[0] * names] * len(groups))[g]) + padding
        share, uneven = divmod(padded, len(shards))
        for rank, (shard_path, osd) in enumerate(shards):
            held = osd["single_partition_of_fp32_groups"][g].numel()
            expected = share - (osd["group_paddings"][g] if "zero_stage" in osd else 0)
            if uneven or held != expected:
                raise UnreadableCheckpointError(
                    f"checkpoint file {str(shard_path)!r}: its fp32 weights of parameter group {g} hold {held} values, "
                    f"not the {expected} of rank {rank}'s share of the group's {names} parameters (param_shapes in "
                    f"{DEEPSPEED_MODEL_FILE}); it is cut or damaged, or from another checkpoint")
    for shard_path, osd in shards:
        _check_optimizer_moments(shard_path, osd)
        step = _optimizer_step(osd)
        # With no step skipped (fp16 overflows only), the optimizer stepped at each of the engine's global steps: a
        # shard of another checkpoint of the same run fits in size, and was exported or resumed from without a word.
        if (step is not None and model_file["skipped_steps"] == 0 and isinstance(model_file["global_steps"], int)
                and step != model_file["global_steps"]):
            raise UnreadableCheckpointError(
                f"checkpoint file {str(shard_path)!r}: its optimizer state is at step {step:g}, but the model states "
                f"({DEEPSPEED_MODEL_FILE}) at step {model_file['global_steps']}; it is from another checkpoint, or "
                f"damaged")


def _check_param_shapes(ckpt: Path, path: Path, model_file: dict, meta: dict) -> list[tuple[int, int]]:
    """(number of parameters, of values) per optimizer group, from the model states' param_shapes, once those name
    the model's parameters with their shapes, each once. Export cuts the flat fp32 weights by them."""
    shapes, frozen = model_file["param_shapes"], model_file.get("frozen_param_shapes") or {}
    if not (isinstance(shapes, list) and shapes and all(isinstance(g, dict) for g in shapes)
            and isinstance(frozen, dict)):
        raise UnreadableCheckpointError(f"checkpoint file {str(path)!r} has param_shapes {_describe(shapes)}, not a "
                                        f"list of {{name: shape}}, one per parameter group; it is damaged")
    params = {k: tuple(v.shape) for k, v in _meta_model(ckpt, meta["config"]["model"]).named_parameters()}
    seen, groups = set(), []
    for group in shapes:
        numel = 0
        for name, shape in group.items():
            key = name[len("model."):] if isinstance(name, str) and name.startswith("model.") else None
            if key not in params or key in seen:
                why = " twice" if key in seen else f", a parameter the model its {META} describes does not have"
                raise UnreadableCheckpointError(f"checkpoint file {str(path)!r}: its param_shapes name {name!r}{why}; "
                                                f"it is damaged, or not a sinktrain checkpoint of that model")
            if not (isinstance(shape, (tuple, list)) and tuple(shape) == params[key]):
                found = list(shape) if isinstance(shape, (tuple, list)) else _describe(shape)
                raise UnreadableCheckpointError(
                    f"checkpoint file {str(path)!r}: its param_shapes give {name!r} the shape {found}, not "
                    f"{list(params[key])}; it is damaged, or not a sinktrain checkpoint of the model its {META} "
                    f"describes")
            seen.add(key)
            numel += int(torch.Size(shape).numel())
        groups.append((len(group), numel))
    missing = [k for k in params if k not in seen and f"model.{k}" not in frozen]
    if missing:
        raise UnreadableCheckpointError(
            f"checkpoint file {str(path)!r}: its param_shapes lack {len(missing)} of the model's parameters (e.g. "
            f"{'model.' + missing[0]!r}); it is damaged")
    return groups


def _optimizer_shards(ckpt: Path, found: dict, world_size: int, model_file: dict) -> list[tuple[Path, dict]]:
    """(path, optimizer_state_dict) of each rank's optimizer shard, rank order: one per rank that saved it."""
    ranks: dict[int, list[str]] = {}
    for name in sorted(found):
        match = _OPTIMIZER_SHARD.match(name)
        if match:
            ranks.setdefault(int(match.group(2)), []).append(name)
    kinds = {name.startswith("bf16_"): name for names in ranks.values() for name in names}
    for rank, names in sorted(ranks.items()):
        if len(names) > 1 or rank >= world_size or len(kinds) > 1:
            ranks_saved = f"{world_size} rank{'s' * (world_size > 1)}"
            why = (f"two optimizer shards for rank {rank}, {names[0]} and {names[1]}" if len(names) > 1 else
                   f"optimizer shards of two kinds, {kinds[True]} and {kinds[False]}" if len(kinds) > 1 else
                   f"{DEEPSPEED_TAG}/{names[0]}, but its {META} says {ranks_saved} saved it")
            raise UnreadableCheckpointError(f"checkpoint {str(ckpt)!r} holds {why}; it is damaged, or files of two "
                                            f"checkpoints were mixed")
    if len(ranks) < world_size:
        rank = min(set(range(world_size)) - set(ranks))
        ds_config = model_file.get("ds_config")  # with no other shard to go by: DeepSpeed's bf16 names them bf16_
        bf16 = (next(iter(ranks.values()))[0].startswith("bf16_") if ranks else isinstance(ds_config, dict)
                and isinstance(ds_config.get("bf16"), dict) and ds_config["bf16"].get("enabled") is True)
        raise UnreadableCheckpointError(
            f"checkpoint {str(ckpt)!r} has no {DEEPSPEED_TAG}/{'bf16_' if bf16 else ''}zero_pp_rank_{rank}_mp_rank_00_"
            f"optim_states.pt, the optimizer shard of rank {rank} of the {world_size} that saved it; it is damaged")
    shards = []
    for rank in range(world_size):
        path = ckpt / DEEPSPEED_TAG / ranks[rank][0]
        loaded = found[path.name]
        osd = loaded.get("optimizer_state_dict") if isinstance(loaded, dict) else None
        if not isinstance(osd, dict):
            raise UnreadableCheckpointError(f"checkpoint file {str(path)!r} holds "
                                            f"{_holds(loaded, 'optimizer_state_dict')}, not DeepSpeed's optimizer "
                                            f"shard; it is damaged")
        shards.append((path, osd))
    return shards


def _check_optimizer_shard(path: Path, osd: dict, groups: list[tuple[int, int]], world_size: int) -> None:
    """One rank's optimizer state: per parameter group a flat fp32 partition, its padding and the optimizer's state;
    with the keys that DeepSpeed's loader and zero_to_fp32 read."""
    zero_to_fp32 = () if path.name.startswith("bf16_") else ("zero_stage",)  # what it reads these with needs it
    lacking = [key for key in _OPTIMIZER_KEYS + zero_to_fp32 if key not in osd]
    n = len(groups)

    def damaged(what):
        return UnreadableCheckpointError(f"checkpoint file {str(path)!r}: its {what}; it is damaged")

    if lacking:
        raise damaged(f"optimizer state lacks {lacking[0]}")
    fp32, paddings, count = osd["single_partition_of_fp32_groups"], osd["group_paddings"], osd["partition_count"]
    if not (isinstance(fp32, (list, tuple)) and len(fp32) == n):
        raise damaged(f"fp32 weights (single_partition_of_fp32_groups) are {_describe(fp32)}, not {n} tensors, one "
                      f"per parameter group of param_shapes")
    bad = next((g for g, t in enumerate(fp32) if not (isinstance(t, torch.Tensor) and t.dim() == 1
                                                       and t.is_floating_point())), None)
    if bad is not None:
        raise damaged(f"fp32 weights of parameter group {bad} are {_describe(fp32[bad])}, not a flat floating-point "
                      f"tensor")
    if not (isinstance(paddings, (list, tuple)) and len(paddings) == n
            and all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in paddings)):
        raise damaged(f"group_paddings are {_describe(paddings)}, not {n} whole numbers >= 0")
    counts = count if isinstance(count, (list, tuple)) else [count]
    if not (counts and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)
            and max(counts) == world_size):
        raise damaged(f"partition_count is {_describe(count)}, but {world_size} rank{'s' * (world_size > 1)} saved "
                      f"the checkpoint")
    aligned = osd.get("param_alignment_paddings", [[0] * names for names, _ in groups])
    if not (isinstance(aligned, (list, tuple)) and len(aligned) == n and all(
            isinstance(a, (list, tuple)) and len(a) == names and all(isinstance(p, int) and p >= 0 for p in a)
            for a, (names, _) in zip(aligned, groups))):
        raise damaged(f"param_alignment_paddings are {_describe(aligned)}, not one whole number >= 0 per parameter "
                      f"of each group of param_shapes")
    base = osd["base_optimizer_state"]  # torch's optimizer state_dict, or a list per group (an elastic checkpoint)
    if isinstance(base, dict):
        lacks = next((key for key in ("state", "param_groups") if key not in base), None)
        if lacks:
            raise damaged(f"base_optimizer_state lacks {lacks}")
        states, group_count = base["state"], base["param_groups"]
        if isinstance(states, dict) and isinstance(group_count, list):
            states, group_count = [states.get(g, {}) for g in range(n)], len(group_count)
    else:
        states, group_count = base, (len(base) if isinstance(base, list) else None)
    if not (isinstance(states, list) and group_count == n and all(isinstance(state, dict) for state in states)):
        raise damaged(f"base_optimizer_state is not the optimizer's state of {n} parameter groups")


def _group_states(osd: dict) -> list[dict]:
    """The optimizer's state of each parameter group, once _check_optimizer_shard has checked its layout: torch's
    state_dict keys it by parameter, and ZeRO's optimizer holds one flat parameter per group; an elastic checkpoint
    lists it."""
    base = osd["base_optimizer_state"]
    return base if isinstance(base, list) else [base["state"].get(g, {}) for g in range(len(base["param_groups"]))]


def _optimizer_step(osd: dict) -> float | None:
    """The step count torch's Adam keeps with each group's state (None: none kept, or groups that disagree)."""
    states = _group_states(osd)
    steps = {float(state["step"]) for state in states if isinstance(state.get("step"), (torch.Tensor, int, float))
             and not isinstance(state["step"], bool) and getattr(state["step"], "numel", lambda: 1)() == 1}
    return steps.pop() if len(steps) == 1 else None


def _check_optimizer_moments(path: Path, osd: dict) -> None:
    """Each group's optimizer moments hold as many values as its fp32 weights (ZeRO-1/2: with their padding)."""
    for g, (state, fp32) in enumerate(zip(_group_states(osd), osd["single_partition_of_fp32_groups"])):
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.numel() not in (
                    fp32.numel(), fp32.numel() + osd["group_paddings"][g]):
                raise UnreadableCheckpointError(
                    f"checkpoint file {str(path)!r}: its optimizer state {key!r} of parameter group {g} is "
                    f"{_describe(value)}, not the {fp32.numel()} values of the group's fp32 weights; it is damaged")


def verify_checkpoint(ckpt: str | Path, strict: bool = False) -> dict:
    """Open every pickle file of a complete checkpoint with weights_only=True; return its meta.

    Raises UnsafeCheckpointError for files that would run code (or links and a DeepSpeed `latest` that would make
    the loaders read files outside the checkpoint), UnreadableCheckpointError for damaged ones: a file that does not
    load, model weights that are not the tensors of the model its meta.json describes, and for DeepSpeed, model
    states and per-rank optimizer shards that do not fit that model and each other (`_check_deepspeed_files`).
    `strict` (resume): tensors the model does not have are refused too, as loading them strictly would fail; an
    export leaves them out. Tensors are memory-mapped, so this reads little more than the pickles' structure.
    """
    ckpt = Path(ckpt)
    meta = read_meta(ckpt)
    files = [p for p in _checkpoint_files(ckpt) if p.suffix in PICKLE_SUFFIXES]
    needed = ckpt / DEEPSPEED_TAG / DEEPSPEED_MODEL_FILE if meta.get("kind") == "deepspeed" else ckpt / LIGHTNING_FILE
    if needed not in files:
        raise UnreadableCheckpointError(
            f"checkpoint {str(ckpt)!r} has no {needed.relative_to(ckpt)}; it is damaged")
    deepspeed_files = {}
    for path in files:
        loaded = safe_load(path, mmap=True)
        if path == ckpt / LIGHTNING_FILE and meta["kind"] == "lightning":  # memory-mapped: shapes cost no reads
            _check_state_dict(ckpt, _lightning_state_dict(path, loaded), meta, strict)
        elif path.parent == ckpt / DEEPSPEED_TAG:
            deepspeed_files[path.name] = loaded
    if meta.get("kind") == "deepspeed":
        _check_deepspeed_tag(ckpt)
        _check_deepspeed_files(ckpt, meta, deepspeed_files, strict)
    return meta


def resume_target(ckpt: Path) -> Path:
    """What Trainer.fit(ckpt_path=...) takes: the directory for DeepSpeed, the file otherwise."""
    meta = read_meta(ckpt)
    return ckpt if meta["kind"] == "deepspeed" else ckpt / LIGHTNING_FILE


def _meta_model(ckpt: Path, model_cfg: dict):
    """The GPTNeoXForCausalLM a checkpoint's config describes, built on the meta device (no memory, no time)."""
    from sinktrain.model import ModelConfig, build_model

    try:
        model_config = ModelConfig.from_dict(model_cfg)
    except (ValueError, TypeError, KeyError) as e:
        raise UnreadableCheckpointError(f"{ckpt / META} holds a model config sinktrain cannot build ({e}); the "
                                        f"checkpoint is damaged") from e
    with torch.device("meta"):
        return build_model(model_config, seed=None)


def _hf_state_dict_spec(ckpt: Path, model_cfg: dict) -> dict[str, tuple[torch.Size, bool]]:
    """{GPTNeoXForCausalLM.state_dict() key: (shape, whether floating point)} of the model a checkpoint's config
    describes."""
    return {k: (v.shape, v.is_floating_point()) for k, v in _meta_model(ckpt, model_cfg).state_dict().items()}


def _holds(loaded, key: str) -> str:
    """What a loaded file holds in place of a dict with a dict under `key`: 'a list', 'no module', ..."""
    if not isinstance(loaded, dict):
        return f"a {type(loaded).__name__}"
    return f"no {key}" if key not in loaded else f"a {type(loaded[key]).__name__} as its {key}"


def _lightning_state_dict(path: Path, loaded) -> dict:
    """The `state_dict` of a loaded Lightning checkpoint file; UnreadableCheckpointError if it holds none."""
    state = loaded.get("state_dict") if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise UnreadableCheckpointError(f"checkpoint file {str(path)!r} holds {_holds(loaded, 'state_dict')}, not "
                                        f"Lightning's checkpoint of tensors; it is damaged")
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


def _check_state_dict(ckpt: Path, raw: dict, meta: dict, strict: bool) -> None:
    """check_model_weights on the `model.` entries of a LightningModule state dict; `strict`: anything else in it
    (a tensor the model does not have, which a strict load refuses) is refused too."""
    keys = set(check_model_weights(ckpt, _model_weights(raw), meta))
    extra = [k for k in raw if not (isinstance(k, str) and k.startswith("model.") and k[len("model."):] in keys)]
    if strict and extra:
        raise UnreadableCheckpointError(
            f"checkpoint {str(ckpt)!r} holds {len(extra)} tensors its model does not have (e.g. {extra[0]!r}); it is "
            f"damaged, or not a sinktrain checkpoint of the model its {META} describes")


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
    aligned = shards[0].get("param_alignment_paddings")  # ZeRO-1/2's gaps after each parameter (none for BF16)
    weights: dict[str, torch.Tensor] = {}
    for group, shapes in enumerate(model_file["param_shapes"]):  # all of it checked by verify_checkpoint
        flat = torch.cat([shard["single_partition_of_fp32_groups"][group] for shard in shards])
        offset = 0
        for i, (name, shape) in enumerate(shapes.items()):
            n = int(torch.Size(shape).numel())
            weights[name] = flat[offset: offset + n].view(shape).clone()
            offset += n + (aligned[group][i] if aligned else 0)
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
