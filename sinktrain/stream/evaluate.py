"""`evaluate(StreamEvalConfig)`: stream a long text through each model under each cache configuration.

Scored tokens: the text's tokens 1..N-1 (N-1 of them), in every configuration, mode and model. Text token 0
has no context for a vanilla model; a `token`-sink model sees its sink token(s) prepended to the stream
(they count among the s cached sinks) and its prediction of text token 0 is dropped too, so sink and
vanilla models are scored on exactly the same tokens.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sinktrain.config_io import write_json_atomic
from sinktrain.stream import report
from sinktrain.stream.config import StreamEvalConfig, validate
from sinktrain.stream.neox import check_supported, sink_token_ids
from sinktrain.stream.parallel import parallel_nll
from sinktrain.stream.recompute import recompute_nll
from sinktrain.stream.reference import reference_nll
from sinktrain.stream.stats import attention_maps, attention_sink_stats


class Progress:
    """Periodic progress lines on stderr with tokens/s (every `every_s` seconds and at the end)."""

    def __init__(self, label: str, total: int, every_s: float = 10.0, stream=sys.stderr):
        self.label, self.total, self.every_s, self.stream = label, total, every_s, stream
        self.done = 0
        self.start = self.last = time.perf_counter()

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self._line(now)

    def finish(self) -> float:
        now = time.perf_counter()
        self._line(now)
        return self.done / max(now - self.start, 1e-9)

    def _line(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-9)
        print(f"[stream-eval] {self.label}: {self.done}/{self.total} tokens, {rate:,.0f} tokens/s", file=self.stream, flush=True)


def load_model(folder: str, device: str = "cpu", dtype: str = "float32"):
    """An HF GPT-NeoX folder as an eval-mode model; one-sentence errors for a missing folder or another architecture."""
    import sinktrain.model  # noqa: F401  registers the sinktrain_gpt_neox model type with the Auto classes
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(folder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model folder {folder!r} has no config.json; pass a Hugging Face model folder")
    check_supported(AutoConfig.from_pretrained(str(path)))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))
    return model.to(device).eval()


def model_names(folders: list[str]) -> list[str]:
    """Folder base names, made unique with a numeric suffix."""
    names: list[str] = []
    for f in folders:
        base = Path(f).resolve().name or "model"
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def score(nll_stream: np.ndarray, num_sink_tokens: int) -> np.ndarray:
    """Keep the NLLs of text tokens 1..N-1 (drop predictions of the prepended sinks' successors and text token 0)."""
    return nll_stream[num_sink_tokens:]


def summarize(nll: np.ndarray) -> dict:
    mean = float(np.mean(nll))
    return {"ppl": math.exp(mean), "nll_mean": mean, "tokens": int(nll.shape[0])}


def run_configuration(model, stream: np.ndarray, name: str, cfg: StreamEvalConfig, label: str, recompute_cache: int):
    """NLL over the whole stream for one configuration name ("s+w", "dense" or "recompute"), plus tokens/s."""
    progress = Progress(label, len(stream) - 1)
    if name == "recompute":
        nll = recompute_nll(model, stream, recompute_cache, batch_size=cfg.recompute_batch, progress=progress)
    else:
        s, w = (0, None) if name == "dense" else (int(p) for p in name.split("+"))
        if cfg.mode == "reference":
            nll = reference_nll(model, stream, s, w, progress=progress)
        else:
            nll = parallel_nll(model, stream, s, w, block_size=cfg.block_size, progress=progress)
    return nll, progress.finish()


def evaluate(cfg: StreamEvalConfig) -> dict:
    """Run the evaluation, write every artifact under `cfg.out`, return results {model: {config: {ppl, nll_mean, tokens}}}."""
    pairs = validate(cfg)
    for folder in cfg.models:  # fail on a bad folder before any long work
        if not (Path(folder) / "config.json").is_file():
            raise FileNotFoundError(f"model folder {folder!r} has no config.json; pass a Hugging Face model folder")
    from sinktrain.data.longtext import load_long_text
    from sinktrain.data.tokenizer import load_tokenizer

    names = [f"{s}+{w}" for s, w in pairs] + list(cfg.baselines)
    # The largest cache evaluated; the recompute baseline re-encodes windows of this size.
    longest = max((s + w for s, w in pairs), default=cfg.cache)
    text = load_long_text(cfg.text, load_tokenizer(cfg.tokenizer), cfg.tokens, cfg.pg19_dataset, cfg.pg19_split)
    if len(text) <= longest:
        raise ValueError(
            f"the text has {len(text)} tokens, not more than the cache size {longest}; use a longer text "
            f"(or a larger --tokens) or a smaller cache"
        )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    nlls: dict = {}
    stats: dict = {}
    maps: dict = {}
    timing: dict = {}
    for folder, mname in zip(cfg.models, model_names(cfg.models)):
        model = load_model(folder, cfg.device, cfg.dtype)
        sinks = sink_token_ids(model.config)
        stream = np.concatenate([np.asarray(sinks, dtype=np.int64), text.tokens])
        results[mname], nlls[mname], timing[mname] = {}, {}, {}
        for name in names:
            nll_stream, rate = run_configuration(model, stream, name, cfg, f"{mname} {name}", longest)
            nll = score(nll_stream, len(sinks))
            results[mname][name] = summarize(nll)
            nlls[mname][name] = nll
            timing[mname][name] = {"tokens_per_s": rate}
            report.write_nll(out, mname, name, nll)
            print(f"[stream-eval] {mname} {name}: ppl {results[mname][name]['ppl']:.3f} "
                  f"({rate:,.0f} tokens/s)", file=sys.stderr, flush=True)
        probe = stream[: min(len(stream), cfg.attention_tokens, model.config.max_position_embeddings)]
        if len(probe) > cfg.first_k:
            stats[mname] = attention_sink_stats(model, probe, cfg.first_k).numpy()
            maps[mname] = attention_maps(model, probe)
        del model
    write_json_atomic(out / "attention_stats.json", {
        m: {"first_k": cfg.first_k, "tokens": cfg.attention_tokens, "per_layer": a.mean(1).tolist(),
            "per_layer_head": a.tolist()} for m, a in stats.items()})
    report.write_table(results, out)
    if cfg.plots:
        report.plot_log_ppl(nlls, out / "log_ppl.png", cache=longest)
        if stats:
            report.plot_sink_attention(stats, out / "sink_attention.png", cfg.first_k)
        for m, layer_maps in maps.items():
            report.plot_attention_maps(layer_maps, out / f"attention_maps_{m}.png", m)
    if cfg.tensorboard:
        report.write_tensorboard(out, nlls, results)
    from dataclasses import asdict

    write_json_atomic(out / "run.json", {"config": asdict(cfg), "text": {"tokens": len(text), "documents": text.names,
                                                                        "doc_starts": text.doc_starts},
                                         "scored_tokens": "text tokens 1..N-1", "timing": timing})
    write_json_atomic(out / "results.json", results)  # last: its presence means the run finished
    return results
