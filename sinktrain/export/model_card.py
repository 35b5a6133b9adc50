"""Model card (README.md with hub metadata) for an exported folder, and its loss-curve plot."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

VARIANT_TEXT = {
    "none": "vanilla GPT-NeoX (no sink mechanism)",
    "token": "learnable attention-sink token(s) prepended to every training sample (StreamingLLM, Sec. 3.3)",
    "softmax1": "Zero Sink: softmax with 1 added to the denominator (softmax-off-by-one)",
    "logit": "a learned sink logit per head per layer (an extra value-less softmax column, gpt-oss style)",
}


def read_metrics(run_dir: Path | None) -> list[dict]:
    """Rows of a run's metrics.jsonl (one per logged step, in step order: training truncates rows past the
    checkpoint it resumes from). A line cut short by a kill is skipped."""
    path = Path(run_dir) / "metrics.jsonl" if run_dir else None
    if not path or not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def plot_loss_curve(metrics: list[dict], out_png: Path, title: str) -> bool:
    """Training (and validation) loss against step; False when there is nothing to plot."""
    train = [(m["step"], m["loss"]) for m in metrics if m.get("loss") is not None]
    val = [(m["step"], m["val_loss"]) for m in metrics if m.get("val_loss") is not None]
    if not train:
        return False
    from sinktrain.plotting import pyplot, save_figure, style_axes

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(*zip(*train), label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    style_axes(ax, "optimizer step", "cross-entropy (nats/token)", title)
    save_figure(fig, out_png)
    return True


def render_table(results: dict) -> str:
    """Markdown table from stream-eval results {model: {"s+w": {"ppl": ...}}}."""
    configs = list(dict.fromkeys(c for per_model in results.values() for c in per_model))
    lines = ["| model | " + " | ".join(configs) + " |", "|---" * (len(configs) + 1) + "|"]
    for name, per_model in results.items():
        cells = [f"{per_model[c]['ppl']:.2f}" if c in per_model else "-" for c in configs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_model_card(out_dir: Path, meta: dict, train_config: dict, has_loss_plot: bool, eval_results: dict | None,
                     zeroshot: dict | None = None) -> None:
    from sinktrain.export.model_index import card_section, model_index

    model = train_config.get("model", {})
    sink = model.get("sink", {})
    kind = sink.get("kind", "none")
    header = {
        "license": "apache-2.0",
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "language": ["en"],
        "tags": ["sinktrain", "attention-sink", "streaming-llm", "gpt-neox", "pythia", f"sink-{kind}"],
    }
    if zeroshot and (index := model_index(zeroshot)):
        header["model-index"] = index
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", ""]
    lines += [f"# {out_dir.name}", "", f"A {model.get('preset', '?')} GPT-NeoX model trained with "
              f"[sinktrain](https://github.com/) — {VARIANT_TEXT.get(kind, kind)}.", ""]
    lines += ["## Use", "", "```python"]
    remote = kind in ("softmax1", "logit")
    if remote:
        lines += ["# the architecture's code ships in this folder (sink_gptneox.py); with sinktrain installed,",
                  "# `import sinktrain.model` registers it instead and trust_remote_code is not needed"]
    lines += [
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'tok = AutoTokenizer.from_pretrained("{out_dir.name}")',
        f'model = AutoModelForCausalLM.from_pretrained("{out_dir.name}"' + (", trust_remote_code=True)" if remote else ")"),
        "```",
        "",
    ]
    if kind == "token":
        lines += [f"The tokenizer prepends the sink token(s) {meta['sink_token_ids']} to every text, as in training. "
                  "For streaming inference keep them in the KV cache (a StreamingLLM cache with s = "
                  f"{len(meta['sink_token_ids'])}).", ""]
    lines += ["## Training", "", "| | |", "|---|---|"]
    facts = {
        "variant": kind,
        "sink tokens": meta.get("sink_token_ids") or "-",
        "preset": model.get("preset"),
        "sequence length": meta.get("seq_len"),
        "step": meta.get("step"),
        "tokens seen": meta.get("tokens_seen"),
        "recipe": meta.get("recipe") or "-",
        "data manifest sha256": meta.get("data_manifest_sha256") or "-",
    }
    for k, v in facts.items():
        lines.append(f"| {k} | {v} |")
    lines.append("")
    if has_loss_plot:
        lines += ["![training loss](loss_curve.png)", ""]
    if eval_results:
        lines += ["## Streaming evaluation (perplexity, cache s+w)", "", render_table(eval_results), ""]
    if zeroshot:
        lines += card_section(zeroshot)
    lines += ["## Full training configuration", "", "```yaml", yaml.safe_dump(train_config, sort_keys=False).strip(), "```", ""]
    (out_dir / "README.md").write_text("\n".join(lines))
