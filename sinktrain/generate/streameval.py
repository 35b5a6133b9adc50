"""`sinktrain streameval`: StreamingLLM's StreamEval (paper §4.3, Fig. 8), whose code was never released,
rebuilt after its description and LongEval's line retrieval.

A stream of lines `line <word>: REGISTER_CONTENT is <number>` (words and numbers drawn from a seed) is fed
to the model; after every 10 lines comes a query for the REGISTER_CONTENT of the line 20 lines back, which
the true answer follows in the stream (`<number>`), so every cache sees the same text. The model is scored
teacher-forced on that answer: its greedy prediction of each answer token given the ones before. A query is
correct when every prediction is right, which is exactly when greedy generation would have produced the
answer; `digits` is the share of answer tokens predicted right (SmolLM2's tokenizer has one token per
digit). Accuracy is reported against the input length (tokens fed up to the query, its answer excluded) for:
- `sink`: s sinks + w recent entries (one SinkCache for the whole stream);
- `window`: 0 sinks + C recent entries (window attention);
- `dense`: everything kept (until --max-tokens);
- `recompute`: each answer token is predicted from a from-scratch forward over the C tokens before it
  (sliding window with re-computation).
Lines are fed in chunks of --prefill-chunk tokens (see `Decoder`); answers one token at a time.
"""

from __future__ import annotations

import random
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sinktrain.config_io import write_json_atomic
from sinktrain.generate.config import STREAMEVAL_MARKER, StreamEvalQAConfig
from sinktrain.generate.decode import Decoder
from sinktrain.generate.session import load_session
from sinktrain.util.outputs import output_lock, staged_out_dir

HEADER = (
    "Below is a record of lines I want you to remember. Each line begins with 'line <line index>' and ends "
    "with a REGISTER_CONTENT, a number in angle brackets. From time to time I will ask you for the "
    "REGISTER_CONTENT of a line.\n"
)
SYLLABLES = [
    "ba",
    "ko",
    "ri",
    "mu",
    "te",
    "sal",
    "no",
    "vi",
    "dren",
    "pa",
    "lo",
    "qui",
    "fen",
    "ta",
    "zo",
    "mar",
    "ne",
    "gil",
    "ro",
    "su",
    "ka",
    "ve",
    "din",
    "tor",
]


@dataclass
class Item:
    kind: str  # "line" | "query"
    text: str  # what is fed (a query's text ends where the model starts answering)
    answer: str = ""  # a query's expected number
    line: int = 0  # the line number this item is (line) or asks about (query)


def make_stream(lines: int, seed: int, every: int = 10, back: int = 20) -> list[Item]:
    """The StreamEval text: `lines` lines, and after every `every`-th line once more than `back` lines are in
    (after lines 30, 40, ... with the defaults) a query for the line `back` lines before the last one."""
    if lines > len(SYLLABLES) ** 4:  # the draw below would never find that many distinct words
        raise ValueError(f"--lines {lines}: at most {len(SYLLABLES) ** 4} lines have distinct words")
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
            items.append(
                Item(
                    "query",
                    f"Question: what is the REGISTER_CONTENT of line {words[j]}? Answer: the "
                    f"REGISTER_CONTENT of line {words[j]} is <",
                    numbers[j],
                    j,
                )
            )
    return items


def check_first_query(tok, sink_ids: list[int], items: list[Item], max_tokens: int) -> None:
    """Refuse, before the weights load, a --max-tokens that stops every method before its first query (the
    run would write an empty result). The first query's input is the same for every method."""
    fed = len(sink_ids) + len(tok(HEADER, add_special_tokens=False)["input_ids"])
    for item in items:
        fed += len(tok(item.text, add_special_tokens=False)["input_ids"])
        if item.kind == "query":
            break
    if fed > max_tokens:
        raise ValueError(f"--max-tokens {max_tokens} is below the {fed} input tokens of the first query; "
                         f"raise it to {fed} or more")


def continuation(tok, before: str, text: str) -> list[int]:
    """The ids of `text` as the tokenizer splits it right after `before`: the ids of `before + text` past those of
    `before`. Tokenized on its own, text can start differently: SentencePiece tokenizers (Llama-2, Mistral) put a
    space marker '▁' before it, which the stream's lines never show after `<`. Where `before`'s own ids are no
    prefix (a token spanning the boundary), `text` is tokenized on its own."""
    head = tok(before, add_special_tokens=False)["input_ids"]
    both = tok(before + text, add_special_tokens=False)["input_ids"]
    if both[: len(head)] == head and len(both) > len(head):
        return both[len(head) :]
    return tok(text, add_special_tokens=False)["input_ids"]


