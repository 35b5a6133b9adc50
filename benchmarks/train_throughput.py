"""Training throughput against stock transformers, in one run on one device, printed as one JSON object.

    python benchmarks/train_throughput.py                                # CPU: tiny preset, a few configs
    python benchmarks/train_throughput.py --preset pythia-160m --seq-len 2048 --micro-batch 16 \
        --precision bf16-mixed --peak-tflops 989.4                       # one GPU (docs/train.md)

Configs (--configs, comma list), each timed after --warmup steps over --steps steps, the device synced:
  hf[+compile]           the baseline: stock GPTNeoXForCausalLM, SDPA, autocast, AdamW, clip; a bare loop
                         (+compile: the whole model, as users compile it; +compile-blocks: each block alone,
                         as speed.compile does, which keeps the attention mask off: sinktrain/model/modeling.py)
  bare:VARIANT[+LEVERS]  sinktrain's model and loss (SinkLM.loss) in the same bare loop, no Lightning
  loop:VARIANT[+LEVERS]  sinktrain's whole training loop: train() with Lightning, timed by its metrics rows
VARIANT: vanilla | token (one learnable sink token) | zerosink (softmax1). LEVERS: compile, fused (fused
linear + cross-entropy, speed.fused_loss=auto), ckpt (activation checkpointing), zero1 (DeepSpeed ZeRO-1 with
fp32 gradient accumulation, the paper recipes' strategy; loop only), fusedadam (DeepSpeed FusedAdam, CUDA; every
other config runs torch AdamW, fused on CUDA). Every config has the same
geometry; tokens/s counts every sequence position (sinks included), MFU = tokens/s x FLOPs/token / peak
(FLOPs/token of the vanilla model, sinktrain/train/flops.py), `vs_baseline` = tokens/s / the first hf config's.
`loop_vs_bare` compares each loop config to the bare config of the same variant and levers, when both ran.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from _args import int_at_least

REPO = Path(__file__).resolve().parents[1]
VARIANT_SINK = {"vanilla": "{kind: none, num_tokens: 0}", "token": "{kind: token, num_tokens: 1}",
                "zerosink": "{kind: softmax1, num_tokens: 0}"}
LEVER_SETS = {"compile": ["speed.compile=true"], "fused": ["speed.fused_loss=auto"],
              "ckpt": ["speed.activation_checkpointing=true"],
              "zero1": ["trainer.strategy=deepspeed", "trainer.zero_stage=1"],  # the paper recipes' strategy
              "fusedadam": ["optim.impl=fused_adam"]}  # DeepSpeed's FusedAdam (CUDA; JIT-built on first use)
CPU_CONFIGS = ("hf,bare:vanilla,loop:vanilla,loop:token,loop:zerosink,bare:vanilla+fused,loop:vanilla+fused,"
               "loop:vanilla+ckpt")
GPU_CONFIGS = ("hf,hf+compile,hf+compile-blocks,bare:vanilla+compile+fused,loop:vanilla+compile+fused,"
               "loop:token+compile+fused,loop:zerosink+compile+fused,loop:vanilla,loop:token,loop:zerosink,loop:vanilla+fused,"
               "loop:vanilla+compile,loop:vanilla+compile+fused+ckpt,loop:vanilla+zero1,loop:vanilla+compile+fused+zero1")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seq-len", type=int_at_least(1), default=128)
    p.add_argument("--micro-batch", type=int_at_least(1), default=4)
    p.add_argument("--accum", type=int_at_least(1), default=1, help="micro-batches per optimizer step")
    p.add_argument("--steps", type=int_at_least(1), default=8, help="timed optimizer steps per config")
    p.add_argument("--warmup", type=int_at_least(0), default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--precision", default="auto", choices=("auto", "32-true", "bf16-mixed", "16-mixed"))
    p.add_argument("--configs", default=None, help=f"comma list (CPU default {CPU_CONFIGS}; GPU default {GPU_CONFIGS})")
    p.add_argument("--peak-tflops", type=float, default=None, help="per-device peak (default: Lightning's table)")
    p.add_argument("--data-dir", default=None, help="a prepared data dir for the loop configs (default: bundled books)")
    p.add_argument("--budget-s", type=float, default=None, help="skip the configs that would start after this")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.configs is not None:
        args.configs = ",".join(c.strip() for c in args.configs.split(",") if c.strip())
        if not args.configs:
            p.error("--configs: empty list; see --help")
        for name in args.configs.split(","):
            try:
                parse_config(name)
            except ValueError as e:
                p.error(f"--configs: {e}")

    import torch

    from sinktrain.train.flops import device_peak_tflops, flops_per_token, mfu

    cuda = torch.cuda.is_available()
    precision = args.precision if args.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    try:  # a bad --preset or --seq-len: one line now, not an error row per config
        train_config(args, precision, "vanilla", [], "unused", "unused")
    except ValueError as e:
        p.error(str(e).splitlines()[0])
    configs = (args.configs or (GPU_CONFIGS if cuda else CPU_CONFIGS)).split(",")
    if args.warmup < 1 and any(c.startswith("loop:") for c in configs):
        p.error("the loop: configs are timed from the metrics row of the last warmup step; pass --warmup >= 1")
    t_start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="sinktrain-bench-") as tmp:
        data_dir = args.data_dir
        for name in configs:
            if args.budget_s and time.perf_counter() - t_start > args.budget_s:
                results.append({"config": name, "skipped": f"over --budget-s {args.budget_s:g}"})
                continue
            if name.startswith("loop:") and data_dir is None:
                data_dir = _prepare_books(Path(tmp) / "data")
            t0 = time.perf_counter()
            try:
                row = run_config(name, args, precision, data_dir, Path(tmp))
            except Exception as e:  # one broken config must not hide the others' numbers
                row = {"config": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            row["seconds"] = round(time.perf_counter() - t0, 1)
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            _free()

    cfg = train_config(args, precision, "vanilla", [], "unused", "unused")
    fpt = flops_per_token(cfg.model)
    peak = device_peak_tflops(args.peak_tflops, precision) if cuda else args.peak_tflops
    base = next((r["tokens_per_s"] for r in results if r["config"].startswith("hf") and r.get("tokens_per_s")), None)
    for r in results:
        if r.get("tokens_per_s"):
            r["mfu"] = round(mfu(r["tokens_per_s"], fpt, 1, peak), 4) if peak else None
            r["vs_baseline"] = round(r["tokens_per_s"] / base, 3) if base else None
    by_name = {r["config"]: r for r in results}
    loop_vs_bare = {name: round(r["tokens_per_s"] / by_name["bare:" + name[5:]]["tokens_per_s"], 3)
                    for name, r in by_name.items() if name.startswith("loop:") and r.get("tokens_per_s")
                    and by_name.get("bare:" + name[5:], {}).get("tokens_per_s")}
    device = torch.cuda.get_device_name() if cuda else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    report = {
        "date": datetime.date.today().isoformat(), "device": device, "torch": torch.__version__,
        "preset": args.preset, "seq_len": args.seq_len, "micro_batch": args.micro_batch, "accum": args.accum,
        "precision": precision, "steps": args.steps, "warmup": args.warmup,
        "flops_per_token": fpt, "peak_tflops": peak, "results": results, "loop_vs_bare": loop_vs_bare,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 1 if any("error" in r for r in results) else 0


def parse_config(name: str) -> tuple[str, str, list[str]]:
    """'loop:zerosink+compile+fused' -> ('loop', 'zerosink', ['compile', 'fused']);
    'hf+compile' -> ('hf', 'vanilla', ['compile'])."""
    kind, _, rest = name.partition(":") if ":" in name else (name.split("+")[0], "", "vanilla" + name[2:])
    variant, *levers = rest.split("+")
    known = {*LEVER_SETS, "compile-blocks"}
    if kind not in ("hf", "bare", "loop") or variant not in VARIANT_SINK or any(x not in known for x in levers):
        raise ValueError(f"unknown config {name!r}; see --help")
    if kind == "hf" and (variant != "vanilla" or len(levers) > 1 or set(levers) - {"compile", "compile-blocks"}):
        raise ValueError(f"{name!r}: the stock baseline takes only +compile or +compile-blocks")
    if kind == "bare" and {"zero1", "fusedadam"} & set(levers):
        raise ValueError(f"{name!r}: +zero1 and +fusedadam are settings of the training loop; use loop:...")
    if kind != "hf" and "compile-blocks" in levers:
        raise ValueError(f"{name!r}: +compile-blocks is for the stock baseline; sinktrain's +compile is blocks")
    return kind, variant, levers


def train_config(args, precision: str, variant: str, levers: list[str], data_dir: str, run_dir: str):
    from sinktrain.train import load_train_config

    sets = [f"model.preset={args.preset}", f"model.sink={VARIANT_SINK[variant]}", f"model.max_seq_len={args.seq_len}",
            f"data.dir={data_dir}", f"trainer.precision={precision}", "trainer.accelerator=auto",
            "trainer.strategy=single", f"trainer.micro_batch_size={args.micro_batch}",
            f"trainer.global_batch_size={args.micro_batch * args.accum}",
            f"trainer.max_steps={args.warmup + args.steps}", "trainer.val_every=0", "trainer.log_every=1",
            f"schedule.warmup_steps={min(2, args.warmup + args.steps)}",  # the recipe's 2, or the whole run
            "trainer.progress_bar=false", "checkpoint.every=0", "logging.sink_score_every=0", "optim.impl=torch",
            f"logging.peak_tflops={args.peak_tflops if args.peak_tflops else 'null'}",
            *(s for x in levers for s in LEVER_SETS.get(x, []))]
    return load_train_config(REPO / "recipes" / "tiny-cpu.yaml", sets, run_dir=run_dir, resume="never")


def run_config(name: str, args, precision: str, data_dir: str | None, tmp: Path) -> dict:
    import torch

    kind, variant, levers = parse_config(name)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    cfg = train_config(args, precision, variant, levers, data_dir or "unused", str(tmp / name.replace(":", "_")))
    if kind == "loop":
        tps = time_loop(cfg, args)
    else:
        tps = time_bare(cfg, args, stock=kind == "hf", compile_stock=next(iter(levers), None))
    row = {"config": name, "tokens_per_s": round(tps, 1)}
    row["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None
    return row


def time_loop(cfg, args) -> float:
    """train() itself; tokens/s from the metrics rows' wall-clock times, from the end of warmup to the end."""
    from sinktrain.train import train

    from sinktrain.export import read_metrics

    rows = read_metrics(train(cfg))
    first = next(r for r in rows if r["step"] == args.warmup)
    last = rows[-1]
    tokens = (last["step"] - first["step"]) * cfg.trainer.global_batch_size * cfg.model.seq_len
    return tokens / (last["time"] - first["time"])


