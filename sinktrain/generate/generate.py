"""`sinktrain generate`: continue a prompt for as many tokens as asked, at constant memory.

Text goes to stdout as it is produced; progress (tokens/s, cache entries, peak RSS) goes to stderr.
"""

from __future__ import annotations

import sys
import time

from sinktrain.generate.config import GenerateConfig
from sinktrain.generate.decode import Sampler
from sinktrain.generate.session import load_session, peak_rss_mb
from sinktrain.generate.text import IncrementalDetokenizer


def generate(cfg: GenerateConfig, out=None, err=None) -> dict:
    """Run one generation; returns {tokens, tokens_per_s, cache_entries, peak_rss_mb: {tokens: MB}}."""
    from tqdm import tqdm

    out, err = out or sys.stdout, err or sys.stderr
    cfg.check()
    if out is None:  # Python sets sys.stdout to None when it is closed (`>&-`): the text would go nowhere
        raise ValueError("stdout is closed; give generate an open stdout (e.g. > out.txt)")
    prompt = cfg.prompt_text()
    sampler = Sampler(cfg.temperature, cfg.top_p, cfg.seed)  # bad sampling options fail before the model loads
    session = load_session(cfg.model, cfg)
    tok = session.tokenizer
    ids = session.sink_ids + tok(prompt)["input_ids"]
    decoder = session.decoder()
    stops = set() if cfg.ignore_eos else session.stop_ids()
    detok = IncrementalDetokenizer(tok, ids)  # the prompt as context: the first token keeps its leading space
    checkpoints = {}
    mark = max(1, cfg.max_new_tokens // 10)  # peak RSS at 10% of the run and at its end: flat means constant memory
    bar = tqdm(total=cfg.max_new_tokens, file=err, unit="tok", desc="generate", mininterval=2.0,
               disable=None if cfg.progress_every == 0 else True)
    n = 0
    for n, token in enumerate(decoder.stream(ids, cfg.max_new_tokens, sampler, stops), start=1):
        if token not in stops:  # the stop token ends the text; it is not part of it
            out.write(detok.push(token))
            out.flush()
        bar.update(1)
        if n == 1:
            first = time.perf_counter()
        if n in (mark, cfg.max_new_tokens) or (cfg.progress_every and n % cfg.progress_every == 0):
            checkpoints[n] = round(peak_rss_mb(), 1)
            if cfg.progress_every:
                rate = (n - 1) / max(time.perf_counter() - first, 1e-9)
                print(f"[generate] {n} tokens, {rate:.1f} tokens/s, cache {decoder.cache.get_seq_length()} entries, "
                      f"peak RSS {checkpoints[n]:.1f} MB", file=err, flush=True)
    out.write(detok.flush() + "\n")
    out.flush()
    bar.close()
    elapsed = time.perf_counter() - first if n > 1 else 0.0
    checkpoints[n] = round(peak_rss_mb(), 1)
    summary = {"tokens": n, "prompt_tokens": len(ids), "decode_tokens_per_s": (n - 1) / elapsed if elapsed else None,
               "cache_entries": decoder.cache.get_seq_length(), "cache_mb": decoder.cache.nbytes() / 2**20,
               "peak_rss_mb": checkpoints}
    rss = ", ".join(f"{k} tokens: {v:.1f} MB" for k, v in checkpoints.items())
    rate = summary["decode_tokens_per_s"]
    print(f"[generate] {n} tokens ({rate or 0:.1f} tokens/s after the first), cache {summary['cache_entries']} entries "
          f"({summary['cache_mb']:.1f} MB); peak RSS after {rss}", file=err, flush=True)
    return summary
