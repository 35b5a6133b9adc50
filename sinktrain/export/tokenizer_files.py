"""Tokenizer files for an exported model: the training tokenizer plus the sink tokens.

For a `token`-sink model the sink tokens are registered as special tokens (so they decode to a name and
`skip_special_tokens` drops them) and the post-processor prepends them to every encoded text, so
`AutoTokenizer.from_pretrained(folder)(text)` already gives what the model was trained on.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import processors


def sink_token_names(n: int) -> list[str]:
    return [f"<|sink_{i}|>" for i in range(n)]


def save_tokenizer(tok, sink_ids: list[int], out_dir: Path) -> None:
    """Save the training tokenizer `tok` into `out_dir`, with the sink tokens registered (modifies `tok`)."""
    if sink_ids:
        names = sink_token_names(len(sink_ids))
        first_free = len(tok)
        if sink_ids != list(range(first_free, first_free + len(sink_ids))):
            # Added tokens take the next free ids in order; other ids would need a remapped vocabulary.
            raise ValueError(
                f"sink ids {sink_ids} are not the {len(sink_ids)} ids right after the tokenizer's {first_free} "
                f"entries, so they cannot be registered as tokenizer tokens; train with the default sink ids"
            )
        tok.add_special_tokens({"additional_special_tokens": names})
        got = tok.convert_tokens_to_ids(names)
        assert got == sink_ids, (got, sink_ids)
        prefix = " ".join(names)
        tok.backend_tokenizer.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{prefix} $A",
                    pair=f"{prefix} $A $B",
                    special_tokens=list(zip(names, sink_ids)),
                ),
            ]
        )
    tok.save_pretrained(str(out_dir))
