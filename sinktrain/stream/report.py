"""Writers for the evaluator's artifacts: Table-3-style table (markdown + CSV), per-token NLL arrays, PNG plots,
TensorBoard scalars. Every file is written under a temporary name and renamed when complete."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from sinktrain.plotting import pyplot, save_figure, style_axes
from sinktrain.util.atomic import write_bytes_atomic
from sinktrain.util.tables import config_columns, perplexity_table


def write_table(results: dict, out_dir, recompute_cache: int | None = None) -> tuple[Path, Path]:
    """`table.md` (models × configurations, perplexity) and `table.csv` (one row per model and configuration).
    `recompute_cache`: the recompute baseline's window, said in the footnote (with --configs it is the longest
    s+w, not --cache)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = config_columns(results)
    lines = [perplexity_table(results)]
    tokens = sorted({per[c]["tokens"] for per in results.values() for c in per})
    lines += ["", f"Perplexity over {', '.join(map(str, tokens))} scored tokens (s+w: s sink tokens + w recent)."]
    if recompute_cache is not None:
        lines[-1] += f" recompute: each token predicted by a fresh forward over the last {recompute_cache} tokens."
    md = out_dir / "table.md"
    write_bytes_atomic(md, ("\n".join(lines) + "\n").encode())
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["model", "config", "ppl", "nll_mean", "tokens"])
    for model, per in results.items():
        for c in cols:
            if c in per:
                writer.writerow([model, c, f"{per[c]['ppl']:.6g}", f"{per[c]['nll_mean']:.8g}", per[c]["tokens"]])
    csv_path = out_dir / "table.csv"
    write_bytes_atomic(csv_path, buf.getvalue().encode())
    return md, csv_path


def write_nll(out_dir, model: str, config: str, nll: np.ndarray) -> Path:
    """`nll/<model>/<config>.npy`: float32 per-token NLL of the scored tokens, in stream order."""
    path = Path(out_dir) / "nll" / model / f"{config}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, nll.astype(np.float32))
    write_bytes_atomic(path, buf.getvalue())
    return path


def running_log_ppl(nll: np.ndarray, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Moving-average NLL (= log perplexity) over a window of ~1% of the stream, sampled at `points` x values."""
    n = len(nll)
    span = max(1, n // 100)
    csum = np.concatenate([[0.0], np.cumsum(nll, dtype=np.float64)])
    ends = np.unique(np.linspace(span, n, num=min(points, n - span + 1)).astype(int))
    return ends, (csum[ends] - csum[ends - span]) / span


def plot_log_ppl(nlls: dict, path, cache: int | None = None) -> Path:
    """log-PPL vs tokens, one panel per model and one line per configuration. `nlls[model][config]` = array."""
    plt = pyplot()
    models = list(nlls)
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        for config, nll in nlls[model].items():
            x, y = running_log_ppl(np.asarray(nll))
            ax.plot(x, y, label=f"{config} (PPL {math.exp(float(np.mean(nll))):.2f})", linewidth=1.2)
        if cache:
            ax.axvline(cache, color="grey", linestyle=":", linewidth=1, label=f"cache size {cache}")
        style_axes(ax, "input length (tokens)", "log PPL (moving average over 1% of the stream)",
                   f"{model}: streaming log-perplexity", legend_size=8)
    return save_figure(fig, path)


def plot_sink_attention(stats: dict, path, first_k: int) -> Path:
    """Attention on the first `first_k` tokens per layer (mean over heads; band = min..max over heads)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for model, per_head in stats.items():
        arr = np.asarray(per_head)  # [layers, heads] (NaN where a layer has fewer heads)
        layers = np.arange(arr.shape[0])
        ax.plot(layers, np.nanmean(arr, 1), marker="o", label=f"{model} (mean over heads)")
        ax.fill_between(layers, np.nanmin(arr, 1), np.nanmax(arr, 1), alpha=0.15)
    n_layers = max(np.asarray(a).shape[0] for a in stats.values())
    ax.set_xticks(np.arange(0, n_layers, max(1, (n_layers + 14) // 15)))  # at most ~15 labels (30-layer models)
    style_axes(ax, "layer", f"attention weight on the first {first_k} tokens",
               f"Attention on the first {first_k} tokens per layer (band: min-max over heads)", ylim=(0, 1),
               legend_size=8)
    return save_figure(fig, path)


def plot_attention_maps(maps: list[np.ndarray], path, model: str, layers: list[int] | None = None) -> Path:
    """Head-averaged attention maps of a few layers (as in the paper's Fig. 2); `maps[l]` is [q, k]."""
    plt = pyplot()
    n = len(maps)
    if layers is None:
        layers = sorted({0, 1 % n, n // 2, n - 1})
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.6), squeeze=False)
    for ax, li in zip(axes[0], layers):
        m = maps[li]
        shown = np.where(np.tril(np.ones_like(m, dtype=bool)), m, np.nan)  # blank the masked future
        im = ax.imshow(shown, cmap="viridis", vmin=0, vmax=min(1.0, float(np.nanmax(shown[1:])) if len(m) > 1 else 1.0))
        ax.set_title(f"layer {li}")
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{model}: attention maps, mean over heads, first {maps[0].shape[0]} tokens",
                 parse_math=False)  # a model named with `$...$` is no TeX (see style_axes)
    return save_figure(fig, path)


def write_tensorboard(out_dir, nlls: dict, results: dict) -> Path:
    """Scalars under `<out>/tb`: `stream/<model>/<config>/log_ppl` (moving average vs tokens) and final PPL."""
    from torch.utils.tensorboard import SummaryWriter

    tb_dir = Path(out_dir) / "tb"
    writer = SummaryWriter(log_dir=str(tb_dir))
    try:
        for model, per in nlls.items():
            for config, nll in per.items():
                x, y = running_log_ppl(np.asarray(nll), points=200)
                for step, val in zip(x, y):
                    writer.add_scalar(f"stream/{model}/{config}/log_ppl", float(val), int(step))
                writer.add_scalar(f"stream/{model}/{config}/ppl", results[model][config]["ppl"], int(len(nll)))
    finally:
        writer.close()
    return tb_dir
