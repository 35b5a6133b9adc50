"""`evaluate(StreamEvalConfig)`: stream a long text through each model under each cache configuration.

Scored tokens: the text's tokens 1..N-1 (N-1 of them), in every configuration, mode and model. Text token 0
has no context for a vanilla model; a `token`-sink model sees its sink token(s) prepended to the stream
(they count among the s cached sinks) and its prediction of text token 0 is dropped too, so sink and
vanilla models are scored on exactly the same tokens. `bos` prepends the tokenizer's BOS the same way.

Each model's text is tokenized with that model's own tokenizer (the one stored beside its weights), without
special tokens. Every model is checked (source, architecture, RoPE kind, sliding windows, tokenizer and
vocabulary, sink metadata, text length) before the first one streams; each model then passes a self-check
of the block-parallel path against its own forward before its streams run.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sinktrain.model.source import ModelSource, check_weight_files, load_config, load_model_tokenizer, \
    load_pretrained, raw_config, refuse_custom_code, resolve_model_source
from sinktrain.stream import report
from sinktrain.stream.config import StreamEvalConfig, cache_size, validate
from sinktrain.stream.families import adapter_class, adapter_for, check_config, dense_bound, language_config
from sinktrain.stream.model_info import sink_token_ids
from sinktrain.stream.parallel import parallel_logits, parallel_nll
from sinktrain.stream.recompute import recompute_nll
from sinktrain.stream.reference import reference_nll
from sinktrain.stream.stats import attention_maps, attention_sink_stats, first_tokens_dependence, \
    no_dependence_reason
from sinktrain.util.atomic import write_json_atomic
from sinktrain.util.outputs import output_lock, staged_out_dir
from sinktrain.util.progress import progress

SELF_CHECK_TOKENS = 64
# Self-check tolerance on max |Δ log-softmax| between the parallel path and the model's own forward. The two
# run the same ops in the same order except attention (one SDPA call over widened heads), so fp32 differs by
# rounding only (~1e-6); a misplaced norm or projection differs by whole nats.
SELF_CHECK_TOL = {"float32": 1e-3, "bfloat16": 0.25, "float16": 0.1}


def warn(msg: str) -> None:
    print(f"[stream-eval] warning: {msg}", file=sys.stderr, flush=True)


@dataclass
class ModelPlan:
    """One model, checked and ready to stream: where it comes from and what it will read."""

    name: str
    source: ModelSource
    config: object  # as read from the source (the wrapper's, for a multimodal model): loading reuses it
    prefix: list[int]  # prepended to the text: sink tokens, then BOS if asked for
    text: object  # LongText, in this model's tokenization
    tokenizer_hash: str  # of the tokenizer that read the text (sinktrain.data.tokenizer.tokenizer_hash)


def check_source(spec: str, cache: int | None):
    """Resolve a model spec and check its config (architecture, required fields, RoPE, sliding windows).
    -> (source, its config as read; `language_config` of it is the config of the model that streams)"""
    source = resolve_model_source(spec)
    refuse_custom_code(source)  # before the config loads: transformers would ask to run a folder's own code
    config = load_config(source)
    cls = adapter_class(config)
    raw = raw_config(source)
    if raw is not None:  # transformers fills missing fields with defaults (64 heads...): check what was written
        missing = [k for k in cls.required_config_keys if k not in raw and k not in (raw.get("text_config") or {})]
        if missing:
            raise ValueError(f"{spec}: config.json lacks {', '.join(missing)}; the {cls.family} adapter needs them "
                             f"(re-export the model, or restore the fields)")
    check_config(config, cls, cache)
    check_weight_files(source)  # after the architecture, whose refusal says more than missing weights do
    return source, config


def model_tokenizer(spec: str, source: ModelSource, config, override: str | None):
    """The model's own tokenizer (or the override where it has none), checked against the model's vocabulary."""
    from sinktrain.data.tokenizer import load_tokenizer, tokenizer_hash

    own = load_model_tokenizer(source)
    tok = own
    if override is not None:
        tok = load_tokenizer(override)
        if own is not None and tokenizer_hash(own) != tokenizer_hash(tok):
            raise ValueError(f"--tokenizer {override!r} disagrees with the tokenizer stored with {spec}; drop "
                             f"--tokenizer to use the model's own")
    if tok is None:
        raise ValueError(f"{spec} has no tokenizer files; pass --tokenizer with the tokenizer it was trained with")
    check_vocabulary(spec, tok, config)
    return tok


def check_vocabulary(spec: str, tok, config, fix: str = "use the tokenizer the model was trained with") -> None:
    """A tokenizer with more ids than the model has embedding rows (`config`: the language model's) would end in
    an IndexError on the first such id, after the model loaded (and in zeroshot, after earlier models scored)."""
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tok) > vocab:
        raise ValueError(f"the tokenizer of {spec} has {len(tok)} ids but the model only {vocab} embedding rows; "
                         f"{fix}")


def stream_prefix(spec: str, config, tok, bos: bool) -> list[int]:
    from sinktrain.data.tokenizer import has_token

    sinks = sink_token_ids(config)
    if not sinks and has_token(tok, "<|sink_0|>"):
        raise ValueError(f"{spec}: the tokenizer defines sink tokens but config.json has no `sinktrain` block with "
                         f"their ids, so the model would stream without its sink; re-export it with sinktrain")
    if bos:
        if tok.bos_token_id is None:
            raise ValueError(f"--bos: the tokenizer of {spec} has no BOS token; drop --bos")
        sinks = sinks + [int(tok.bos_token_id)]
    return sinks


def model_names(specs: list[str]) -> list[str]:
    """Base names (folder, file or hub repo name), made unique with a numeric suffix."""
    names: list[str] = []
    for spec in specs:
        path = Path(spec).expanduser()
        base = (path.resolve().name if path.exists() else path.name) or "model"
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def plan(cfg: StreamEvalConfig, longest: int | None) -> list[ModelPlan]:
    """Check every model and read the text for each tokenizer, before anything streams. `longest`: the cache
    size (`cache_size`), None for a dense-only run."""
    from sinktrain.data.longtext import load_long_text
    from sinktrain.data.tokenizer import tokenizer_hash

    texts: dict[str, object] = {}
    plans = []
    for spec, name in zip(cfg.models, model_names(cfg.models)):
        source, read = check_source(spec, longest)
        config = language_config(read)
        tok = model_tokenizer(spec, source, config, cfg.tokenizer)
        prefix = stream_prefix(spec, config, tok, cfg.bos)
        key = tokenizer_hash(tok)
        if key not in texts:
            texts[key] = load_long_text(cfg.text, tok, cfg.tokens, cfg.pg19_dataset, cfg.pg19_split)
        text = texts[key]
        if longest is None and len(text) < 2:  # dense only: one token leaves nothing to score
            raise ValueError(f"the text has {len(text)} tokens (tokenizer of {spec}); the dense baseline scores "
                             f"tokens 1..N-1, so it needs at least 2; use a longer text")
        if longest is not None and len(text) <= longest:
            raise ValueError(f"the text has {len(text)} tokens (tokenizer of {spec}), not more than the cache size "
                             f"{longest}; use a longer text (or a larger --tokens) or a smaller cache")
        trained = getattr(config, "max_position_embeddings", None)
        # a full cache's query sits at position C (its keys at 0..C-1)
        if trained and longest is not None and longest + 1 > trained:
            warn(f"{spec}: the cache ({longest} tokens + the query) exceeds the {trained} positions the model was "
                 f"trained on; its perplexity there measures extrapolation")
        if "dense" in cfg.baselines:
            check_dense(spec, config, len(prefix), len(text), trained)
        plans.append(ModelPlan(name, source, read, prefix, text, key))
    return plans


def check_dense(spec: str, config, prefix_len: int, text_len: int, trained: int | None) -> None:
    """The dense baseline's last query sees every token of the stream but the one it predicts: a sliding-window
    layer narrower than that would drop keys, and positions past the trained context extrapolate."""
    keys = prefix_len + text_len - 1  # the last query's keys, its own included; it sits at position keys - 1
    bound = dense_bound(adapter_class(config), config, keys)
    if bound is not None:
        fits, switch = bound
        most = fits + 1 - prefix_len
        fix = f"drop the dense baseline or read at most {most} text tokens (--tokens {most})"
        if switch is None:
            raise ValueError(f"{spec}: the dense baseline attends over {keys} tokens, but the model has "
                             f"sliding-window attention layers of window {fits}; {fix}")
        raise ValueError(f"{spec}: the dense baseline reaches position {keys - 1}, but the model's {switch} changes "
                         f"its attention from position {fits} on, which the streaming evaluator does not "
                         f"reproduce; {fix}")
    if trained and keys > trained:
        warn(f"{spec}: the dense baseline reaches position {keys - 1}, past the {trained} positions the model was "
             f"trained on; its perplexity there measures extrapolation")


def self_check(model, adapter, stream: np.ndarray, cache: int | None, dtype: str) -> float:
    """The parallel path's logits on the first min(C, 64) tokens (64 with no cache) must equal the model's own
    forward."""
    n = min(cache or SELF_CHECK_TOKENS, SELF_CHECK_TOKENS, len(stream) - 1)
    ids = stream[: n + 1]
    _, _, ours = next(parallel_logits(model, ids, 0, None, block_size=n, adapter=adapter))
    with torch.no_grad():
        theirs = model(input_ids=torch.as_tensor(ids[None, :n], device=ours.device), use_cache=False).logits[0]
    diff = float((torch.log_softmax(ours.float(), -1) - torch.log_softmax(theirs.float(), -1)).abs().max())
    if not diff <= SELF_CHECK_TOL[dtype]:
        raise RuntimeError(
            f"self-check failed: the {adapter.family} family adapter's logits differ from the model's own forward "
            f"by {diff:.3g} (tolerance {SELF_CHECK_TOL[dtype]}) on the first {n} tokens; this transformers release "
            f"({__import__('transformers').__version__}) lays the {adapter.family} modules out differently than "
            f"{type(adapter).__module__.replace('.', '/')}.py expects"
        )
    return diff


def load_model(spec: str, device: str = "cpu", dtype: str = "float32"):
    """A model the evaluator supports, in eval mode (folder, .gguf, hub id or zoo name)."""
    source = resolve_model_source(spec)
    refuse_custom_code(source)  # before the config loads: transformers would ask to run a folder's own code
    config = load_config(source)
    adapter_class(config)  # an unsupported architecture fails here, before the weights load
    check_weight_files(source)
    return load_pretrained(source, device, dtype, config=config)


def score(nll_stream: np.ndarray, num_prefix_tokens: int) -> np.ndarray:
    """Keep the NLLs of text tokens 1..N-1 (drop predictions of the prepended tokens' successors and text token 0)."""
    return nll_stream[num_prefix_tokens:]


def versions() -> dict:
    import transformers

    import sinktrain

    return {"sinktrain": sinktrain.__version__, "torch": torch.__version__, "transformers": transformers.__version__}


def summarize(nll: np.ndarray) -> dict:
    mean = float(np.mean(nll))
    return {"ppl": math.exp(mean), "nll_mean": mean, "tokens": int(nll.shape[0])}


def run_configuration(model, adapter, stream: np.ndarray, name: str, cfg: StreamEvalConfig, label: str,
                      recompute_cache: int | None):
    """NLL over the whole stream for one configuration name ("s+w", "dense" or "recompute"), plus tokens/s."""
    with progress(len(stream) - 1, desc=f"[stream-eval] {label}", unit="tok", mininterval=10.0) as bar:
        start = time.perf_counter()
        if name == "recompute":
            nll = recompute_nll(model, stream, recompute_cache, batch_size=cfg.recompute_batch, progress=bar.update)
        else:
            s, w = (0, None) if name == "dense" else (int(p) for p in name.split("+"))
            if cfg.mode == "reference":
                nll = reference_nll(model, stream, s, w, progress=bar.update, adapter=adapter)
            else:
                nll = parallel_nll(model, stream, s, w, block_size=cfg.block_size, progress=bar.update,
                                   adapter=adapter)
    return nll, (len(stream) - 1) / max(time.perf_counter() - start, 1e-9)


def evaluate(cfg: StreamEvalConfig) -> dict:
    """Run the evaluation, write every artifact under `cfg.out`; returns {model: {config: {ppl, nll_mean, tokens}}}."""
    with output_lock(cfg.out):  # from the check of --out to its last file: no other run writes it meanwhile
        return _evaluate(cfg)


def _evaluate(cfg: StreamEvalConfig) -> dict:
    from sinktrain.data.longtext import text_source_sha256

    pairs = validate(cfg)
    longest = cache_size(cfg, pairs)  # None: dense only
    text_sha256 = text_source_sha256(cfg.text)  # as plan() is about to read it, not as it is after a long run
    plans = plan(cfg, longest)
    # Written beside cfg.out and moved into its place once whole: an earlier output (replaced only with
    # --overwrite) stays as it was if this run fails or is killed.
    with staged_out_dir(cfg.out, "stream-eval") as out:
        return _evaluate_into(out, cfg, pairs, plans, longest, text_sha256)


def _evaluate_into(out: Path, cfg: StreamEvalConfig, pairs, plans, longest: int | None, text_sha256) -> dict:
    names = [f"{s}+{w}" for s, w in pairs] + list(dict.fromkeys(cfg.baselines))
    results: dict = {}
    nlls: dict = {}
    stats: dict = {}
    dependence: dict = {}  # model -> (positions hidden, nats or None)
    maps: dict = {}
    timing: dict = {}
    texts: dict = {}
    probed: dict = {}  # tokens of the stream each model's attention statistics and maps used
    for p in plans:
        model = load_pretrained(p.source, cfg.device, cfg.dtype, config=p.config)
        adapter = adapter_for(model)
        stream = np.concatenate([np.asarray(p.prefix, dtype=np.int64), p.text.tokens])
        diff = self_check(model, adapter, stream, longest, cfg.dtype)
        mname = p.name
        results[mname], nlls[mname] = {}, {}
        timing[mname] = {"self_check_max_abs_dlogp": diff}
        texts[mname] = {"tokens": len(p.text), "prefix": p.prefix, "family": adapter.family,
                        "source": p.source.record(), "tokenizer_hash": p.tokenizer_hash}
        for name in names:
            nll_stream, rate = run_configuration(model, adapter, stream, name, cfg, f"{mname} {name}", longest)
            nll = score(nll_stream, len(p.prefix))
            results[mname][name] = summarize(nll)
            nlls[mname][name] = nll
            timing[mname][name] = {"tokens_per_s": rate}
            report.write_nll(out, mname, name, nll)
            print(f"[stream-eval] {mname} {name}: ppl {results[mname][name]['ppl']:.3f} "
                  f"({rate:,.0f} tokens/s)", file=sys.stderr, flush=True)
        # (within the trained context and any position bound: MPT's forward fails past its ALiBi table)
        limits = (getattr(adapter.config, "max_position_embeddings", None), adapter.position_bound)
        probe = stream[: min(len(stream), cfg.attention_tokens, *(n for n in limits if n))]
        probed[mname] = len(probe)
        if len(probe) > 1:  # the maps need two tokens, whatever first_k is
            maps[mname] = attention_maps(model, probe)
        if len(probe) > cfg.first_k:
            stats[mname] = attention_sink_stats(model, probe, cfg.first_k).numpy()
            # the sink token(s) (and BOS with --bos) lead the stream; a plain model's first token is its sink
            hidden = max(1, len(p.prefix))
            why = no_dependence_reason(model, adapter, len(probe), hidden)
            if why is not None:
                warn(f"{mname}: no sink dependence in attention_stats.json: {why}")
            dependence[mname] = (hidden, first_tokens_dependence(model, adapter, probe, hidden))
        else:  # validate() keeps first_k < attention_tokens; a short stream or position bound can cut the probe
            warn(f"{mname}: no attention statistics: the probe has {len(probe)} tokens (the stream, the trained "
                 f"context or the position bound cut it), not more than --first_k {cfg.first_k}")
        del model
    write_json_atomic(out / "attention_stats.json", {
        m: {"first_k": cfg.first_k, "tokens": probed[m], "per_layer": np.nanmean(a, 1).tolist(),
            "per_layer_head": [row[~np.isnan(row)].tolist() for row in a],
            "hidden": dependence[m][0], "sink_dependence": dependence[m][1]} for m, a in stats.items()})
    recompute_cache = longest if "recompute" in names else None
    report.write_table(results, out, recompute_cache=recompute_cache)
    if cfg.plots:
        report.plot_log_ppl(nlls, out / "log_ppl.png", cache=longest)
        if stats:
            report.plot_sink_attention(stats, out / "sink_attention.png", cfg.first_k)
        for m, layer_maps in maps.items():
            report.plot_attention_maps(layer_maps, out / f"attention_maps_{m}.png", m)
    if cfg.tensorboard:
        report.write_tensorboard(out, nlls, results)
    first = plans[0].text
    write_json_atomic(out / "run.json", {
        "config": asdict(cfg), "text": {"tokens": len(first), "documents": first.names, "doc_starts": first.doc_starts},
        "text_sha256": text_sha256, "versions": versions(),
        # config.cache is only what --cache said: with --configs the cache is the longest s+w, and the recompute
        # baseline re-encodes windows of that size
        "cache_size": longest, "recompute_cache": recompute_cache,
        "models": texts, "scored_tokens": "text tokens 1..N-1", "timing": timing})
    write_json_atomic(out / "results.json", results)  # last: its presence means the run finished
    return results
