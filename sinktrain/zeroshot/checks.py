"""Checks of a model and of the tasks' requests that run before any model is scored, so that a broken model or a
request that cannot fit fails in one line at the start instead of after the earlier models were scored.

The model's own files (weights, custom code) are checked by `sinktrain.model.source` (refuse_custom_code,
check_weight_files).
"""

from __future__ import annotations

import contextlib
import io

# HFLM's fallback when neither the config nor the tokenizer states a context length (lm_eval.models.utils).
DEFAULT_MAX_LENGTH = 2048


def task_requests(refs: dict[str, str], limit: int | None, manager) -> dict[str, list[tuple[str, str]]]:
    """{task: [(context, continuation), ...]}: the loglikelihood requests lm-eval will score for each task ref
    (task name or YAML), under `limit`, built by lm-eval itself without any model."""
    # The progress bars of datasets (a split read for the first time) and of lm-eval (over the documents) have
    # nothing to say here (scoring shows them again), and would bury a refusal under bars.
    with contextlib.redirect_stderr(io.StringIO()):
        tasks = manager.load(list(refs.values()))["tasks"]
        out = {}
        for name in refs:
            tasks[name].build_all_requests(limit=limit, rank=0, world_size=1)
            out[name] = [inst.args[:2] for inst in tasks[name].instances]
    return out


def continuation_length(tokenizer, context: str, continuation: str) -> int:
    """Tokens of the continuation as lm-eval splits a pair (`TemplateLM._encode_pair`): the context's trailing
    spaces move into the continuation, and the continuation is what the whole text has beyond the context."""
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    if not context:
        return len(encode(continuation))
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    return len(encode(context + continuation)) - len(encode(context))


def longest_continuations(requests: dict[str, list[tuple[str, str]]], tokenizer) -> dict[str, int]:
    return {task: max((continuation_length(tokenizer, c, x) for c, x in pairs), default=0)
            for task, pairs in requests.items()}


def check_fits(name: str, longest: dict[str, int], max_length: int, num_sinks: int, fix: str) -> None:
    """lm-eval cuts a long request's context from the left, so what must fit is each continuation: at most
    `max_length` tokens, and with k sink tokens kept first (SinkHFLM) at most max_length + 1 - k (the last
    continuation token is only predicted, never fed)."""
    room = max_length if not num_sinks else max_length + 1 - num_sinks
    for task, n in longest.items():
        if n > room:
            sinks = f" with its {num_sinks} sink token(s) kept first" if num_sinks else ""
            need = n if not num_sinks else n + num_sinks - 1
            raise ValueError(f"{name}: a {task} answer is {n} tokens long, more than the {room} the model's "
                             f"{max_length}-token context leaves{sinks} (it needs a context of {need}); {fix}")


def model_tokenizer(source):
    """The tokenizer stored with the model; zero-shot scoring has no other (one line naming the model if absent)."""
    from sinktrain.model.source import load_model_tokenizer

    try:
        tokenizer = load_model_tokenizer(source)
    except Exception as e:  # unreadable tokenizer files
        raise ValueError(f"cannot load the tokenizer of model {source.spec!r}: {first_line(e)}") from None
    if tokenizer is None:
        raise ValueError(f"model {source.spec!r} has no tokenizer files; zero-shot scoring needs the model's own "
                         f"tokenizer (export it with sinktrain export, which writes it)")
    return tokenizer


def first_line(e: Exception) -> str:
    """The error's message in one line: its first line, and the next ones while a line ends in a colon (transformers'
    validation errors open with "Class validation error for validator 'validate_architecture':" and say what is
    wrong on the next, indented line)."""
    text = str(e).strip()
    if text.startswith("cannot load model"):  # sinktrain's loader already named the model
        text = text.split(": ", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    kept = lines[:1]
    for line in lines[1:]:
        if not kept[-1].endswith(":"):
            break
        kept.append(line)
    return " ".join(kept)