def check_dense(tok, sink_ids: list[int], items: list[Item], max_tokens: int, config) -> None:
    """Refuse, before the weights load, a dense method that would not be dense: its last answer token is predicted
    from every token before it, and a sliding-window layer narrower than that silently drops the oldest (window
    attention, not dense), as positions past a LongRoPE switch change the attention (stream-eval's check_dense)."""
    from sinktrain.stream.families import adapter_class, dense_bound

    cls = adapter_class(config)
    limit = cls.position_limit(config)
    if limit is None and not any(cls.sliding_windows(config)):
        return
    fed, first, keys, longest = len(sink_ids) + len(tok(HEADER, add_special_tokens=False)["input_ids"]), None, 0, 1
    for item in items:  # the stream as run_cached feeds it
        fed += len(tok(item.text, add_special_tokens=False)["input_ids"])
        if item.kind == "line":
            continue
        if fed > max_tokens:
            break
        answer = answer_tokens(tok, item)
        first, longest = first or fed, max(longest, len(answer))
        keys = fed + len(answer) - 1  # the last answer token's prediction: its keys, its own query's included
        fed += len(answer) + len(close_tokens(tok, item))
    bound = dense_bound(cls, config, keys)
    if bound is None:
        return
    fits, switch = bound
    what = (f"sliding-window attention layers of window {fits}" if switch is None
            else f"{switch}, which changes its attention from position {fits} on")
    most = fits + 1 - longest
    shorter = f" or --max-tokens {most}" if first is not None and most >= first else ""
    raise ValueError(f"the dense method attends over up to {keys} tokens, but the model has {what}; drop dense "
                     f"from --methods{shorter}")


def answer_tokens(tok, item: Item) -> list[int]:
    """A query's answer ids, as they follow the query's `<` (and the lines' `<`)."""
    return continuation(tok, item.text, item.answer)


def close_tokens(tok, item: Item) -> list[int]:
    """The `>` and newline after a query's answer, as they follow its digits."""
    return continuation(tok, item.text + item.answer, ">\n")


def teacher_forced_answer(decoder: Decoder, query: list[int], answer: list[int]) -> list[int]:
    """The model's greedy prediction of each answer token, given the query and the true answer before it.
    All of them right <=> greedy generation would have produced the answer."""
    logits = decoder.forward(query)
    predicted = []
    for token in answer:
        predicted.append(int(logits.argmax()))
        logits = decoder.forward([token])
    return predicted


def run_cached(session, items: list[Item], sinks: int, window: int | None, max_tokens: int) -> list[dict]:
    """One cache for the whole stream (sink, window or dense)."""
    from sinktrain.stream.sink_cache import SinkCache

    tok = session.tokenizer
    decoder = Decoder(session.model, SinkCache(session.model, sinks, window), session.opts.prefill_chunk)
    pending = session.sink_ids + tok(HEADER, add_special_tokens=False)["input_ids"]
    rows = []
    for item in items:
        pending += tok(item.text, add_special_tokens=False)["input_ids"]
        if item.kind == "line":
            continue
        if decoder.tokens_seen + len(pending) > max_tokens:
            break
        fed = decoder.tokens_seen + len(pending)  # the input before the answer, as run_recompute records it
        answer = answer_tokens(tok, item)
        predicted = teacher_forced_answer(decoder, pending, answer)
        rows.append(score(tok, item, answer, predicted, fed, int(decoder.cache.get_seq_length())))
        pending = close_tokens(tok, item)
    return rows


def recomputed_answer(model, stream: list[int], answer: list[int], cache: int) -> list[int]:
    """Each answer token's greedy prediction from a from-scratch forward over the `cache` tokens before it, the
    true answer tokens before it included: every prediction sees exactly C tokens, as re-computation does for
    every token (one fresh cache for the whole answer gave its last token C + len(answer) - 1)."""
    from sinktrain.stream.sink_cache import SinkCache

    predicted = []
    for j in range(len(answer)):
        decoder = Decoder(model, SinkCache(model, 0, None))  # a fresh dense cache: a plain forward of the window
        predicted.append(int(decoder.forward((stream + answer[:j])[-cache:]).argmax()))
    return predicted


@torch.no_grad()
def run_recompute(session, items: list[Item], cache: int, max_tokens: int) -> list[dict]:
    """Each answer token re-encodes the `cache` tokens before it from scratch."""
    tok = session.tokenizer
    stream = session.sink_ids + tok(HEADER, add_special_tokens=False)["input_ids"]
    rows = []
    for item in items:
        stream += tok(item.text, add_special_tokens=False)["input_ids"]
        if item.kind == "line":
            continue
        if len(stream) > max_tokens:
            break
        answer = answer_tokens(tok, item)
        predicted = recomputed_answer(session.model, stream, answer, cache)
        rows.append(score(tok, item, answer, predicted, len(stream), min(cache, len(stream))))
        stream += answer + close_tokens(tok, item)
    return rows


