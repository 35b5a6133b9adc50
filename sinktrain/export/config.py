"""ExportConfig: what `sinktrain export` and `export_checkpoint()` take, and its checks of the hub names (a module of
its own, light to import: the verb's `--help` and a refused flag need no torch or transformers)."""

from __future__ import annotations

from sinktrain.config_io import PositiveInt, configclass


@configclass()
class ExportConfig:
    """A training run (or one of its checkpoints) to a Hugging Face folder, optionally pushed to the hub."""

    source: str = ""
    """A run directory (exports its newest checkpoint) or one checkpoint inside a run."""
    out_dir: str = ""
    """Folder to write; with `every`, a folder of step-XXXXXXXX folders."""
    overwrite: bool = False
    """Replace a non-empty out_dir (only once the new export is complete)."""
    eval_results: str | None = None
    """A stream-eval results.json to show in the model card (and as hub model-index results)."""
    zeroshot_results: str | None = None
    """A `sinktrain zeroshot` results.json: a Table 4 block and model-index eval results in the model card."""
    every: PositiveInt | None = None
    """Export every k-th complete checkpoint of the run (the newest always included)."""
    push_to_hub: str | None = None
    """Hub repo id to push to, e.g. user/pythia-160m-sink."""
    revision: str | None = None
    """Hub branch (default main; with `every`, one branch per step named stepN, as Pythia's)."""
    private: bool = False
    """Create the hub repo as private."""
    dry_run: bool = False
    """With push_to_hub: list what would be uploaded, upload nothing."""

    def __post_init__(self):
        if not self.source or not self.out_dir:
            raise ValueError("export needs a source and an out_dir: sinktrain export RUN_DIR OUT_DIR")
        # A results file describes one evaluated model; attaching it to every step's card would claim its scores
        # for checkpoints that were never evaluated.
        given = [name for name, value in (("--eval-results", self.eval_results),
                                          ("--zeroshot-results", self.zeroshot_results)) if value]
        if self.every and given:
            raise ValueError(f"--every exports many checkpoints, and {' and '.join(given)} holds the results of one "
                             f"evaluated model; export that checkpoint alone (without --every) to add its results")
        hub_only = [flag for flag, value in (("--revision", self.revision), ("--private", self.private),
                                             ("--dry_run", self.dry_run)) if value]
        if hub_only and self.push_to_hub is None:  # each was ignored: a --dry-run exported for real
            raise ValueError(f"{' and '.join(hub_only)} only appl{'y' if len(hub_only) > 1 else 'ies'} with "
                             f"--push_to_hub; add --push_to_hub REPO_ID, "
                             f"or leave {'them' if len(hub_only) > 1 else 'it'} out")
        # The hub's names, checked before the export: a bad one failed only after it, as a network or login error.
        if self.push_to_hub is not None:
            check_repo_id(self.push_to_hub)
        if self.revision is not None:
            check_branch_name(self.revision)


def check_repo_id(repo_id: str) -> None:
    """One line for a --push_to_hub value the hub would refuse (huggingface_hub's own check)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not repo_id:
        raise ValueError("--push_to_hub is empty; pass the hub repo id to push to, e.g. user/pythia-160m-sink, or "
                         "leave the flag out")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        why = " ".join(str(e).split()).removesuffix(" Use `repo_type` argument if needed.")
        raise ValueError(f"--push_to_hub {repo_id!r} is not a hub repo id ({why}); pass one such as "
                         f"user/pythia-160m-sink") from None


def check_branch_name(name: str) -> None:
    """One line for a --revision that is not a valid git branch name (the rules of `git check-ref-format`)."""
    bad = sorted({c for c in name if c in " ~^:?*[\\" or ord(c) < 32 or ord(c) == 127})
    parts = name.split("/")
    rules = [(not name, "it is empty"), (bool(bad), f"it holds {''.join(bad)!r}"),
             *((s in name, f"it holds {s!r}") for s in ("..", "@{", "//")), (name == "@", "it is '@'"),
             *((name.startswith(e), f"it starts with {e!r}") for e in ("/", "-")),
             *((name.endswith(e), f"it ends with {e!r}") for e in ("/", ".lock", ".")),
             (any(p.startswith(".") for p in parts), "a part of it starts with '.'"),
             (any(p.endswith(".lock") for p in parts), "a part of it ends with '.lock'")]
    problem = next((text for broken, text in rules if broken), None)
    if problem:
        raise ValueError(f"--revision {name!r} is not a valid branch name ({problem}); pass a name such as step1000, "
                         f"or leave it out to push to main")
