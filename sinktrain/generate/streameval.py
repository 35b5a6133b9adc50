"""`sinktrain streameval`: StreamingLLM's StreamEval (paper §4.3, Fig. 8), whose code was never released,
rebuilt after its description and LongEval's line retrieval.

A stream of lines `line <word>: REGISTER_CONTENT is <number>` (words and numbers drawn from a seed) is fed
to the model; after every 10 lines comes a query for the REGISTER_CONTENT of the line 20 lines back, which
the model answers greedily (ANSWER_TOKENS tokens); its answer stays in the stream, as in a chat, followed by a
newline. Accuracy (exact answers, and the share of digits right at their place) is reported against the input length (tokens fed so far) for:
- `sink`: s sinks + w recent entries (one SinkCache for the whole stream);
- `window`: 0 sinks + C recent entries (window attention);
- `dense`: everything kept (until --max-tokens);
- `recompute`: for each query the last C tokens are re-encoded from scratch (sliding window with
  re-computation), then answered with a fresh cache.
Lines are fed in chunks of --prefill-chunk tokens (see `Decoder`); answers one token at a time.
"""

from __future__ import annotations

import random
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sinktrain.config_io import write_json_atomic
from sinktrain.generate.config import StreamEvalQAConfig
from sinktrain.generate.decode import Decoder, Sampler
from sinktrain.generate.session import load_session

HEADER = ("Below is a record of lines I want you to remember. Each line begins with 'line <line index>' and ends "
          "with a REGISTER_CONTENT, a number in angle brackets. From time to time I will ask you for the "
          "REGISTER_CONTENT of a line.\n")
SYLLABLES = ["ba", "ko", "ri", "mu", "te", "sal", "no", "vi", "dren", "pa", "lo", "qui", "fen", "ta", "zo", "mar",
             "ne", "gil", "ro", "su", "ka", "ve", "din", "tor"]
ANSWER_TOKENS = 10


@dataclass
class Item:
    kind: str  # "line" | "query"
    text: str  # what is fed (a query's text ends where the model starts answering)
    answer: str = ""  # a query's expected number
    line: int = 0  # the line number this item is (line) or asks about (query)


def make_stream(lines: int, seed: int, every: int = 10, back: int = 20) -> list[Item]:
    """The StreamEval text: `lines` lines, and after every `every`-th line (from line `back` on) a query for
    the line `back` lines before it."""
    rng = random.Random(seed)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < lines:
        w = "".join(rng.choice(SYLLABLES) for _ in range(2)) + "-" + "".join(rng.choice(SYLLABLES) for _ in range(2))
        if w not in seen:
            seen.add(w)
            words.append(w)
    numbers = [str(rng.randrange(10_000, 100_000)) for _ in range(lines)]
    items = []
    for i in range(lines):
        items.append(Item("line", f"line {words[i]}: REGISTER_CONTENT is <{numbers[i]}>\n", line=i))
        k = i + 1  # lines fed so far
        if k % every == 0 and k > back:
            j = k - 1 - back
            items.append(Item("query", f"Question: what is the REGISTER_CONTENT of line {words[j]}? Answer: the "
                                       f"REGISTER_CONTENT of line {words[j]} is <", numbers[j], j))
    return items


def parse_answer(text: str) -> str | None:
    m = re.match(r"\s*(\d+)", text)
    return m.group(1) if m else None


def run_cached(session, items: list[Item], sinks: int, window: int | None, max_tokens: int) -> list[dict]:
    """One cache for the whole stream (sink, window or dense)."""
    from sinktrain.stream.sink_cache import SinkCache

    tok = session.tokenizer
    decoder = Decoder(session.model, SinkCache(session.model, sinks, window), session.opts.prefill_chunk)
    decoder.forward(session.sink_ids + tok(HEADER, add_special_tokens=False)["input_ids"])
    rows, pending = [], []
    for item in items:
        pending += tok(item.text, add_special_tokens=False)["input_ids"]
        if item.kind == "line":
            continue
        if decoder.tokens_seen + len(pending) > max_tokens:
            break
        produced = list(decoder.stream(pending, ANSWER_TOKENS, Sampler()))
        said = tok.decode(produced, skip_special_tokens=True)
        rows.append(score(item, said, decoder.tokens_seen, int(decoder.cache.get_seq_length())))
        # The answer stays in the stream; its last sampled token was not fed yet.
        pending = produced[-1:] + tok("\n", add_special_tokens=False)["input_ids"]
    return rows


