"""Model card (README.md with hub metadata) for an exported folder, and its loss-curve plot."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from sinktrain.util.atomic import write_text_atomic
from sinktrain.util.tables import markdown_table, perplexity_table

VARIANT_TEXT = {
    "none": "vanilla GPT-NeoX (no sink mechanism)",
    "token": "learnable attention-sink token(s) prepended to every training sample (StreamingLLM, Sec. 3.3)",
    "softmax1": "Zero Sink: softmax with 1 added to the denominator (softmax-off-by-one)",
    "logit": "a learned sink logit per head per layer (an extra value-less softmax column, gpt-oss style)",
}


def read_metrics(run_dir: Path | None) -> list[dict]:
    """Rows of a run's metrics.jsonl (one per logged step, in step order: training truncates rows past the
    checkpoint it resumes from). `run_dir` is the run folder or the file itself (a copy taken off a GPU machine).
    A line cut short by a kill is skipped."""
    path = Path(run_dir) if run_dir else None
    if path is not None and path.is_dir():
        path = path / "metrics.jsonl"
    if not path or not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):  # anything else is not a metrics row
            rows.append(row)
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


def eval_results_for(results: dict, model_name: str, text: str):
    """huggingface_hub EvalResults (one per s+w cache configuration) for this model's row of stream-eval results,
    so the hub renders them as model-index results. The row is the one named after the export folder, or the
    only one; none when the results hold other models only."""
    from huggingface_hub import EvalResult

    row = results.get(model_name) or (next(iter(results.values())) if len(results) == 1 else None)
    if not row:
        return None
    return [EvalResult(task_type="text-generation", dataset_type="text", dataset_name=text, metric_type="perplexity",
                       metric_value=round(float(v["ppl"]), 4), metric_name=f"perplexity, cache {config}",
                       metric_config=config) for config, v in row.items()]


def write_model_card(out_dir: Path, meta: dict, train_config: dict, has_loss_plot: bool, eval_results: dict | None,
                     eval_text: str = "streaming text", name: str | None = None, zeroshot: dict | None = None) -> None:
    """README.md: hub metadata (huggingface_hub's ModelCardData, with model-index results from `eval_results` and
    `zeroshot`), usage, training facts, loss curve, streaming and zero-shot tables, full config. `eval_text`: what
    the streaming results were measured on; `name`: the model's name (default: the folder's)."""
    from huggingface_hub import ModelCardData

    from sinktrain.export.model_index import card_section, zeroshot_eval_results

    name = name or out_dir.name
    card_results = (eval_results_for(eval_results, name, eval_text) if eval_results else None) or []
    if zeroshot:
        card_results += zeroshot_eval_results(zeroshot)

    model = train_config.get("model", {})
    sink = model.get("sink", {})
    kind = sink.get("kind", "none")
    header = ModelCardData(
        model_name=name if card_results else None,  # model-index needs it; without results it is noise
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="text-generation",
        language=["en"],
        tags=["sinktrain", "attention-sink", "streaming-llm", "gpt-neox", "pythia", f"sink-{kind}"],
        eval_results=card_results or None,
    )
    lines = ["---", header.to_yaml(), "---", ""]
    lines += [f"# {name}", "", f"A {model.get('preset', '?')} GPT-NeoX model trained with "
              f"[sinktrain](https://github.com/) — {VARIANT_TEXT.get(kind, kind)}.", ""]
    lines += ["## Use", "", "```python"]
    remote = kind in ("softmax1", "logit")
    if remote:
        lines += ["# the architecture's code ships in this folder (sink_gptneox.py); with sinktrain installed,",
                  "# `import sinktrain.model` registers it instead and trust_remote_code is not needed"]
    lines += [
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'tok = AutoTokenizer.from_pretrained("{name}")',
        f'model = AutoModelForCausalLM.from_pretrained("{name}"' + (", trust_remote_code=True)" if remote else ")"),
        "```",
        "",
    ]
    if kind == "token":
        lines += [f"The tokenizer prepends the sink token(s) {meta['sink_token_ids']} to every text, as in training. "
                  "For streaming inference keep them in the KV cache (a StreamingLLM cache with s = "
                  f"{len(meta['sink_token_ids'])}).", ""]
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
    lines += ["## Training", "", markdown_table(["", ""], [[k, v] for k, v in facts.items()]), ""]
    if has_loss_plot:
        lines += ["![training loss](loss_curve.png)", ""]
    if eval_results:
        lines += ["## Streaming evaluation (perplexity, cache s+w)", "", perplexity_table(eval_results), ""]
    if zeroshot:
        lines += card_section(zeroshot)
    lines += ["## Full training configuration", "", "```yaml", yaml.safe_dump(train_config, sort_keys=False).strip(),
              "```", ""]
    write_text_atomic(out_dir / "README.md", "\n".join(lines))
