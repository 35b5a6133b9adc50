"""`sinktrain stream-eval`: streaming perplexity of one or more models under s+w caches."""

from __future__ import annotations


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--sinks takes comma-separated integers such as 0,1,2,4, got {text!r}") from None


def register(sub) -> None:
    p = sub.add_parser("stream-eval", help="streaming (StreamingLLM) perplexity under s sink + w recent tokens")
    p.add_argument("models", nargs="+", help="model folders, .gguf files, hub ids (owner/name) or zoo names (smollm2-135m-instruct)")
    p.add_argument("--text", default="data/books/austen_persuasion.txt",
                   help="pg19 | pg19:first | pg19:<i> | a .txt file | a folder of .txt | a glob")
    p.add_argument("--cache", type=int, default=1024, help="cache size C = s + w after eviction")
    p.add_argument("--sinks", default="0,1,2,4", help="sink counts s to evaluate, comma-separated (w = C - s)")
    p.add_argument("--configs", default=None, help="explicit s+w configurations, comma-separated (overrides --cache/--sinks)")
    p.add_argument("--tokens", type=int, default=None, help="read at most this many text tokens")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--mode", default="parallel", help="parallel (exact, fast) | reference (KV cache, one token per step)")
    p.add_argument("--baselines", default="", help="comma-separated: dense, recompute")
    p.add_argument("--block-size", type=int, default=1024, help="queries per block in parallel mode")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--tokenizer", default=None, help="tokenizer for models stored without one (default: each model's own)")
    p.add_argument("--bos", action="store_true", help="prepend the tokenizer's BOS token to the stream (cached like a sink)")
    p.add_argument("--pg19-dataset", default="emozilla/pg19-test", help="dataset name or local folder for pg19")
    p.add_argument("--first-k", type=int, default=4, help="attention statistics: mass on the first k tokens")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from sinktrain.stream import StreamEvalConfig, evaluate

    cfg = StreamEvalConfig(
        models=args.models, text=args.text, cache=args.cache, sinks=_int_list(args.sinks),
        configs=[c.strip() for c in args.configs.split(",") if c.strip()] if args.configs else None,
        tokens=args.tokens, out=args.out, mode=args.mode,
        baselines=[b.strip() for b in args.baselines.split(",") if b.strip()], block_size=args.block_size,
        device=args.device, dtype=args.dtype, tokenizer=args.tokenizer, pg19_dataset=args.pg19_dataset,
        first_k=args.first_k, plots=not args.no_plots, bos=args.bos,
    )
    results = evaluate(cfg)
    print(open(f"{args.out}/table.md").read(), end="")
    return 0 if results else 1