@torch.no_grad()
def run_recompute(session, items: list[Item], cache: int, max_tokens: int) -> list[dict]:
    """Each query re-encodes the last `cache` tokens of the stream from scratch."""
    from sinktrain.stream.sink_cache import SinkCache

    tok = session.tokenizer
    stream = session.sink_ids + tok(HEADER, add_special_tokens=False)["input_ids"]
    rows = []
    for item in items:
        stream += tok(item.text, add_special_tokens=False)["input_ids"]
        if item.kind == "line":
            continue
        if len(stream) > max_tokens:
            break
        # A dense cache over the last C tokens: exactly a from-scratch forward of them, then greedy decoding.
        decoder = Decoder(session.model, SinkCache(session.model, 0, None))
        produced = list(decoder.stream(stream[-cache:], ANSWER_TOKENS, Sampler()))
        rows.append(score(item, tok.decode(produced, skip_special_tokens=True), len(stream), min(cache, len(stream))))
        stream += produced + tok("\n", add_special_tokens=False)["input_ids"]
    return rows


def digit_accuracy(got: str | None, expected: str) -> float:
    """Share of the expected number's digits given at their place (partial credit: a small model often gets
    the leading digits of a number it retrieved)."""
    if got is None:
        return 0.0
    return sum(a == b for a, b in zip(got, expected)) / len(expected)


def score(item: Item, said: str, tokens: int, cache_entries: int) -> dict:
    got = parse_answer(said)
    return {"line": item.line, "expected": item.answer, "said": said, "answer": got, "correct": got == item.answer,
            "digits": digit_accuracy(got, item.answer), "input_tokens": tokens, "cache_entries": cache_entries}


def accuracy_by_length(rows: list[dict], bin_tokens: int) -> list[dict]:
    bins: dict[int, list[dict]] = {}
    for r in rows:
        bins.setdefault(r["input_tokens"] // bin_tokens, []).append(r)
    return [{"input_tokens_from": b * bin_tokens, "input_tokens_to": (b + 1) * bin_tokens, "queries": len(v),
             "accuracy": sum(r["correct"] for r in v) / len(v),
             "digit_accuracy": sum(r["digits"] for r in v) / len(v)} for b, v in sorted(bins.items())]


def plot(results: dict, path: Path, title: str) -> None:
    from sinktrain.plotting import pyplot, save_figure, style_axes

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for key, ax, what in (("accuracy", axes[0], "exact-answer accuracy"), ("digit_accuracy", axes[1], "digit accuracy")):
        for method, res in results.items():
            xs = [(b["input_tokens_from"] + b["input_tokens_to"]) / 2 for b in res["by_length"]]
            ax.plot(xs, [b[key] for b in res["by_length"]], marker="o", label=f"{method} ({res[key]:.0%})")
        style_axes(ax, "input length (tokens)", what, title, ylim=(-0.05, 1.05), legend_size=8)
    save_figure(fig, path)


def streameval(cfg: StreamEvalQAConfig, err=None) -> dict:
    """Run every method; write results.json (and streameval.png) under cfg.out; return the results."""
    err = err or sys.stderr
    cfg.check()
    session = load_session(cfg.model, cfg)
    items = make_stream(cfg.lines, cfg.seed)
    s, c = cfg.sinks, cfg.cache
    runners = {
        "sink": lambda: run_cached(session, items, s, c - s, cfg.max_tokens),
        "window": lambda: run_cached(session, items, 0, c, cfg.max_tokens),
        "dense": lambda: run_cached(session, items, 0, None, cfg.max_tokens),
        "recompute": lambda: run_recompute(session, items, c, cfg.max_tokens),
    }
    results = {}
    for method in cfg.methods_list():
        rows = runners[method]()
        acc = sum(r["correct"] for r in rows) / max(len(rows), 1)
        digits = sum(r["digits"] for r in rows) / max(len(rows), 1)
        results[method] = {"accuracy": acc, "digit_accuracy": digits, "queries": len(rows),
                           "by_length": accuracy_by_length(rows, cfg.bin_tokens), "rows": rows}
        print(f"[streameval] {method}: {acc:.1%} exact, {digits:.1%} of digits, {len(rows)} queries (up to "
              f"{rows[-1]['input_tokens'] if rows else 0} input tokens)", file=err, flush=True)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", {"config": asdict(cfg), "results": results})
    if not cfg.no_plots:
        plot(results, out / "streameval.png", f"StreamEval: {Path(cfg.model).name}, cache {c} ({s} sinks)")
    return results
