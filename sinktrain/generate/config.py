"""Options of `sinktrain generate`, `chat` and `streameval`, one dataclass per verb (fields documented where
they are declared, so a typed-config CLI can be generated from them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from sinktrain.config_io import NonNegativeFloat, NonNegativeInt, PositiveInt, Range, Seed, configclass
from sinktrain.stream.config import check_sizes
from sinktrain.util.devices import DTYPES, check_device
from sinktrain.util.outputs import check_out_dir, check_out_file, check_out_outside, read_marker
from sinktrain.util.text_files import FOLDER, MISSING, check_utf8_text, file_problem, read_utf8

CACHE_KINDS = ("sink", "static")
TopP = Annotated[float, Range(gt=0, le=1)]  # nucleus mass: (0, 1], 1 = off


def check_input_file(path: str, what: str, fix: str) -> None:
    """Refuse, before any work, an input that is not a regular file (missing, a folder, a device, a FIFO, a
    symlink loop): `what` names it, `fix` says what to pass instead."""
    problem = file_problem(path)
    if problem is not None:
        error = FileNotFoundError if problem in (MISSING, FOLDER) else ValueError
        raise error(f"{what} {path!r} {problem}; {fix}")


@configclass()
class CacheOptions:
    """How the model's KV cache streams: s sinks + w = cache - s recent entries."""

    cache: PositiveInt = 1024
    """Cache size C = s + w: entries kept after each step."""
    sinks: NonNegativeInt = 4
    """Attention-sink entries s kept from the start of the stream (a sinktrain token-sink model's sink tokens
    count among them)."""
    cache_kind: str = "sink"
    """sink (dynamic tensors) | static (fixed-size ring buffers, same tokens; for CUDA graphs / torch.compile)."""
    prefill_chunk: PositiveInt = 64
    """Tokens per forward when a prompt overflows the cache (1 = exactly as if decoded token by token)."""
    device: str = "cpu"
    """torch device."""
    dtype: str = "float32"
    """float32 | bfloat16 | float16."""

    def check(self) -> None:
        """Every check before the model loads: the verb's options, then the device (it imports torch, ~2 s). The
        CLI makes the same two, with the model's source between them (generate/cli.py check_first), before the
        verb's own imports (torch, transformers), so a bad value is refused at once."""
        self.check_options()
        check_device(self.device)

    def check_options(self) -> None:
        check_sizes(self.sinks, self.cache - self.sinks)
        if self.cache_kind not in CACHE_KINDS:
            raise ValueError(f"--cache-kind must be one of {', '.join(CACHE_KINDS)}, got {self.cache_kind!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")


@configclass()
class SamplingOptions:
    temperature: NonNegativeFloat = 0.0
    """0 = greedy; otherwise softmax temperature."""
    top_p: TopP = 1.0
    """Nucleus sampling mass (1 = off)."""
    seed: Seed = 0
    """Seed of the sampler."""


@configclass()
class GenerateConfig(CacheOptions, SamplingOptions):
    """`sinktrain generate MODEL --prompt TEXT | --prompt-file F`."""

    model: str = ""
    """Model folder, .gguf file, hub id (owner/name) or zoo name (smollm2-135m-instruct)."""
    prompt: str | None = None
    """The prompt text."""
    prompt_file: str | None = None
    """A UTF-8 file holding the prompt (instead of --prompt)."""
    max_new_tokens: PositiveInt = 256
    """Tokens to generate."""
    ignore_eos: bool = False
    """Keep going past end-of-sequence (long-run benchmarks)."""
    progress_every: NonNegativeInt = 0
    """Report progress (tokens/s, peak RSS) on stderr every this many tokens (0: tqdm's own pace)."""

    def check_options(self) -> None:
        super().check_options()
        if (self.prompt is None) == (self.prompt_file is None):
            raise ValueError("give exactly one of --prompt TEXT and --prompt-file FILE")
        if self.prompt is not None:
            check_utf8_text(self.prompt, "--prompt")
        if self.prompt_file is not None:
            check_input_file(self.prompt_file, "prompt file", "pass an existing UTF-8 text file")

    def prompt_text(self) -> str:
        text = self.prompt if self.prompt is not None else read_utf8(self.prompt_file, "prompt file")
        if not text.strip():
            where = "--prompt" if self.prompt is not None else f"prompt file {self.prompt_file!r}"
            raise ValueError(f"{where} is empty; give some text to continue")
        return text


