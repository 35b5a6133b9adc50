"""`sinktrain export <run-dir-or-checkpoint> <out-dir> [--every K] [--push-to-hub REPO ...]`."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("export", help="checkpoint -> Hugging Face folder (and optionally push it to the hub)")
    p.add_argument("source", help="a run directory (exports its newest checkpoint) or one checkpoint")
    p.add_argument("out_dir", help="folder to write (with --every: a folder of step-* folders)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty out_dir")
    p.add_argument("--every", type=int, default=None, metavar="K",
                   help="export every K-th checkpoint of the run (newest always included)")
    p.add_argument("--eval-results", default=None, help="stream-eval results.json to show in the model card")
    p.add_argument("--zeroshot-results", default=None, metavar="RESULTS_JSON",
                   help="`sinktrain zeroshot` results.json: model-index eval results in the model card")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="hub repo id, e.g. user/pythia-160m-sink")
    p.add_argument("--revision", default=None, help="hub branch, e.g. step143000 (default: main)")
    p.add_argument("--private", action="store_true", help="create the hub repo as private")
    p.add_argument("--dry-run", action="store_true", help="with --push-to-hub: list what would be uploaded")
    p.set_defaults(func=run)


def run(args) -> int:
    from sinktrain.export import ExportConfig, export_checkpoint, export_every, push_folder

    if args.every:
        outs = export_every(args.source, args.out_dir, args.every, overwrite=args.overwrite)
    else:
        outs = [export_checkpoint(ExportConfig(args.source, args.out_dir, args.overwrite, args.eval_results,
                                                 args.zeroshot_results))]
    for out in outs:
        print(f"exported {out}")
        if args.push_to_hub:
            # one branch per step, named as Pythia's: step-00001000 -> step1000
            revision = args.revision or (f"step{int(out.name.rsplit('-', 1)[-1])}" if args.every else None)
            files = push_folder(out, args.push_to_hub, revision=revision, private=args.private, dry_run=args.dry_run)
            verb = "would upload" if args.dry_run else "uploaded"
            print(f"{verb} {len(files)} files to {args.push_to_hub}@{revision or 'main'}: {', '.join(files)}")
    return 0
