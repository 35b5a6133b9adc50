"""Matplotlib helpers shared by the stages that draw (export's loss curve, stream-eval's plots, the report):
headless backend, one look for every axis, atomic PNG writes."""

from __future__ import annotations

from pathlib import Path

from sinktrain.util.atomic import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def style_axes(ax, xlabel: str, ylabel: str, title: str, ylim=None, legend_size: int | None = None) -> None:
    """Labels, title and legend are drawn as they are written: they hold names the user chose (a folder, a model,
    a variant), and matplotlib read a `$...$` in one as TeX, which failed at the end of the run (after all its work)
    or drew something else."""
    ax.set_xlabel(xlabel, parse_math=False)
    ax.set_ylabel(ylabel, parse_math=False)
    ax.set_title(title, parse_math=False)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    for text in ax.legend(fontsize=legend_size).get_texts():
        text.set_parse_math(False)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """tight_layout, write to a temporary name, rename, close: a PNG that exists is complete."""
    plt = pyplot()
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
