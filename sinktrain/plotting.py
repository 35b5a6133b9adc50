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
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """tight_layout, write to a temporary name, rename, close: a PNG that exists is complete."""
    plt = pyplot()
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
