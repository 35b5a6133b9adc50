"""A tiny GPT-NeoX folder with sinktrain's tokenizer, and a chat template for it (tests of the verbs)."""

from __future__ import annotations

from stream_helpers import SINK_ID, tiny

# ChatML, the format of SmolLM2-Instruct's own template.
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_folder(root, kind: str = "none", template: bool = False):
    from sinktrain.data.tokenizer import load_tokenizer

    tok = load_tokenizer()
    model = tiny(kind, seed=7, **({"num_tokens": 1} if kind == "token" else {}))
    if kind == "token":
        model.config.sinktrain = {"variant": "token", "sink_token_ids": [SINK_ID], "num_sink_tokens": 1}
    if template:
        tok.chat_template = CHATML
    folder = root / f"tiny-{kind}{'-chat' if template else ''}"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, model, tok
