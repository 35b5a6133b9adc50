"""`run_experiment`: data -> train (each variant) -> export -> stream-eval -> report, each stage through its
own public entry (the same functions its CLI verb calls).

Every input of every stage is checked before the first stage runs (`preflight`); what needs the prepared data
(each variant's sample length against the validation split) right after the data stage, before the first
variant trains (`check_variant_data`). Idempotent and resumable: a stage is skipped only when its artifact was
made from the current inputs (done-markers, markers.py; a training run's inputs are the identity of the data its
run.json records) and its files are as it wrote them; an unfinished training run resumes from its newest
complete checkpoint (the training stage's own `resume: auto`). A run trained on data that has since been
re-prepared, or under another recipe (`RECIPE_FIELDS`: model, optimizer, schedule, batch, ...; for an unfinished
run all but max_steps), is kept aside as `train/<variant>.old-N` and trained again.
Under torchrun every rank trains; rank 0 alone prepares data, exports, evaluates and writes the report.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import yaml

from sinktrain.data import (
    PrepareAgain,
    data_tokenizer,
    holds_dataset,
    load_tokenizer,
    prepare,
    read_manifest,
    resolve_source,
    wait_for_dataset,
)
from sinktrain.config_io import dotted_value
from sinktrain.experiment.config import ExperimentConfig, check_outside_inputs, in_section
from sinktrain.data.longtext import text_source_sha256
from sinktrain.data.manifest import dataset_identity
from sinktrain.experiment.markers import STAGES_DIR, forget, is_done, mark_done, output_problem, tree_sha256
from sinktrain.experiment.report import write_report
from sinktrain.export import ExportConfig, export_checkpoint
from sinktrain.model.source import ModelSource, check_weight_files
from sinktrain.stream import evaluate
from sinktrain.stream.config import cache_size
from sinktrain.stream.config import validate as validate_stream_config
from sinktrain.stream.evaluation import model_names, plan as stream_plan
from sinktrain.train import latest_checkpoint, preflight as train_preflight, train
from sinktrain.train.checkpoint import read_meta
from sinktrain.train.checks import open_token_datasets
from sinktrain.train.run_dir import LOCK_FILE, is_sinktrain_run
from sinktrain.util.hashing import file_sha256
from sinktrain.util.outputs import output_lock
from sinktrain.util.rank import is_global_rank_zero, launched_world_size, rank_zero_print
from sinktrain.util.text_files import load_json
from sinktrain.zeroshot import check_fits, longest_answers, zeroshot


def log(msg: str) -> None:
    rank_zero_print(f"[experiment] {msg}")


def _checkpoint_step(ckpt: Path | None) -> int:
    return int(ckpt.name.rsplit("-", 1)[-1]) if ckpt is not None else -1


def preflight(cfg: ExperimentConfig) -> None:
    """Every stage's inputs, checked before the first stage writes anything: a typo in `stream:` must not
    surface after hours of training."""
    check_outside_inputs(cfg)
    check_root(cfg.root)
    pc = cfg.prepare_config()
    if pc is None:
        read_manifest(cfg.data_dir)
    else:
        for source in pc.sources:
            resolve_source(source)
    # The tokenizer the data is (or will be) prepared with, which every variant trains on and its export carries:
    # data.tokenizer (the bundled one when none is given), or that of the prepared data.dir.
    with in_section("data"):
        tokenizer = load_tokenizer(pc.tokenizer) if pc is not None else data_tokenizer(cfg.data_dir)
    for variant in cfg.variants:
        tc = cfg.train_config(variant)
        train_preflight(tc)
        check_variant_tokenizer(variant, tc, tokenizer)
        info = Path(tc.run_dir) / "run.json"
        if info.is_file():  # read again by the training stage: a damaged one is refused now, not after other training
            trained_manifest(info)
    sc = cfg.stream_config([str(cfg.root / "export" / v) for v in cfg.variants])
    with in_section("stream"):
        pairs = validate_stream_config(sc)  # also checks the text (missing, empty, not UTF-8)
        check_stream_text(sc, tokenizer, cache_size(sc, pairs))
        check_pretrained(cfg, cache_size(sc, pairs))  # None for a dense-only study, as stream-eval has it
    check_zeroshot_contexts(cfg, tokenizer)


def check_variant_tokenizer(variant: str, tc, tokenizer) -> None:
    """A variant's own data.tokenizer (recipe, base or variants) and tokenizer_vocab_size against the data's
    tokenizer: training checks them only when the variant starts, after the variants before it trained."""
    from sinktrain.data import tokenizer_hash

    where = f"experiment variant {variant!r}"
    if tc.data.tokenizer is not None:
        try:
            own = load_tokenizer(tc.data.tokenizer)
        except (ValueError, OSError) as e:
            raise type(e)(f"{where}: data.tokenizer: {e}") from None
        if tokenizer_hash(own) != tokenizer_hash(tokenizer):
            raise ValueError(f"{where}: data.tokenizer {tc.data.tokenizer!r} is not the tokenizer the study's data "
                             f"is prepared with; drop data.tokenizer from the recipe, base or variants.{variant} (the "
                             f"data's own is used), or prepare the data with it (tokenizer: under data:)")
    if tc.model.tokenizer_vocab_size != len(tokenizer):
        ids = len(tokenizer)
        raise ValueError(f"{where}: model.tokenizer_vocab_size is {tc.model.tokenizer_vocab_size} but the study's "
                         f"data tokenizer has {ids} ids; set model.tokenizer_vocab_size to {ids}, or prepare the "
                         f"data with the model's tokenizer (tokenizer: under data:)")


def check_stream_text(sc, tokenizer, longest: int | None) -> None:
    """The variants' side of stream-eval's own checks, with the data's tokenizer (the one each export carries):
    a stream.tokenizer that disagrees with it, a text no longer than the cache (read up to stream.tokens), a
    PG19 dataset that cannot be reached. stream-eval finds them only after every variant trained."""
    from sinktrain.data import tokenizer_hash
    from sinktrain.data.longtext import is_pg19, load_long_text

    if sc.tokenizer is not None and tokenizer_hash(load_tokenizer(sc.tokenizer)) != tokenizer_hash(tokenizer):
        raise ValueError(f"stream.tokenizer {sc.tokenizer!r} disagrees with the tokenizer of the study's data, which "
                         f"every exported variant carries (stream-eval refuses a tokenizer that disagrees with a "
                         f"model's own); drop stream.tokenizer (each model's own is used)")
    if is_pg19(sc.text):
        check_pg19_reachable(sc)  # its length needs the books themselves: stream-eval checks it
        return
    text = load_long_text(sc.text, tokenizer, sc.tokens)
    if longest is None and len(text) < 2:
        raise ValueError(f"the text has {len(text)} tokens in the data's tokenizer; the dense baseline scores "
                         f"tokens 1..N-1, so it needs at least 2; use a longer stream.text")
    if longest is not None and len(text) <= longest:
        more = " (or a larger stream.tokens)" if sc.tokens is not None and sc.tokens <= longest else ""
        raise ValueError(f"the text has {len(text)} tokens in the data's tokenizer (the variants'), not more than "
                         f"the cache size {longest}; use a longer stream.text{more} or a smaller cache")


def check_pg19_reachable(sc) -> None:
    """Open the PG19 dataset as stream-eval will (streamed: no rows are read, so this is cheap), so that an
    offline machine without a local copy, or a misspelt dataset or split, is refused before the training."""
    try:
        import datasets
    except ImportError:
        raise ValueError("stream.text pg19 needs the `datasets` package; pip install datasets, or stream local "
                         "books (stream.text FILE, FOLDER or GLOB)") from None
    try:
        datasets.load_dataset(sc.pg19_dataset, split=sc.pg19_split, streaming=True)
    except (OSError, ValueError) as e:  # ConnectionError offline, a missing local copy, an unknown split
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"cannot read the PG19 dataset {sc.pg19_dataset!r} (split {sc.pg19_split!r}: {first}); "
                         f"offline, stream local books (stream.text FILE, FOLDER or GLOB) or point "
                         f"stream.pg19_dataset at a local copy") from None


def check_variant_data(cfg: ExperimentConfig) -> None:
    """Each variant's data checks (its sample length against the validation split, its tokenizer and vocabulary
    against the manifest), once the data is there and before the first variant trains: training makes them only
    when the variant starts, hours into the study."""
    for variant in cfg.variants:
        with in_section("data", where=f"variant {variant!r}"):
            open_token_datasets(cfg.train_config(variant))


# The top-level keys of the experiment.yaml a study writes (cfg.__dict__: every field, in order; studies started
# before `stages/` was made first wrote it at their start, and some held export_every as well).
STUDY_FILE_KEYS = ("name", "recipe", "base", "variants", "data", "stream", "runs_dir")


def is_earlier_study(root: Path) -> bool:
    """Whether `root` is a study's folder. `stages/` is made before any stage writes; a study started by a
    sinktrain older than that (2026-11-27) made it only with its first done-marker, so one killed before its first
    export has none: it is known by the experiment.yaml such a study wrote at its start (every key of the study
    file, its name this folder's), or by a sinktrain run under train/. A bare train/ or data/ is not enough."""
    if (root / STAGES_DIR).is_dir():
        return True
    try:
        saved = yaml.safe_load((root / "experiment.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):  # none, or not the YAML a study writes
        saved = None
    if isinstance(saved, dict) and set(STUDY_FILE_KEYS) <= saved.keys() and saved["name"] == root.name:
        return True
    runs = (root / "train").iterdir() if (root / "train").is_dir() else ()
    # (a run folder holding only its lock, which is_sinktrain_run also takes for one killed at its start, is not)
    return any(d.is_dir() and any(p.name != LOCK_FILE for p in d.iterdir()) and is_sinktrain_run(d) for d in runs)


def check_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"study folder {root} is a file; choose another name: or runs_dir:")
    if root.is_dir() and any(root.iterdir()) and not is_earlier_study(root):
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
        held = ", ".join(map(repr, names[:3])) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise FileExistsError(f"study folder {root} holds {held} but is not an earlier study (no {STAGES_DIR}/, nor "
                              f"an experiment.yaml or train/ run a study wrote); a study would overwrite its files: "
                              f"choose another name: or runs_dir:, or move them away")


def check_pretrained(cfg: ExperimentConfig, longest: int | None) -> None:
    """The pretrained models as stream-eval checks them before streaming (own code, weight files, architecture,
    tokenizer or stream.tokenizer, the text in each tokenizer), before any training. The variants get the same
    checks from the stream stage once they are exported."""
    if cfg.pretrained:
        stream_plan(cfg.stream_config(list(cfg.pretrained)), longest)


def check_zeroshot_contexts(cfg: ExperimentConfig, tokenizer) -> None:
    """Each variant's context holds the longest answer of every zero-shot task, in the data's tokenizer (the one
    the export will carry): otherwise the zeroshot stage could only refuse after every variant trained."""
    zc = cfg.zeroshot_config([str(cfg.root / "export" / v) for v in cfg.variants])
    if zc is None:
        return
    longest = longest_answers(zc, [tokenizer])[0]
    for v in cfg.variants:
        model = cfg.train_config(v).model
        check_fits(f"experiment zeroshot: variant {v}", longest, model.seq_len, model.num_sink_tokens,
                   "raise the variant's model.max_seq_len, or drop the task from zeroshot.tasks")


def stage_data(cfg: ExperimentConfig) -> None:
    pc = cfg.prepare_config()
    if pc is None:
        read_manifest(cfg.data_dir)  # fails clearly if the given directory is not prepared data
        log(f"data: using prepared {cfg.data_dir}")
        return
    # Under torchrun the other ranks wait until the folder holds the dataset this study describes. Waiting for a
    # manifest let them go on with the one an overwrite was about to replace: they trained on the old data, rank
    # 0 on the new. The same dataset is therefore not prepared again under torchrun, overwrite or not: the other
    # ranks cannot tell a rewrite of it from none (its bytes would be the same) and could read it mid-rename.
    if not is_global_rank_zero():
        wait_for_dataset(pc)
        return
    if pc.overwrite and launched_world_size() > 1 and holds_dataset(pc):
        log(f"data: {cfg.data_dir} already holds this dataset, whole; under torchrun data.overwrite prepares "
            f"only data that differs (to fetch a hub source again, run `sinktrain data prepare --overwrite true` "
            f"first)")
        return
    try:
        prepare(pc, redo="--set data.overwrite=true")  # a no-op when it holds this exact preparation
    except PrepareAgain as e:
        # prepare's own message names its CLI flags, which `sinktrain experiment` does not take
        raise FileExistsError(
            f"{cfg.data_dir} {e.what}; to prepare it again (and train every variant again), set overwrite: true "
            f"under data: in the study file or pass --set data.overwrite=true") from None


# What decides a trained variant's weights. The rest of a training config (where it logs, how often it
# checkpoints, the speed levers, the micro-batch split of the same global batch, the run's own path) may change
# without training again. Deliberately left out, as levers that change rounding at most, not the recipe:
# trainer.deterministic (deterministic kernels; a run without them already differs from itself in the last bits),
# optim.impl (DeepSpeed FusedAdam and torch AdamW compute the same update) and trainer.zero_stage (ZeRO shards the
# same optimizer state and gradients across ranks).
RECIPE_FIELDS = ("model", "data.tokenizer", "data.seed", "optim.lr", "optim.min_lr", "optim.betas", "optim.eps",
                 "optim.weight_decay", "optim.grad_clip", "schedule", "trainer.precision",
                 "trainer.global_batch_size", "trainer.max_steps", "seed", "trainer.initial_loss_scale_power")
# Fields that count only when a run trains in fp16 (16-mixed, or auto, which is 16-mixed on a GPU without bf16):
# the initial loss scale decides which of the first steps overflow and are skipped, and so the weights; in any
# other precision it is never read, and a change of it must not train a finished variant again.
FP16_FIELDS = ("trainer.initial_loss_scale_power",)
FP16_PRECISIONS = ("16-mixed", "auto")


def recipe_changes(saved: dict, current: dict) -> list[str]:
    """The RECIPE_FIELDS (sections: their keys) that differ between a checkpoint's config and this one."""
    fp16 = any(dotted_value(c, "trainer.precision") in FP16_PRECISIONS for c in (saved, current))
    changes = []
    for name in RECIPE_FIELDS:
        if name in FP16_FIELDS and not fp16:
            continue
        old, new = dotted_value(saved, name), dotted_value(current, name)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += [f"{name}.{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                        if old.get(k) != new.get(k)]
        elif old != new:
            changes.append(f"{name} {old!r} -> {new!r}")
    return changes


def trained_manifest(info: Path) -> dict | None:
    """The data manifest a variant's run.json says it trained on; None where it records none (the variant then
    trains again, as data it cannot vouch for). One line naming the file where it cannot be read (it was the
    parser's bare message, or an AttributeError traceback for JSON that is not a mapping)."""
    fix = f"restore it from a copy, or move {info.parent} away and the study trains the variant again"
    try:
        data = load_json(info)
    except (OSError, ValueError) as e:
        raise ValueError(f"{info} cannot be read ({e}); {fix}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{info} is not a sinktrain run.json (it holds {type(data).__name__}, not a mapping); {fix}")
    manifest = data.get("data_manifest")
    return manifest if isinstance(manifest, dict) else None


def same_dataset(trained: dict | None, manifest: dict) -> bool:
    """Whether a run's recorded manifest describes the same tokens as `manifest` (None: the run does not say)."""
    return trained is not None and dataset_identity(trained) == dataset_identity(manifest)


def _stale_reason(run_dir: Path, tc, manifest: dict) -> str | None:
    """Why the variant's existing run cannot be reused or continued, or None: it was trained on other data, or
    under another recipe (a finished run is otherwise skipped, and its old weights would be reported under the
    new recipe). An unfinished run under the same recipe resumes, to the study's current max_steps."""
    info = run_dir / "run.json"
    # The data's identity, not its whole manifest: that also records how it was prepared (batch_size, workers,
    # overwrite, progress, out_dir), and the same shards prepared again with other such settings retrained it.
    if info.is_file() and not same_dataset(trained_manifest(info), manifest):
        return "the data was prepared again since this variant was trained"
    ckpt = latest_checkpoint(run_dir) if run_dir.exists() else None
    if ckpt is None:
        return None
    changes = recipe_changes(read_meta(ckpt)["config"], tc.to_dict())
    step = _checkpoint_step(ckpt)
    if step >= tc.trainer.max_steps:
        return f"it finished under another recipe ({'; '.join(changes)})" if changes else None
    # An unfinished run resumes to the new max_steps; any other recipe change would make the final weights depend
    # on the step at which the run was stopped (the steps before it under the old recipe, the rest under the new).
    changes = [c for c in changes if not c.startswith("trainer.max_steps ")]
    return f"it stopped at step {step} under another recipe ({'; '.join(changes)})" if changes else None


def stage_train(cfg: ExperimentConfig, variant: str) -> Path:
    tc = cfg.train_config(variant)
    run_dir = Path(tc.run_dir)
    manifest = read_manifest(cfg.data_dir)
    reason = _stale_reason(run_dir, tc, manifest)
    if reason is not None:
        if is_global_rank_zero():
            n = 1
            while run_dir.with_name(f"{run_dir.name}.old-{n}").exists():
                n += 1
            aside = run_dir.with_name(f"{run_dir.name}.old-{n}")
            run_dir.rename(aside)
            log(f"train {variant}: {reason}; its run is kept as {aside} and the variant trains again")
        while _stale_reason(run_dir, tc, manifest) is not None:  # other ranks wait for rank 0's move
            time.sleep(1)
    if _checkpoint_step(latest_checkpoint(run_dir) if run_dir.exists() else None) >= tc.trainer.max_steps:
        log(f"train {variant}: done (step {tc.trainer.max_steps} checkpoint exists), skipped")
        return run_dir
    log(f"train {variant}: {tc.model.preset}, sink {tc.model.sink.kind} x{tc.model.num_sink_tokens}, "
        f"{tc.trainer.max_steps} steps -> {run_dir}")
    return Path(train(tc, rerun="the same `sinktrain experiment` command"))


def in_variant(cfg: ExperimentConfig, variant: str):
    """Training's refusals say to resume with --resume auto or to start a new --run-dir, neither of which a study
    takes: a study resumes when it is run again, and trains a variant afresh once its run folder is moved away."""
    run_dir = cfg.root / "train" / variant
    return in_section("train", where=f"variant {variant!r}", flags=False, phrases=(
        (r"(?:pass |with )?--resume auto", "running the study again"),
        (r"(?:start|use|choose|resume into) (?:a new|another)(?: or empty)? --run[-_]dir",
         f"move {run_dir} away (the study then trains the variant again)"),
        (r"--run[-_]dir", "the run folder")))


def stage_export(cfg: ExperimentConfig, variant: str, run_dir: Path) -> Path:
    out = cfg.root / "export" / variant
    ckpt = latest_checkpoint(run_dir)
    stage, inputs = f"export-{variant}", {"checkpoint": str(ckpt), "checkpoint_sha256": tree_sha256(ckpt)}
    done = is_done(cfg.root, stage, inputs)
    # Any file the export wrote, not only config.json and the weights: an export whose tokenizer was deleted was
    # skipped, and stream-eval then refused it for having none.
    damage = (_export_damage(out) or output_problem(cfg.root, stage, out)) if done else None
    if done and damage is None:
        log(f"export {variant}: done (step {_checkpoint_step(ckpt)}), skipped")
        return out
    if done:  # a cut-short copy or a deleted file: exported again, not refused later
        log(f"export {variant}: {damage}; exporting it again")
    log(f"export {variant}: {ckpt} -> {out}")
    forget(cfg.root, stage)
    export_checkpoint(ExportConfig(str(ckpt), str(out), overwrite=True))
    mark_done(cfg.root, stage, inputs, out)
    return out


def _export_damage(out: Path) -> str | None:
    """What is wrong with a study's export folder (its config.json gone, weights missing or cut short), or None."""
    if not (out / "config.json").is_file():
        return "its config.json is missing"
    try:
        check_weight_files(ModelSource(str(out), "folder", str(out)))
    except ValueError as e:
        return str(e).split(": ", 1)[-1]
    return None


def local_sha256(spec: str) -> str | None:
    """Content hash of a pretrained model given as a local folder or file; None for a hub id or zoo name, which
    the spec identifies (a zoo model is fetched once and never changes)."""
    path = Path(spec).expanduser()
    return tree_sha256(path) if path.is_dir() else file_sha256(path) if path.is_file() else None


def zeroshot_data_sha256(zc) -> dict:
    """{task: {arrow file: content hash}} of the local copies lm-eval reads ({} when lm-eval downloads)."""
    return {t: ({str(a): file_sha256(a) for a in src[1]} if src else None) for t, src in zc.task_sources().items()}


def results_problem(results, models: list[str], shape: str, entry_ok=lambda entry: True) -> str | None:
    """What is wrong with a stage's results.json for `models`, or None: {model: {key: {...}}}, every one of `models`
    there and `entry_ok` true of each entry; `shape` names the key and entry in the message."""
    if not isinstance(results, dict):
        return f"it holds {type(results).__name__}, not a mapping of model to results"
    missing = [m for m in models if m not in results]
    if missing:
        return f"it has no results for {', '.join(missing)}"
    bad = [m for m, per in results.items() if not isinstance(per, dict)
           or not all(isinstance(r, dict) and entry_ok(r) for r in per.values())]
    return f"its results for {bad[0]!r} are not a mapping of {shape}" if bad else None


def reusable_results(root: Path, stage: str, out: Path, problem_of) -> tuple[dict | None, str | None]:
    """(results, None) from a done stage's out/results.json when every file the stage wrote is as it was written
    and the results have the shape `problem_of` checks; else (None, what is wrong): the stage runs again rather
    than handing a cut-short or edited file to the report (which failed on it, or reported it)."""
    path = out / "results.json"
    problem = output_problem(root, stage, out)
    if problem is None:
        try:
            results = load_json(path)
        except (OSError, ValueError) as e:
            problem = f"results.json cannot be read ({e})"
        else:
            problem = problem_of(results)
            problem = f"results.json: {problem}" if problem else None
    return (None, f"in {out}, {problem}") if problem else (results, None)


def stage_stream(cfg: ExperimentConfig, model_hashes: dict[str, str]) -> dict:
    """`model_hashes`: content hash of each exported folder (computed once, shared with the zeroshot stage)."""
    sc = cfg.stream_config(list(model_hashes) + list(cfg.pretrained))
    out = Path(sc.out)
    inputs = {"config": json.loads(json.dumps(sc.__dict__)), "models": model_hashes,
              "text_sha256": text_source_sha256(sc.text), "pretrained": {p: local_sha256(p) for p in cfg.pretrained}}
    if (out / "results.json").is_file() and is_done(cfg.root, "stream", inputs):
        results, problem = reusable_results(cfg.root, "stream", out, lambda r: results_problem(
            r, model_names(sc.models), "configuration to {ppl: number, ...}",
            lambda entry: isinstance(entry.get("ppl"), (int, float))))
        if problem is None:
            log(f"stream-eval: done ({out / 'results.json'}), skipped")
            return results
        log(f"stream-eval: {problem}; evaluating again")
    log(f"stream-eval: {len(sc.models)} models on {sc.text} -> {sc.out}")
    forget(cfg.root, "stream")
    results = evaluate(sc)
    mark_done(cfg.root, "stream", inputs, out)
    return results


def stage_zeroshot(cfg: ExperimentConfig, exports: dict[str, Path], model_hashes: dict[str, str]) -> dict | None:
    """Zero-shot accuracy of each variant, keyed by variant name (None when the study lists no tasks). Skipped
    only when its done-marker says every variant was scored from the current exports, data and settings: the
    zeroshot verb rewrites results.json after each model, so a killed run's file looks whole but is not."""
    zc = cfg.zeroshot_config([str(d) for d in exports.values()])
    if zc is None:
        return None
    zc.validate()  # normalizes the task list
    by_dir = dict(zip(zc.models, exports))
    out = Path(zc.out)
    inputs = {"config": json.loads(json.dumps(zc.__dict__)), "models": model_hashes,
              "data": zeroshot_data_sha256(zc)}
    if (out / "results.json").is_file() and is_done(cfg.root, "zeroshot", inputs):
        results, problem = reusable_results(cfg.root, "zeroshot", out,
                                            lambda r: results_problem(r, list(zc.models), "task to results"))
        if problem is None:
            log(f"zeroshot: done ({out / 'results.json'}), skipped")
            return {by_dir[m]: results[m] for m in zc.models}
        log(f"zeroshot: {problem}; scoring again")
    log(f"zeroshot: {len(zc.models)} variants on {', '.join(zc.tasks)}"
        + (f" (first {zc.limit} examples each)" if zc.limit else "") + f" -> {zc.out}")
    forget(cfg.root, "zeroshot")
    results = zeroshot(zc)
    mark_done(cfg.root, "zeroshot", inputs, out)
    return {by_dir[m]: r for m, r in results.items()}


def run_experiment(cfg: ExperimentConfig) -> Path | None:
    """Run (or finish) the whole study; returns the report path (None on ranks other than 0)."""
    # One run of a study at a time: a second one forgot the first one's done-markers and ran its stages into the
    # same folders. Rank 0 holds it: the other ranks of a torchrun are the same run.
    with output_lock(cfg.root, "study folder") if is_global_rank_zero() else nullcontext():
        return _run_experiment(cfg)


def _run_experiment(cfg: ExperimentConfig) -> Path | None:
    preflight(cfg)
    # Made before any stage writes: it marks the folder as a study's (check_root). The resolved study file is
    # written with the report, so that it always describes the run that made the report's numbers.
    (cfg.root / STAGES_DIR).mkdir(parents=True, exist_ok=True)
    # A stage's own refusals name its CLI flags (--tokens, --val-fraction); a study user edits keys of the
    # study's sections (stream.tokens), which in_section names instead.
    with in_section("data", phrases=(  # the study's data folder is <root>/data, no key of the study
            (r"pass (?:a directory to|an empty or new) --out_dir", "move it away"),
            (r"--out_dir", "the study's data folder"))):
        stage_data(cfg)
    check_variant_data(cfg)
    run_dirs = {}
    for v in cfg.variants:
        with in_variant(cfg, v):
            run_dirs[v] = stage_train(cfg, v)
    if not is_global_rank_zero():
        return None
    exports = {v: stage_export(cfg, v, run_dirs[v]) for v in cfg.variants}
    model_hashes = {str(d): tree_sha256(d) for d in exports.values()}
    with in_section("stream"):
        results = stage_stream(cfg, model_hashes)
    with in_section("zeroshot"):
        zeroshot_results = stage_zeroshot(cfg, exports, model_hashes)
    report = write_report(cfg, results, run_dirs, zeroshot_results)
    log(f"report: {report}")
    return report
