"""A tiny GPT-NeoX folder with sinktrain's tokenizer, and a chat template for it (tests of the verbs); a small
SentencePiece-style tokenizer."""

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


def sentencepiece_like(texts: list[str], vocab: int = 300):
    """A BPE tokenizer trained on `texts` that marks spaces as Llama-2 / Mistral / TinyLlama do: a metaspace
    '▁' with one prepended to the start of every encoded text, digits split one per token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
                                               pre_tokenizers.Digits(individual_digits=True)])
    t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    t.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=t, unk_token="<unk>", eos_token="</s>")


def sentencepiece_folder(root, texts: list[str], window: int | None = None, seed: int = 0):
    """A tiny Mistral (sliding-window attention of `window` on every layer, or none) with `sentencepiece_like`'s
    tokenizer trained on `texts`."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    tok = sentencepiece_like(texts)
    torch.manual_seed(seed)
    model = MistralForCausalLM(MistralConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             sliding_window=window, max_position_embeddings=4096)).eval()
    folder = root / f"mistral-{window}"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, model, tok
