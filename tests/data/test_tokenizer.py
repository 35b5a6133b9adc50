"""The bundled tokenizer is the exact GPT-NeoX-20B one; its hash ignores sink tokens added at export."""

import pytest

from sinktrain.data import eod_id, load_tokenizer, tokenizer_hash


def test_bundled_tokenizer_is_gpt_neox_20b(raw_tok):
    tok = load_tokenizer()
    assert tok("Hello, I am")["input_ids"] == [12092, 13, 309, 717]  # published GPT-NeoX-20B ids
    assert len(tok) == 50277 and eod_id(tok) == 0 and tok.convert_ids_to_tokens(0) == "<|endoftext|>"
    assert load_tokenizer("pythia").get_vocab() == raw_tok.get_vocab(with_added_tokens=True)


def test_hash_ignores_added_sink_tokens_but_not_the_vocabulary(tmp_path, big_vocab_tokenizer_path):
    tok = load_tokenizer()
    before = tokenizer_hash(tok)
    tok.add_special_tokens({"additional_special_tokens": ["<|sink_0|>"]})
    assert len(tok) == 50278 and tokenizer_hash(tok) == before
    tok.save_pretrained(tmp_path / "saved")
    assert tokenizer_hash(load_tokenizer(tmp_path / "saved")) == before  # a folder spec round-trips
    assert tokenizer_hash(load_tokenizer(big_vocab_tokenizer_path)) != before


def test_has_token_agrees_with_the_vocabulary_added_tokens_included():
    from sinktrain.data.tokenizer import has_token

    tok = load_tokenizer()
    words = ["<|endoftext|>", "Hello", "\u0120the", "<|sink_0|>", "no-such-token-here"]
    assert [has_token(tok, w) for w in words] == [w in tok.get_vocab() for w in words] == [True, True, True, False,
                                                                                           False]
    tok.add_special_tokens({"additional_special_tokens": ["<|sink_0|>"]})
    assert has_token(tok, "<|sink_0|>") and "<|sink_0|>" in tok.get_vocab()


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; pass a tokenizer.json path"):
        load_tokenizer(tmp_path / "nope.json")


def test_hash_counts_added_tokens_other_than_sinks(tmp_path):
    """All added tokens were left out of the hash: a tokenizer that gained a special token (which reads its text
    as one new id) hashed as before, and prepare reused data tokenized without it."""
    tok = load_tokenizer()
    before = tokenizer_hash(tok)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    assert tok("<|im_start|>", add_special_tokens=False)["input_ids"] == [50277]
    assert tokenizer_hash(tok) != before
    with_sink = load_tokenizer()
    with_sink.add_special_tokens({"additional_special_tokens": ["<|sink_0|>", "<|sink_1|>"]})
    assert tokenizer_hash(with_sink) == before
