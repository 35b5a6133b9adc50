"""Bad model configs fail with one clear error naming the problem and the fix."""

import pytest

from sinktrain.cli import main
from sinktrain.data.tokenizer import load_tokenizer
from sinktrain.model import ConfigError, ModelConfig, SinkConfig


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"unknown preset 'pythia-9m'; choose one of tiny, pythia-14m"):
        ModelConfig(preset="pythia-9m")


def test_more_sink_tokens_than_free_rows():
    with pytest.raises(ConfigError, match=r"28 sink tokens requested but only 27 padded embedding rows"):
        ModelConfig(preset="pythia-70m", sink=SinkConfig(kind="token", num_tokens=28))
    # 27 is the most that fits: 50304 rows - 50277 tokenizer ids.
    assert ModelConfig(preset="pythia-70m", sink=SinkConfig(kind="token", num_tokens=27)).sink_token_ids[-1] == 50303


def test_sink_ids_the_tokenizer_produces_are_refused():
    tok = load_tokenizer()
    produced = tok("Hello").input_ids[0]
    with pytest.raises(ConfigError, match=rf"sink token ids \[{produced}\] are not free padded rows"):
        ModelConfig(preset="tiny", sink=SinkConfig(kind="token", num_tokens=1, token_ids=[produced]))


def test_default_sink_ids_are_never_produced_by_the_tokenizer():
    tok = load_tokenizer()
    ids = ModelConfig(preset="tiny", sink=SinkConfig(kind="token", num_tokens=4)).sink_token_ids
    assert ids == [50277, 50278, 50279, 50280]
    assert len(tok) == 50277 and all(tok.convert_ids_to_tokens(i) is None for i in ids)


def test_unknown_sink_kind_and_tokens_on_wrong_kind():
    with pytest.raises(ConfigError, match="unknown sink kind 'sigmoid'"):
        SinkConfig(kind="sigmoid")
    with pytest.raises(ConfigError, match="sink kind 'softmax1' takes no sink tokens"):
        SinkConfig(kind="softmax1", num_tokens=1)
    with pytest.raises(ConfigError, match="needs num_tokens >= 1"):
        SinkConfig(kind="token", num_tokens=0)


def test_unknown_key_in_model_dict():
    with pytest.raises(ValueError, match=r"model: unknown key 'sink.count'; accepted keys in sink: kind, num_tokens"):
        ModelConfig.from_dict({"preset": "tiny", "sink": {"kind": "token", "count": 1}})


def test_info_cli_prints_integer_counts(capsys):
    assert main(["info", "--preset", "pythia-160m", "--sink-kind", "token"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 162322944\n" in out and "non_embedding_parameters: 85056000\n" in out
    assert '"sink_token_ids": [\n    50277\n  ]' in out


def test_info_cli_bad_preset_is_one_line(capsys):
    assert main(["info", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown preset 'nope'" in err
