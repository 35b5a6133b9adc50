"""ZeroShotConfig: what `sinktrain zeroshot` and `zeroshot()` take, and its validation."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path

from sinktrain.config_io import PositiveInt, configclass
from sinktrain.util.devices import DTYPES, check_device
from sinktrain.util.outputs import check_out_dir, read_marker
from sinktrain.zeroshot.tasks import DEFAULT_TASKS, local_split, parse_tasks


def is_earlier_zeroshot(out: Path) -> bool:
    """Whether folder `out` is a zeroshot output: its run.json records the splits scored, or (a run stopped before
    its first model was scored) it holds the task files. results.json alone cannot tell: stream-eval and
    streameval write one too, and --overwrite would replace their folders."""
    if (Path(out) / "tasks").is_dir():
        return True
    info = read_marker(Path(out) / "run.json")
    return isinstance(info, dict) and {"config", "splits"} <= set(info)


@configclass()
class ZeroShotConfig:
    """models: what stream-eval takes (sinktrain exports and other model folders, `.gguf` files, hub ids, zoo
    names); results are keyed by the spec as given. tasks: lm-eval task names, a subset of Table 4's.
    limit: score only the first `limit` examples of each task (None: all). data_dir: a folder of
    `datasets.save_to_disk` copies laid out as the repository's data/zeroshot (None: lm-eval downloads the data)."""

    models: list[str] = field(default_factory=list)
    """Models: sinktrain exports and other model folders, .gguf files, hub ids or zoo names."""
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    """lm-eval task names, a subset of Table 4's, e.g. piqa,arc_easy."""
    out: str = "zeroshot"
    """Folder for results.json, table.md and run.json."""
    overwrite: bool = False
    """Score into an earlier zeroshot's non-empty out folder (its results are replaced after the first model)."""
    limit: PositiveInt | None = None
    """Score only the first N examples of each task (None: all)."""
    batch_size: PositiveInt = 16
    """Requests per forward pass."""
    device: str = "cpu"
    """Torch device, e.g. cpu or cuda."""
    dtype: str = "float32"
    """float32, bfloat16 or float16."""
    data_dir: str | None = None
    """Folder of datasets.save_to_disk copies laid out as the repository's data/zeroshot (None: lm-eval downloads)."""

    def validate(self) -> None:
        import importlib.util

        # accelerate too: lm-eval lists it only under its own [hf] extra, and its HF model imports it.
        lacking = [name for name, module in (("lm-evaluation-harness", "lm_eval"), ("accelerate", "accelerate"))
                   if importlib.util.find_spec(module) is None]
        if lacking:
            raise ValueError(f"zero-shot evaluation needs {' and '.join(lacking)}; pip install 'sinktrain[zeroshot]'")
        if not self.models:
            raise ValueError("no model given; pass one or more model folders, .gguf files or hub ids")
        if len(set(self.models)) != len(self.models):
            raise ValueError("a model is given twice; results are keyed by the model as given, so list each once")
        self.tasks = parse_tasks(self.tasks)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit {self.limit}: give a positive number of examples per task, or leave it out")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: give a positive batch size")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        check_device(self.device)
        self.task_sources()
        check_out_dir(self.out, overwrite=self.overwrite, markers=("tasks/ or zeroshot run.json",),
                      what="zeroshot output", is_earlier=is_earlier_zeroshot,
                      own=("results.json", "run.json", "table.md", "tasks", "*.tmp*"),
                      inputs={"model": self.models, "--data-dir": self.data_dir},
                      replaced="its results once the first model is scored")

    def task_sources(self) -> dict[str, tuple[str, list[Path]] | None]:
        """{task: (split, arrow files)} under data_dir (None: no offline copy); {} when lm-eval downloads.
        A missing or incomplete copy is an error naming the task and its files."""
        if self.data_dir is None:
            return {}
        if not Path(self.data_dir).is_dir():
            raise FileNotFoundError(f"--data-dir {self.data_dir!r} does not exist; point it at a folder of "
                                    f"datasets.save_to_disk copies (e.g. data/zeroshot in the sinktrain repository)")
        return {t: local_split(self.data_dir, t) for t in parse_tasks(self.tasks)}
