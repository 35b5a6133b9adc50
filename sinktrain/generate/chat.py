"""`sinktrain chat`: the paper's streaming-chat demo. Turns are formatted with the tokenizer's chat template
and fed into one sink cache that is never reset, so the conversation goes on past the cache at constant
memory (the model forgets what left the window, as StreamingLLM does).

Only the text each turn adds is fed: the template is rendered around the previous reply and the new user
message, and what follows the reply is tokenized (it starts with the template's end-of-turn marker). The
conversation itself is not kept in memory; `--out` writes it turn by turn as JSONL.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Iterator

from sinktrain.generate.config import ChatConfig
from sinktrain.generate.decode import Sampler
from sinktrain.generate.session import load_session, peak_rss_mb
from sinktrain.generate.text import IncrementalDetokenizer
from sinktrain.util.text_files import read_utf8


def read_script(path: str) -> list[str]:
    """User turns of a JSONL script: {"user": "..."} or {"role": "user", "content": "..."} per line."""
    turns = []
    for i, line in enumerate(read_utf8(path, "chat script").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"chat script {path} line {i} is not JSON ({e.msg}); write one JSON object per line"
            ) from None
        text = row.get("user") if isinstance(row, dict) else None
        if text is None and isinstance(row, dict) and row.get("role") == "user":
            text = row.get("content")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f'chat script {path} line {i}: expected {{"user": "..."}} or {{"role": "user", '
                f'"content": "..."}} with non-empty text'
            )
        turns.append(text)
    if not turns:
        raise ValueError(f"chat script {path} has no user turns")
    return turns


def stdin_turns() -> Iterator[str]:
    for line in sys.stdin:
        if line.strip():
            yield line.rstrip("\n")


class TemplateTurns:
    """Text to feed for each turn, from the chat template, holding only the system message and the last reply."""

    def __init__(self, tokenizer, system: str | None):
        self.tok, self.system = tokenizer, system

    def render(self, messages: list[dict], generation_prompt: bool) -> str:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return self.tok.apply_chat_template(head + messages, add_generation_prompt=generation_prompt, tokenize=False)

    def first(self, user: str) -> str:
        return self.render([{"role": "user", "content": user}], True)

    def next(self, reply: str, user: str) -> str:
        """What follows `reply` in the rendering of [..., reply, user] with a generation prompt."""
        before = [{"role": "user", "content": "\x00"}, {"role": "assistant", "content": reply}]
        full = self.render(before + [{"role": "user", "content": user}], True)
        at = full.rfind(reply, 0, full.rfind(user)) if reply.strip() else -1
        if at >= 0:
            return full[at + len(reply) :]
        # The template rewrote the reply (e.g. stripped it): its end-of-turn marker, then the new turn.
        closed = self.render(before, False)
        marker = self.render([before[0], {"role": "assistant", "content": "\x01"}], False).split("\x01", 1)[-1]
        return marker + full[len(closed) :] if full.startswith(closed) else full


def check_template(spec: str, tok, template_file: str | None) -> None:
    if template_file is not None:
        tok.chat_template = read_utf8(template_file, "chat template")
    if not getattr(tok, "chat_template", None):
        raise ValueError(
            f"the tokenizer of {spec} has no chat template; pass --chat-template FILE (a Jinja "
            f"template) or chat with a model that has one"
        )


def stop_ids(session) -> set[int]:
    ids = set()
    for source in (session.tokenizer.eos_token_id, getattr(session.model.generation_config, "eos_token_id", None)):
        ids.update(source if isinstance(source, list) else [] if source is None else [source])
    return {int(i) for i in ids}


def chat(cfg: ChatConfig, out=None, err=None) -> list[dict]:
    """Run the conversation; returns per-turn statistics (what --out writes, without the texts)."""
    out, err = out or sys.stdout, err or sys.stderr
    cfg.check()
    turns = read_script(cfg.script) if cfg.script else None
    sampler = Sampler(cfg.temperature, cfg.top_p, cfg.seed)
    session = load_session(
        cfg.model, cfg, check_tokenizer=lambda tok: check_template(cfg.model, tok, cfg.chat_template)
    )
    tok = session.tokenizer
    template = TemplateTurns(tok, cfg.system)
    decoder = session.decoder()
    stops = stop_ids(session)
    log = open(cfg.out, "w", encoding="utf-8") if cfg.out else None
    stats, reply, unfed = [], None, []
    try:
        for i, user in enumerate(turns if turns is not None else stdin_turns()):
            text = template.first(user) if reply is None else template.next(reply, user)
            ids = (session.sink_ids if reply is None else unfed) + tok(text, add_special_tokens=False)["input_ids"]
            out.write(f"USER: {user}\nASSISTANT: ")
            detok, produced, start = IncrementalDetokenizer(tok), [], time.perf_counter()
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
                log.flush()
    finally:
        if log:
            log.close()
    return stats
