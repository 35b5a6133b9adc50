"""`sinktrain export SOURCE OUT_DIR [--every K] [--zeroshot_results R] [--push_to_hub REPO ...]`: ExportConfig's
keys, typed (`sinktrain export --help` lists them)."""

from __future__ import annotations

from pathlib import Path

from sinktrain.cli_config import add_config_verb
from sinktrain.verbs import verb_help


def register(sub) -> None:
    from sinktrain.export.config import ExportConfig

    add_config_verb(sub, "export", ExportConfig, run, positionals=("source", "out_dir"),
                    help=verb_help("export"))


def run(cfg) -> int:
    from sinktrain.export import export_checkpoint, export_every, push_folder, step_branch

    if cfg.every:
        outs = export_every(cfg.source, cfg.out_dir, cfg.every, overwrite=cfg.overwrite)
    else:
        outs = [export_checkpoint(cfg)]
    for out in outs:
        print(f"exported {out}")
        if cfg.push_to_hub:
            revision = cfg.revision or (step_branch(Path(out)) if cfg.every else None)
            files = push_folder(out, cfg.push_to_hub, revision=revision, private=cfg.private, dry_run=cfg.dry_run)
            verb = "would upload" if cfg.dry_run else "uploaded"
            print(f"{verb} {len(files)} files to {cfg.push_to_hub}@{revision or 'main'}: {', '.join(files)}")
    return 0
