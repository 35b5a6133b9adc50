"""How much a model needs its first token(s): `sinktrain.model.probe.sink_dependence` (the NLL increase of a window's
second half when its first positions are hidden from it, as stream-eval computes it: a sliding-window model keeps its
window) on a few windows of a text, printed as one JSON object.

    python benchmarks/sink_dependence.py smollm2-135m-instruct --text data/books/austen_persuasion.txt   # ~10 s
MODEL is anything stream-eval takes (a folder, a .gguf file, a hub id, a zoo name such as smollm2-135m-instruct).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _args import int_at_least, int_list


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a folder, a .gguf file, a hub id or a zoo name")
    ap.add_argument("--text", default="data/books/austen_persuasion.txt", help="a UTF-8 text file")
    ap.add_argument("--starts", type=int_list(0), default=[0, 2000, 5000], help="token offsets of the windows")
    ap.add_argument("--length", type=int_at_least(8), default=512, help="tokens per window")
    ap.add_argument("--hidden", type=int_list(1), default=[1, 4], help="how many first positions to hide")
    args = ap.parse_args()
    if not Path(args.text).is_file():
        ap.error(f"--text {args.text}: no such file")
    import torch

    from sinktrain.model.source import load_model_tokenizer, load_pretrained, resolve_model_source
    from sinktrain.stream.evaluation import stream_prefix
    from sinktrain.stream.families import adapter_for
    from sinktrain.stream.stats import first_tokens_dependence, no_dependence_reason

    source = resolve_model_source(args.model)
    model, tok = load_pretrained(source).eval(), load_model_tokenizer(source)
    adapter = adapter_for(model)
    # as stream-eval: only where hiding by mask was checked against evicting from the model's own cache
    why = no_dependence_reason(model, adapter, args.length, max(args.hidden), length_flag="--length")
    if why is not None:
        ap.error(f"{args.model}: no sink dependence: {why}")
    sinks = stream_prefix(args.model, model.config, tok, bos=False)  # a sink-token model's sink(s) lead, as streamed
    ids = tok(Path(args.text).read_text(), add_special_tokens=False)["input_ids"]
    if max(args.starts) + args.length > len(ids):
        ap.error(f"the text has {len(ids)} tokens; the last window ends at {max(args.starts) + args.length}")
    windows = {str(s): {f"hidden_{h}": round(first_tokens_dependence(
        model, adapter, torch.tensor(sinks + ids[s: s + args.length - len(sinks)]), h), 4) for h in args.hidden}
        for s in args.starts}
    print(json.dumps({"model": args.model, "text": args.text, "length": args.length, "sink_tokens": len(sinks),
                      "from_query": args.length // 2, "nats": windows}))


if __name__ == "__main__":
    main()