def score(tok, item: Item, answer: list[int], predicted: list[int], tokens: int, cache_entries: int) -> dict:
    right = [a == p for a, p in zip(answer, predicted)]
    return {
        "line": item.line,
        "expected": item.answer,
        "said": tok.decode(predicted),
        "answer_ids": answer,
        "predicted_ids": predicted,
        "correct": all(right),
        "digits": sum(right) / len(right),
        "input_tokens": tokens,
        "cache_entries": cache_entries,
    }


def accuracy_by_length(rows: list[dict], bin_tokens: int) -> list[dict]:
    bins: dict[int, list[dict]] = {}
    for r in rows:
        bins.setdefault(r["input_tokens"] // bin_tokens, []).append(r)
    return [
        {
            "input_tokens_from": b * bin_tokens,
            "input_tokens_to": (b + 1) * bin_tokens,
            "queries": len(v),
            "accuracy": sum(r["correct"] for r in v) / len(v),
            "digit_accuracy": sum(r["digits"] for r in v) / len(v),
        }
        for b, v in sorted(bins.items())
    ]


def plot(results: dict, path: Path, title: str) -> None:
    from sinktrain.plotting import pyplot, save_figure, style_axes

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for key, ax, what in (
        ("accuracy", axes[0], "exact-answer accuracy"),
        ("digit_accuracy", axes[1], "digit accuracy"),
    ):
        for method, res in results.items():
            xs = [(b["input_tokens_from"] + b["input_tokens_to"]) / 2 for b in res["by_length"]]
            ax.plot(xs, [b[key] for b in res["by_length"]], marker="o", label=f"{method} ({res[key]:.0%})")
        style_axes(ax, "input length (tokens)", what, title, ylim=(-0.05, 1.05), legend_size=8)
    save_figure(fig, path)


def streameval(cfg: StreamEvalQAConfig, err=None) -> dict:
    """Run every method; write results.json (and streameval.png) under cfg.out; return the results."""
    # From the check of --out to its last file no other run writes it (a missing --out is refused by check()).
    with output_lock(cfg.out) if cfg.out else nullcontext():
        return _streameval(cfg, err)


def _streameval(cfg: StreamEvalQAConfig, err=None) -> dict:
    err = err or sys.stderr
    cfg.check()
    items = make_stream(cfg.lines, cfg.seed)
    methods = cfg.methods_list()

    def check(tok, sinks, config):
        check_first_query(tok, sinks, items, cfg.max_tokens)
        if "dense" in methods:
            check_dense(tok, sinks, items, cfg.max_tokens, config)

    session = load_session(cfg.model, cfg, check_tokenizer=check)
    s, c = cfg.sinks, cfg.cache
    runners = {
        "sink": lambda: run_cached(session, items, s, c - s, cfg.max_tokens),
        "window": lambda: run_cached(session, items, 0, c, cfg.max_tokens),
        "dense": lambda: run_cached(session, items, 0, None, cfg.max_tokens),
        "recompute": lambda: run_recompute(session, items, c, cfg.max_tokens),
    }
    results = {}
    for method in methods:
        rows = runners[method]()
        if not rows:  # check_first_query should prevent it; an empty result must never replace a good one
            raise ValueError(f"streameval {method} asked no query within --max-tokens {cfg.max_tokens}; raise it")
        acc = sum(r["correct"] for r in rows) / len(rows)
        digits = sum(r["digits"] for r in rows) / len(rows)
        results[method] = {
            "accuracy": acc,
            "digit_accuracy": digits,
            "queries": len(rows),
            "by_length": accuracy_by_length(rows, cfg.bin_tokens),
            "rows": rows,
        }
        print(
            f"[streameval] {method}: {acc:.1%} exact, {digits:.1%} of digits, {len(rows)} queries (up to "
            f"{rows[-1]['input_tokens']} input tokens)",
            file=err,
            flush=True,
        )
    with staged_out_dir(cfg.out, "streameval") as out:  # an earlier output is replaced only once this one is whole
        write_json_atomic(out / "results.json", {"config": asdict(cfg), "results": results})
        write_json_atomic(out / STREAMEVAL_MARKER, {"verb": "streameval", "config": asdict(cfg)})
        if not cfg.no_plots:
            plot(results, out / "streameval.png", f"StreamEval: {Path(cfg.model).name}, cache {c} ({s} sinks)")
    return results
