"""The study's report: report.json (stream-eval results keyed by variant) and report.md (Table 3 layout, loss
curves of all variants, sink score over training, and the evaluator's log-PPL and attention plots)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from sinktrain.export import read_metrics
from sinktrain.plotting import pyplot, save_figure, style_axes
from sinktrain.train import TrainConfig
from sinktrain.train.run_dir import read_run_info
from sinktrain.util.atomic import write_json_atomic, write_text_atomic, write_yaml_atomic
from sinktrain.util.tables import markdown_table, perplexity_table
from sinktrain.zeroshot import limited, markdown_table as zeroshot_table


def _variant_figure(metrics: dict[str, list[dict]], path: Path, draw, *labels, **style) -> Path | None:
    """One figure, `draw(ax, variant, rows)` for each variant (True when it drew anything), styled with
    `labels` (x, y, title) and `style`; None, and no file, when no variant had anything to draw."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    drawn = [draw(ax, variant, rows) for variant, rows in metrics.items()]
    if not any(drawn):
        plt.close(fig)
        return None
    style_axes(ax, *labels, **style)
    return save_figure(fig, path)


def plot_loss_curves(metrics: dict[str, list[dict]], path: Path) -> Path | None:
    def draw(ax, variant, rows) -> bool:
        pts = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
        if pts:
            line, = ax.plot(*zip(*pts), label=f"{variant} (train)")
            val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
            if val:
                ax.plot(*zip(*val), "o--", color=line.get_color(), label=f"{variant} (validation)")
        return bool(pts)

    return _variant_figure(metrics, path, draw, "optimizer step", "cross-entropy (nats/token)",
                           "Pre-training loss of all variants")


def plot_sink_scores(metrics: dict[str, list[dict]], path: Path) -> Path | None:
    """Attention on position 0 over training, averaged over layers (solid) and its top layer (dotted)."""
    def draw(ax, variant, rows) -> bool:
        pts = [(r["step"], r["sink_score"]) for r in rows if r.get("sink_score")]
        if pts:
            steps = [s for s, _ in pts]
            line, = ax.plot(steps, [sum(v) / len(v) for _, v in pts], "o-", label=f"{variant}: mean over layers")
            ax.plot(steps, [max(v) for _, v in pts], ":", color=line.get_color(), label=f"{variant}: max layer")
        return bool(pts)

    return _variant_figure(metrics, path, draw, "optimizer step", "attention weight on position 0",
                           "Sink score during training (fixed validation batch)", ylim=(0, 1), legend_size=8)


def plot_sink_dependence(metrics: dict[str, list[dict]], path: Path) -> Path | None:
    """What hiding the sink (or position 0) from the second half of each probe sequence costs, over training."""
    def draw(ax, variant, rows) -> bool:
        pts = [(r["step"], r["sink_dependence"]) for r in rows if r.get("sink_dependence") is not None]
        if pts:
            ax.axhline(0.0, color="black", linewidth=0.8)
            ax.plot(*zip(*pts), "o-", label=variant)
        return bool(pts)

    return _variant_figure(metrics, path, draw, "optimizer step", "NLL increase (nats/token)",
                           "Sink dependence: the sink hidden from the later half (fixed validation batch)",
                           legend_size=8)


def first_token_attention(stats_path: Path) -> list[str]:
    """Markdown lines: attention on the first k tokens per model (mean over layers and the strongest layer), and
    the NLL cost of hiding the first token(s) (stream-eval's attention_stats.json)."""
    if not stats_path.is_file():
        return []
    stats = json.loads(stats_path.read_text())
    if not stats:
        return []
    k = next(iter(stats.values()))["first_k"]
    lines = [f"Attention on the first {k} tokens (mean over heads and queries; a sink draws most of it), and what "
             f"hiding the first token (the sink token(s) of a sink model) from the later half of the same tokens "
             f"costs (a model that needs its sink pays most of a nat):", "",
             "| model | layers | mean over layers | strongest layer | NLL with the first token(s) hidden |",
             "|---|---|---|---|---|"]
    for model, s in stats.items():
        per_layer = s["per_layer"]
        top = max(range(len(per_layer)), key=per_layer.__getitem__)
        needs = s.get("sink_dependence")
        hidden = "-" if needs is None else f"{needs:+.3f} nats ({s['hidden']} hidden)"
        lines.append(f"| {model} | {len(per_layer)} | {sum(per_layer) / len(per_layer):.1%} | "
                     f"{per_layer[top]:.1%} (layer {top}) | {hidden} |")
    return lines + [""]


def run_config(run_dir: Path) -> TrainConfig:
    """What a run actually trained with: its own resolved config.yaml (not the study's recipe, which may have
    changed since, or differ through overrides)."""
    return TrainConfig.from_dict(yaml.safe_load((Path(run_dir) / "config.yaml").read_text()))


def stream_settings(stream_dir: Path, fallback) -> dict:
    """The evaluation's own record (stream/run.json), else the study's stream section."""
    run_info = stream_dir / "run.json"
    if run_info.is_file():
        recorded = json.loads(run_info.read_text()).get("config")
        if recorded:
            return recorded
    return fallback.__dict__


def zeroshot_block(cfg, results: dict | None) -> list[str]:
    """Table 4 beside Table 3: the variants' zero-shot accuracy (lm-evaluation-harness)."""
    if not results:
        return []
    root = cfg.root / "zeroshot"
    splits = json.loads((root / "run.json").read_text()).get("splits") if (root / "run.json").is_file() else None
    zc = cfg.zeroshot_config([])
    return ["## Zero-shot accuracy (Table 4 layout)" + (" — limited run" if limited(results, zc.limit) else ""), "",
            zeroshot_table(results, splits, zc.limit),
            f"Results: `{os.path.relpath(root / 'results.json', cfg.root)}`.", ""]


