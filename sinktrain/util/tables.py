"""The one Markdown-table renderer, and the perplexity table (the paper's Table 3 layout) built on it, which
the model card, stream-eval and the experiment report all show."""

from __future__ import annotations


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table; cells are str()-ed, `|` in a cell is escaped."""
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def config_columns(results: dict) -> list[str]:
    """Configuration names across all models: "s+w" sorted by s, then the baselines."""
    names = {c for per_model in results.values() for c in per_model}
    sink = sorted((c for c in names if "+" in c), key=lambda c: (int(c.split("+")[0]), c))
    return sink + sorted(names - set(sink))


def perplexity_table(results: dict) -> str:
    """Models x configurations from stream-eval results {model: {"s+w": {"ppl": ...}}}, perplexity to 2 decimals."""
    cols = config_columns(results)
    rows = [[model, *(f"{per[c]['ppl']:.2f}" if c in per else "-" for c in cols)] for model, per in results.items()]
    return markdown_table(["model", *cols], rows)