def bare_step(cfg, args, *, stock: bool, compile_stock: str | None = None):
    """One bare optimizer step as a function, and a device sync: forward, backward (args.accum micro-batches),
    clip 1.0, AdamW, zero_grad; autocast as the precision says. Also `benchmarks/train_profile.py`'s step."""
    import torch

    from sinktrain.model import compile_blocks
    from sinktrain.train.module import SinkLM
    from sinktrain.train.strategy import resolved_precision

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    precision = resolved_precision(cfg)
    module = SinkLM(cfg).to(device)
    if stock:  # stock transformers: the model's own loss on plain input ids, nothing of sinktrain's in the step
        model = module.model
        if compile_stock == "compile":
            model.compile()
        elif compile_stock == "compile-blocks":
            compile_blocks(model)

        def loss_fn(tokens):
            return model(input_ids=tokens, labels=tokens, use_cache=False).loss
    else:
        def loss_fn(tokens):
            return module.loss(*module.inputs_and_labels(tokens))
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=cuda or None)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    if precision == "16-mixed":
        raise ValueError("the bare loop has no loss scaler; benchmark bf16-mixed or 32-true")
    gen = torch.Generator().manual_seed(0)
    sample_len = cfg.sample_len
    batches = [torch.randint(0, cfg.model.tokenizer_vocab_size, (cfg.trainer.micro_batch_size, sample_len),
                             generator=gen).to(device) for _ in range(args.accum)]

    def step():
        for tokens in batches:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = loss_fn(tokens) / args.accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    return step, sync


def time_bare(cfg, args, *, stock: bool, compile_stock: str | None) -> float:
    """Tokens/s of `bare_step` over args.steps steps after args.warmup."""
    step, sync = bare_step(cfg, args, stock=stock, compile_stock=compile_stock)
    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    elapsed = time.perf_counter() - t0
    return args.steps * args.accum * cfg.trainer.micro_batch_size * cfg.model.seq_len / elapsed


def _free() -> None:
    import torch

    gc.collect()
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _prepare_books(out: Path) -> str:
    from sinktrain.data import PrepareConfig, prepare

    books = REPO / "data" / "books"
    return str(prepare(PrepareConfig(
        sources=[str(books / "austen_persuasion.txt"), str(books / "bierce_devils_dictionary.txt")],
        out_dir=str(out), txt_documents="paragraphs", val_fraction=0.05, progress=False,
    )))


if __name__ == "__main__":
    sys.exit(main())
