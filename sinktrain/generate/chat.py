"""`sinktrain chat`: the paper's streaming-chat demo. Turns are formatted with the tokenizer's chat template
and fed into one sink cache that is never reset, so the conversation goes on past the cache at constant
memory (the model forgets what left the window, as StreamingLLM does).

Only the text each turn adds is fed: the template is rendered around the previous reply and the new user
message, and what follows the reply is tokenized (it starts with the template's end-of-turn marker). The
conversation itself is not kept in memory; `--out` writes it turn by turn as JSONL, under a temporary name that
replaces the file only when the conversation ends (script done, end of stdin, or Ctrl-C).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager, nullcontext
from typing import Iterator

from sinktrain.generate.config import ChatConfig
from sinktrain.generate.decode import Sampler
from sinktrain.generate.session import load_session, peak_rss_mb
from sinktrain.generate.text import IncrementalDetokenizer
from sinktrain.util.atomic import atomic_path
from sinktrain.util.errors import Terminated
from sinktrain.util.outputs import output_lock
from sinktrain.util.text_files import read_utf8

# A reply no model writes: rendered as the assistant's content, what follows it is the template's own text,
# which a real reply (e.g. "a" or "user") could also be found inside.
REPLY_PLACEHOLDER = "\x00sinktrain-reply\x00"
# A short conversation every chat template must render before the weights load (strict templates, e.g.
# Mistral's role alternation, fail on some; a broken one fails on any).
PROBE = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
         {"role": "user", "content": "Bye"}]


def read_script(path: str) -> list[str]:
    """User turns of a JSONL script: {"user": "..."} or {"role": "user", "content": "..."} per line."""
    turns = []
    # Some editors start a UTF-8 file with a byte-order mark, which is not JSON: drop it.
    # Lines end at \n only: str.splitlines() also splits at U+2028, U+0085, ..., which JSON allows inside strings.
    for i, line in enumerate(read_utf8(path, "chat script").removeprefix("\ufeff").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            why = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise ValueError(
                f"chat script {path} line {i} is not JSON ({why}); write one JSON object per line"
            ) from None
        text = row.get("user") if isinstance(row, dict) else None
        if text is None and isinstance(row, dict) and row.get("role") == "user":
            text = row.get("content")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f'chat script {path} line {i}: expected {{"user": "..."}} or {{"role": "user", '
                f'"content": "..."}} with non-empty text'
            )
        lone = next((c for c in text if "\ud800" <= c <= "\udfff"), None)  # JSON's \ud800 escape: no character
        if lone is not None:
            raise ValueError(f"chat script {path} line {i}: the text holds a lone surrogate (\\u{ord(lone):04x}), "
                             f"which is not a Unicode character; fix the line")
        turns.append(text)
    if not turns:
        raise ValueError(f"chat script {path} has no user turns")
    return turns


def stdin_turns(stdin) -> Iterator[str]:
    """User turns, one a non-blank line. Read as bytes and decoded strictly: the text layer follows the locale
    (surrogate escapes under C / POSIX), which would feed the model text that is not what was typed."""
    for i, line in enumerate(getattr(stdin, "buffer", stdin), start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"stdin line {i} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                                 f"{e.start}); send UTF-8 (e.g. through iconv -f latin1 -t utf-8)") from None
        if line.strip():
            yield line.rstrip("\r\n")


class TemplateTurns:
    """Text to feed for each turn, from the chat template, holding only the system message and the last reply."""

    def __init__(self, tokenizer, system: str | None, name: str = "the chat template"):
        self.tok, self.system, self.name = tokenizer, system, name

    def render(self, messages: list[dict], generation_prompt: bool) -> str:
        """The template's text for the conversation; a template that fails is one ValueError naming it."""
        from jinja2 import TemplateError, TemplateSyntaxError

        head = [{"role": "system", "content": self.system}] if self.system else []
        try:
            return self.tok.apply_chat_template(head + messages, add_generation_prompt=generation_prompt,
                                                tokenize=False)
        except TemplateError as e:
            where = f" at line {e.lineno}" if isinstance(e, TemplateSyntaxError) else ""
            what = " ".join(str(e.message or type(e).__name__).split())  # one line, whatever jinja wrote
            raise ValueError(f"{self.name} fails{where}: {what}; fix the template") from None

    def first(self, user: str) -> str:
        return self.render([{"role": "user", "content": user}], True)

    def next(self, reply: str, user: str) -> str:
        """What follows `reply` in the rendering of [..., reply, user] with a generation prompt."""
        turn = [{"role": "user", "content": user}]
        placed = self.render([{"role": "user", "content": "\x00"},
                              {"role": "assistant", "content": REPLY_PLACEHOLDER}] + turn, True)
        if placed.count(REPLY_PLACEHOLDER) == 1:
            return placed.split(REPLY_PLACEHOLDER, 1)[1]
        # The template rewrote the reply's content: its end-of-turn marker, then the new turn.
        before = [{"role": "user", "content": "\x00"}, {"role": "assistant", "content": reply}]
        full = self.render(before + turn, True)
        closed = self.render(before, False)
        marker = self.render([before[0], {"role": "assistant", "content": "\x01"}], False).split("\x01", 1)[-1]
        return marker + full[len(closed) :] if full.startswith(closed) else full