@configclass()
class ChatConfig(CacheOptions, SamplingOptions):
    """`sinktrain chat MODEL`: multi-turn streaming chat with the tokenizer's chat template."""

    model: str = ""
    """Model folder, .gguf file, hub id (owner/name) or zoo name (smollm2-135m-instruct)."""
    script: str | None = None
    """JSONL file of user turns ({"user": "..."} per line, or {"role": "user", "content": "..."}); default:
    read stdin."""
    system: str | None = None
    """System message put before the first turn."""
    chat_template: str | None = None
    """A Jinja chat template file, for a tokenizer that has none."""
    max_new_tokens: PositiveInt = 256
    """Tokens per reply at most."""
    out: str | None = None
    """Write the transcript (and per-turn statistics) as JSONL here."""
    overwrite: bool = False
    """Replace an existing --out file."""

    def check_options(self) -> None:
        super().check_options()
        if self.system is not None:
            check_utf8_text(self.system, "--system")
        if self.script is not None:
            check_input_file(self.script, "chat script", "pass a JSONL file of user turns")
        if self.chat_template is not None:
            check_input_file(self.chat_template, "chat template", "pass a Jinja template file")
        if self.out is not None:
            # --overwrite would replace the model's config.json, the .gguf or the script being read with the transcript
            check_out_outside(self.out, {"model": self.model, "--script": self.script,
                                         "--chat-template": self.chat_template})
            check_out_file(self.out, overwrite=self.overwrite)
            parent = Path(self.out).resolve().parent  # else the transcript would fail only after the model loads
            if not parent.is_dir():
                raise FileNotFoundError(f"--out {self.out!r}: folder {str(parent)!r} does not exist; create it "
                                        f"or choose another --out")


STREAMEVAL_METHODS = ("sink", "window", "dense", "recompute")
# Line words are two of 24 syllables, a dash and two more (streameval.SYLLABLES): 24**4 distinct words, one a line.
STREAMEVAL_MAX_LINES = 24**4
# The file that marks a streameval output folder. results.json cannot: stream-eval and zeroshot write one too,
# and --overwrite would replace their folders.
STREAMEVAL_MARKER = "streameval.json"


def is_earlier_streameval(out: Path) -> bool:
    """Whether folder `out` is a streameval output: it holds streameval.json, or (written before that file
    existed) a results.json of streameval's layout, {"config": {..., "lines", "methods"}, "results": {...}}, which
    neither stream-eval's nor zeroshot's results.json has."""
    if (out / STREAMEVAL_MARKER).is_file():
        return True
    earlier = read_marker(out / "results.json")
    config = earlier.get("config") if isinstance(earlier, dict) else None
    return isinstance(config, dict) and set(earlier) == {"config", "results"} and {"lines", "methods"} <= set(config)


@configclass()
class StreamEvalQAConfig(CacheOptions):
    """`sinktrain streameval MODEL --out DIR`: StreamEval line retrieval (paper §4.3) against input length."""

    model: str = ""
    """Model folder, .gguf file, hub id (owner/name) or zoo name (smollm2-135m-instruct)."""
    out: str = ""
    """Output folder (results.json, streameval.json, streameval.png)."""
    overwrite: bool = False
    """Replace an earlier streameval's non-empty out folder (once the new results are complete)."""
    lines: Annotated[int, Range(ge=30, le=STREAMEVAL_MAX_LINES)] = 200
    """Lines in the stream, at least 30 (the first query comes after line 30, then one after every 10th) and at
    most 331,776 (the distinct line words there are)."""
    seed: Seed = 0
    """Seed of the line words and numbers."""
    methods: str = ",".join(STREAMEVAL_METHODS)
    """Comma-separated caches to compare: sink, window, dense, recompute."""
    max_tokens: PositiveInt = 100_000
    """Stop asking once this many input tokens have been fed (bounds dense attention)."""
    bin_tokens: PositiveInt = 500
    """Width of the input-length bins of the accuracy curve."""
    no_plots: bool = False
    """Skip streameval.png."""

    def methods_list(self) -> list[str]:
        methods = [m.strip() for m in self.methods.split(",") if m.strip()]
        bad = [m for m in methods if m not in STREAMEVAL_METHODS]
        if bad or not methods:
            raise ValueError(f"--methods takes {', '.join(STREAMEVAL_METHODS)}, got {self.methods!r}")
        return list(dict.fromkeys(methods))  # a method named twice runs once

    def check_options(self) -> None:
        super().check_options()
        if self.cache_kind != "sink":  # the methods build their own dynamic caches (dense has no fixed size)
            raise ValueError(f"streameval runs the dynamic sink cache only; drop --cache-kind {self.cache_kind}")
        if not self.out:
            raise ValueError("--out is required: the folder for results.json and the plot")
        check_out_dir(self.out, overwrite=self.overwrite, markers=(STREAMEVAL_MARKER,), what="streameval output",
                      is_earlier=is_earlier_streameval, own=("results.json", STREAMEVAL_MARKER, "streameval.png"),
                      inputs={"model": self.model}, staging="streameval")
        self.methods_list()
