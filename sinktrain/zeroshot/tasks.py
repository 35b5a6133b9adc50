"""The zero-shot tasks of the paper's Table 4, as lm-evaluation-harness defines them, and where their data
comes from.

Prompts, answer choices and metrics are lm-eval's own task configs. Offline (`--data-dir`), each task is
loaded from a small YAML written next to the results that `include`s lm-eval's config and replaces only the
dataset fields, pointing them at a local `datasets.save_to_disk` copy; lm-eval's own CLI reads the same
YAML (`lm_eval --tasks <out>/tasks/piqa.yaml`), so both runs score the same documents the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TaskInfo:
    name: str  # lm-eval's task name
    label: str  # row label in Table 4
    config: str  # lm-eval's YAML, relative to lm_eval/tasks
    local: str  # the save_to_disk folder under --data-dir (dataset/config/split)
    split: str  # the split lm-eval scores when online
    dataset: str  # the hub dataset lm-eval downloads (its config name after a colon), for model cards


# In Table 4's row order: name, label, lm-eval config, local copy, online split, hub dataset.
TASKS = {
    t.name: t
    for t in (
        TaskInfo("arc_challenge", "ARC-c", "arc/arc_challenge.yaml", "ai2_arc/ARC-Challenge/validation",
                 "test", "allenai/ai2_arc:ARC-Challenge"),
        TaskInfo("arc_easy", "ARC-e", "arc/arc_easy.yaml", "ai2_arc/ARC-Easy/validation",
                 "test", "allenai/ai2_arc:ARC-Easy"),
        TaskInfo("hellaswag", "HellaSwag", "hellaswag/hellaswag.yaml", "hellaswag/none/validation",
                 "validation", "Rowan/hellaswag"),
        TaskInfo("lambada_openai", "LAMBADA", "lambada/lambada_openai.yaml", "lambada_openai/default/test",
                 "test", "EleutherAI/lambada_openai:default"),
        TaskInfo("openbookqa", "OBQA", "openbookqa/openbookqa.yaml", "openbookqa/main/validation",
                 "test", "allenai/openbookqa:main"),
        TaskInfo("piqa", "PIQA", "piqa/piqa.yaml", "piqa/plain_text/validation",
                 "validation", "baber/piqa"),
        TaskInfo("winogrande", "WinoGrande", "winogrande/default.yaml", "winogrande/winogrande_xl/validation",
                 "validation", "allenai/winogrande:winogrande_xl"),
    )
}
DEFAULT_TASKS = list(TASKS)
# No package reachable offline ships LAMBADA: with --data-dir and no local copy it is reported as
# "not available offline" (its column stays in the table) instead of failing the run.
NO_OFFLINE_COPY = {"lambada_openai"}
# What a save_to_disk split folder holds.
SPLIT_FILES = ("dataset_info.json", "state.json", "data-00000-of-00001.arrow")


def parse_tasks(spec: str | list[str]) -> list[str]:
    """Task names from 'a,b' or a list, checked against the supported ones (one line listing them)."""
    names = [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec) if t.strip()]
    if not names:
        raise ValueError(f"no zero-shot task given; pass --tasks with some of {','.join(TASKS)}")
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown zero-shot task {', '.join(map(repr, unknown))}; known tasks: {','.join(TASKS)}")
    return list(dict.fromkeys(names))


def lm_eval_config(task: str) -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent / TASKS[task].config


def local_split(data_dir: str | Path, task: str) -> tuple[str, list[Path]] | None:
    """(split name, its arrow files) of the task's local copy; None when the copy is absent altogether.
    A copy that is there but incomplete is an error naming the task and the missing files."""
    folder = Path(data_dir) / TASKS[task].local
    if not folder.exists():
        if task in NO_OFFLINE_COPY:
            return None
        raise FileNotFoundError(f"--data-dir {data_dir}: no copy of {task} (expected {folder}/ with "
                                f"{', '.join(SPLIT_FILES)}); save it there with datasets' save_to_disk, "
                                f"or drop the task")
    missing = [f for f in SPLIT_FILES[:2] if not (folder / f).is_file()]
    arrows = sorted(folder.glob("data-*.arrow"))
    if not arrows:
        missing.append("data-*.arrow")
    if missing:
        raise FileNotFoundError(f"--data-dir {data_dir}: the copy of {task} in {folder} lacks "
                                f"{', '.join(missing)}; save it again with datasets' save_to_disk")
    for arrow in arrows:
        check_arrow(arrow, task)
        # A newline or other control character there can only come from a crafted link; refused by name here
        # (the YAML written for lm-eval quotes it anyway) rather than failing inside datasets on a broken path.
        real = str(arrow.resolve())
        if any(ord(c) < 32 or ord(c) == 127 for c in real):
            raise ValueError(f"--data-dir: {str(arrow)!r} (the copy of {task}) leads to {real!r}, a path with a "
                             f"control character; copy the file to a plain path")
    return folder.name, arrows


def check_arrow(path: Path, task: str) -> None:
    """Read `path` as datasets' arrow reader does (an IPC stream, else an IPC file): a damaged copy failed inside
    lm-eval with pyarrow's own line ("File is too small: 8"), naming no file. Memory-mapped, so a whole split reads
    in milliseconds."""
    import pyarrow as pa

    from sinktrain.zeroshot.checks import first_line

    try:
        with pa.memory_map(str(path)) as f:
            try:
                pa.ipc.open_stream(f).read_all()
            except (OSError, pa.ArrowInvalid):
                f.seek(0)
                pa.ipc.open_file(f).read_all()
    except (OSError, pa.ArrowInvalid) as e:
        raise ValueError(f"--data-dir: {path} (the copy of {task}) is not a readable Arrow file ({first_line(e)}); "
                         f"save it again with datasets' save_to_disk") from None


def write_local_task(task: str, split: str, arrows: list[Path], out_dir: Path) -> Path:
    """A task YAML reading `arrows` as the split lm-eval scores; everything but the data is lm-eval's config.

    Written with yaml.safe_dump, never by pasting paths into text: lm-eval reads it with a loader that imports
    and runs the Python file a `!function` tag names, and a data file whose (link-resolved) path held a newline and
    such a tag ran that file."""
    import yaml

    config = {
        "include": str(lm_eval_config(task)),
        "task": task,
        "dataset_path": "arrow",  # datasets' packaged reader of .arrow files: no hub access
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {split: [str(a.resolve()) for a in arrows]}},
        # Only this split is there: no few-shot pool (zero-shot needs none), and the split scored is this one.
        "training_split": None,
        "fewshot_split": None,
        "validation_split": "validation" if split == "validation" else None,
        "test_split": None if split == "validation" else split,
    }
    header = f"# lm-eval's {task} config, its data read from a local save_to_disk copy (by sinktrain zeroshot)\n"
    path = out_dir / f"{task}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1 << 16))
    tmp.replace(path)
    return path