def check_template(spec: str, tok, template_file: str | None, system: str | None = None) -> None:
    """Install `template_file` (if given) and render PROBE with it (after `system`), before the weights load."""
    if template_file is not None:
        text = read_utf8(template_file, "chat template")
        if not text.strip():
            raise ValueError(f"chat template {template_file!r} is empty; write a Jinja chat template in it")
        tok.chat_template = text
    if not getattr(tok, "chat_template", None):
        raise ValueError(
            f"the tokenizer of {spec} has no chat template; pass --chat-template FILE (a Jinja "
            f"template) or chat with a model that has one"
        )
    name = template_name(spec, template_file)
    TemplateTurns(tok, None, name).render(PROBE, True)  # a broken template fails here, with or without --system
    if system:
        try:
            TemplateTurns(tok, system, name).render(PROBE, True)
        except ValueError as e:  # it renders without a system message only (e.g. Mistral's role alternation)
            raise ValueError(f"{e} or drop --system (it renders without a system message)") from None


def template_name(spec: str, template_file: str | None) -> str:
    return f"chat template {template_file!r}" if template_file else f"the chat template of {spec}"


@contextmanager
def transcript(path: str | None):
    """The --out file to write, or None. Written under a temporary name beside it and renamed over it when the
    conversation ends, so a run that fails leaves an earlier transcript as it was."""
    if path is None:
        yield None
        return
    with atomic_path(path, unique=True) as tmp, open(tmp, "w", encoding="utf-8") as log:
        yield log


def chat(cfg: ChatConfig, out=None, err=None) -> list[dict]:
    """Run the conversation; returns per-turn statistics (what --out writes, without the texts)."""
    cfg.check()  # before the lock: it refuses a --out in a missing folder, which the lock would make
    # From the check of --out to the transcript's rename no other chat writes it (both wrote one temporary file).
    with output_lock(cfg.out) if cfg.out is not None else nullcontext():
        return _chat(cfg, out, err)


def _chat(cfg: ChatConfig, out=None, err=None) -> list[dict]:
    """chat() once cfg is checked and --out is held."""
    out, err = out or sys.stdout, err or sys.stderr
    # Python sets a closed stream to None (`<&-`, `>&-`): refuse before the model loads rather than fail after.
    if out is None:
        raise ValueError("stdout is closed; give chat an open stdout (e.g. > chat.txt)")
    if cfg.script is None and sys.stdin is None:
        raise ValueError("stdin is closed; type the user turns on stdin or pass --script FILE")
    turns = read_script(cfg.script) if cfg.script else None
    sampler = Sampler(cfg.temperature, cfg.top_p, cfg.seed)
    session = load_session(cfg.model, cfg, check_tokenizer=lambda tok, _sinks, _config: check_template(
        cfg.model, tok, cfg.chat_template, cfg.system))
    tok = session.tokenizer
    template = TemplateTurns(tok, cfg.system, template_name(cfg.model, cfg.chat_template))
    decoder = session.decoder()
    stops = session.stop_ids()
    stats, reply, unfed = [], None, []
    with transcript(cfg.out) as log:
        try:
            for i, user in enumerate(turns if turns is not None else stdin_turns(sys.stdin)):
                text = template.first(user) if reply is None else template.next(reply, user)
                ids = (session.sink_ids if reply is None else unfed) + tok(text, add_special_tokens=False)["input_ids"]
                out.write(f"USER: {user}\nASSISTANT: ")
                detok, produced, start = IncrementalDetokenizer(tok, ids), [], time.perf_counter()
                for token in decoder.stream(ids, cfg.max_new_tokens, sampler, stops):
                    produced.append(token)
                    if token not in stops:
                        out.write(detok.push(token))
                        out.flush()
                out.write(detok.flush() + "\n\n")
                out.flush()
                elapsed = time.perf_counter() - start
                ended = bool(produced) and produced[-1] in stops
                # The last token was sampled but not fed: a stop token is re-written by the template's end marker.
                unfed = [] if ended else produced[-1:]
                reply = tok.decode(produced[:-1] if ended else produced, skip_special_tokens=True)
                row = {
                    "turn": i + 1,
                    "tokens_in": len(ids),
                    "tokens_out": len(produced),
                    "ended": ended,
                    "tokens_per_s": len(produced) / max(elapsed, 1e-9),
                    "tokens_seen": decoder.tokens_seen,
                    "cache_entries": int(decoder.cache.get_seq_length()),
                    "peak_rss_mb": round(peak_rss_mb(), 1),
                }
                stats.append(row)
                print(
                    f"[chat] turn {row['turn']}: {row['tokens_out']} tokens, {row['tokens_per_s']:.1f} tokens/s, "
                    f"{row['tokens_seen']} tokens seen, cache {row['cache_entries']} entries, peak RSS "
                    f"{row['peak_rss_mb']:.1f} MB",
                    file=err,
                    flush=True,
                )
                if log:
                    log.write(json.dumps({**row, "user": user, "assistant": reply}) + "\n")
        except Terminated:  # SIGTERM stops the run (exit 143): an earlier transcript stays as it was
            raise
        except KeyboardInterrupt:  # Ctrl-C is how an interactive chat ends: keep the turns so far, no traceback
            out.write("\n")
            print(f"[chat] interrupted: the conversation ends after {len(stats)} turn(s)", file=err, flush=True)
    return stats