def write_report(cfg, results: dict, run_dirs: dict[str, Path], zeroshot_results: dict | None = None) -> Path:
    """report.json, the plots and report.md (and the study file beside them). Everything is read and the report
    built before the first file is written, then each is replaced whole: a report that fails part-way (an input
    it cannot read) leaves the earlier report as it was, not a new report.json beside the old report.md."""
    root = cfg.root
    metrics = {v: read_metrics(run_dirs[v]) for v in run_dirs}
    stream_dir = root / "stream"

    lines = [f"# Study `{cfg.name}`", ""]
    sc = stream_settings(stream_dir, cfg.stream_config([]))
    lines += [f"Streaming perplexity on `{sc.get('text')}`"
              + (f" (first {sc['tokens']} tokens)" if sc.get("tokens") else "")
              + f", StreamingLLM cache s+w ({sc.get('mode')} evaluator). "
              + "Lower is better; `0+C` is window attention.", ""]
    lines += [perplexity_table(results), ""]
    if cfg.pretrained:
        lines += [f"Also streamed, for comparison: pretrained {', '.join(f'`{p}`' for p in cfg.pretrained)}, each "
                  f"with its own tokenizer (so its token count and perplexity scale differ from the variants'). A "
                  f"model with a formed attention sink loses it in `0+C` (window attention) and gets it back with "
                  f"one or a few initial tokens kept.", ""]
    lines += first_token_attention(stream_dir / "attention_stats.json")
    lines += zeroshot_block(cfg, zeroshot_results)
    rows_out, spliced = [], []
    for v, rows in metrics.items():
        tc = run_config(run_dirs[v])
        info = run_dirs[v] / "run.json"
        for change in (read_run_info(info).get("schedule_changes", []) if info.is_file() else []):
            spliced.append(f"`{v}` resumed at step {change['at_step']} with {', '.join(change['changes'])}")
        losses = [r["loss"] for r in rows if r.get("loss") is not None]
        vals = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
        sink = f"{tc.model.sink.kind}" + (f" x{tc.model.num_sink_tokens}" if tc.model.num_sink_tokens else "")
        step, planned = (rows[-1]["step"] if rows else None), tc.trainer.max_steps
        # A variant stopped early (trainer.max_time, a SIGTERM) says so: its weights are not the finished run's.
        steps = "-" if step is None else str(step) if step >= planned else f"{step} of {planned}"
        needs = [r["sink_dependence"] for r in rows if r.get("sink_dependence") is not None]
        rows_out.append([v, tc.model.preset, sink, steps, f"{losses[-1]:.4f}" if losses else "-",
                         f"{vals[-1]:.4f}" if vals else "-", f"{needs[-1]:.4f}" if needs else "-"])
    header = ["variant", "preset", "sink", "steps", "final train loss", "final val loss", "final sink dependence"]
    lines += [markdown_table(header, rows_out), ""]
    if spliced:  # e.g. max_steps raised on an existing study: those runs are not straight runs of the new schedule
        lines += [f"Schedule changed during training (learning rate, steps or grad_clip): {'; '.join(spliced)}. "
                  f"Those weights differ from a run trained straight on the final schedule, so compare their rows "
                  f"with care (a new study folder trains every variant straight).", ""]

    # Every input is read: from here on only files are written.
    loss_png = plot_loss_curves(metrics, root / "loss_curves.png")
    sink_png = plot_sink_scores(metrics, root / "sink_score.png")
    dependence_png = plot_sink_dependence(metrics, root / "sink_dependence.png")
    rel = lambda p: os.path.relpath(p, root)  # noqa: E731  links relative to report.md
    if loss_png:
        lines += ["## Pre-training loss", "", f"![loss curves]({rel(loss_png)})", ""]
    if sink_png:
        lines += ["## Sink score over training", "", f"![sink score]({rel(sink_png)})", ""]
    if dependence_png:
        lines += ["## Sink dependence over training", "",
                  "How much the second half of each probe sequence loses when the sink token (or position 0) is "
                  "hidden from it: about 0 until the model needs its sink.", "",
                  f"![sink dependence]({rel(dependence_png)})", ""]
    pngs = sorted(stream_dir.glob("*.png"))
    if pngs:
        lines += ["## Streaming evaluation plots", ""]
        lines += [f"![{p.stem}]({rel(p)})" for p in pngs] + [""]
    lines += ["## Reproduce", "", "```", f"sinktrain experiment {cfg.root / 'experiment.yaml'}", "```", "",
              f"from `{Path.cwd()}`, the folder the study ran in: its relative paths (recipe, data, text) start there.",
              "",
              f"Per-token NLLs: `{rel(stream_dir / 'nll')}`; exported models: `export/<variant>`; "
              f"training runs (TensorBoard in `tb/`): `train/<variant>`.", ""]
    path = root / "report.md"
    write_json_atomic(root / "report.json", results)
    # Written now, not when the run starts: a run that fails before its report must not leave a study file that
    # the earlier report's "Reproduce" line points at but that did not make its numbers.
    write_yaml_atomic(root / "experiment.yaml", cfg.__dict__)
    write_text_atomic(path, "\n".join(lines))
    return path
