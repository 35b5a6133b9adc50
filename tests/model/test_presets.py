"""Presets reproduce Pythia's published architectures and initialisation."""

import math

import pytest
import torch

from sinktrain.model import ModelConfig, SinkConfig, build_model, count_parameters

# Pythia's published sizes (EleutherAI/pythia README and paper, Table 1): total, non-embedding.
PUBLISHED = {
    "pythia-14m": (14_067_712, 1_189_888),
    "pythia-31m": (30_494_720, 4_739_072),
    "pythia-70m": (70_426_624, 18_915_328),
    "pythia-160m": (162_322_944, 85_056_000),
    "pythia-410m": (405_334_016, 302_311_424),
}


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_parameter_counts_match_pythia(preset):
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = build_model(ModelConfig(preset=preset), seed=None)
    counts = count_parameters(model)
    assert (counts["total"], counts["non_embedding"]) == PUBLISHED[preset]


def test_pythia_160m_architecture():
    cfg = ModelConfig(preset="pythia-160m")
    with torch.device("meta"):
        hf = build_model(cfg, seed=None).config
    assert (hf.num_hidden_layers, hf.hidden_size, hf.num_attention_heads, hf.intermediate_size) == (12, 768, 12, 3072)
    assert hf.vocab_size == 50304 and hf.max_position_embeddings == 2048
    assert hf.rope_parameters["partial_rotary_factor"] == 0.25 and hf.rope_parameters["rope_theta"] == 10000
    assert hf.use_parallel_residual and not hf.tie_word_embeddings and hf.layer_norm_eps == 1e-5


def test_sink_kinds_do_not_change_stock_parameter_count_except_logit():
    def total(kind, n=0):
        with torch.device("meta"):
            m = build_model(ModelConfig(preset="pythia-160m", sink=SinkConfig(kind=kind, num_tokens=n)), seed=None)
        return count_parameters(m)["total"]

    base = total("none")
    assert total("token", 1) == base  # the sink row is one of the padded rows already there
    assert total("softmax1") == base
    assert total("logit") == base + 12 * 12  # one scalar per head per layer


def test_initialisation_follows_pythia_formulas():
    cfg = ModelConfig(preset="pythia-70m")
    model = build_model(cfg, seed=0)
    d, layers = 512, 6
    small, wang = math.sqrt(2 / (5 * d)), 2 / (layers * math.sqrt(d))
    sd = model.state_dict()
    checks = {
        "gpt_neox.embed_in.weight": small,
        "gpt_neox.layers.0.attention.query_key_value.weight": small,
        "gpt_neox.layers.3.mlp.dense_h_to_4h.weight": small,
        "gpt_neox.layers.0.attention.dense.weight": wang,
        "gpt_neox.layers.5.mlp.dense_4h_to_h.weight": wang,
    }
    for name, expected in checks.items():
        std = sd[name].float().std().item()
        assert abs(std - expected) / expected < 0.05, (name, std, expected)
    out_std = model.get_output_embeddings().weight.std().item()  # named lm_head or embed_out by version
    assert abs(out_std - small) / small < 0.05
    assert torch.count_nonzero(sd["gpt_neox.layers.0.attention.query_key_value.bias"]) == 0
    assert torch.all(sd["gpt_neox.final_layer_norm.weight"] == 1)


def test_same_seed_same_weights_different_seed_different_weights():
    a = build_model(ModelConfig(preset="tiny"), seed=7).state_dict()
    b = build_model(ModelConfig(preset="tiny"), seed=7).state_dict()
    c = build_model(ModelConfig(preset="tiny"), seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["gpt_neox.embed_in.weight"], c["gpt_neox.embed_in.weight"])
