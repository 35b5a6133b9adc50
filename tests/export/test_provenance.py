"""Provenance carried by the artifacts: a non-default tokenizer reaches every stage without being named again
(data -> train -> export -> stream-eval), and a softmax1 training run exports to a folder that loads without sinktrain.

Single-process runs (no torchrun), so `make test-fast` runs them too.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sinktrain.cli import main

REPO = Path(__file__).resolve().parents[2]
BOOK = REPO / "data/books/bierce_devils_dictionary.txt"
TRAIN_SETS = ["trainer.max_steps=2", "checkpoint.every=2", "trainer.val_every=0", "logging.sink_score_every=0"]


def _train(data_dir: Path, run_dir: Path, *sets: str) -> None:
    argv = ["train", "--config", str(REPO / "recipes/tiny-cpu.yaml"), "--run_dir", str(run_dir),
            "--set", f"data.dir={data_dir}"]
    for s in (*TRAIN_SETS, *sets):
        argv += ["--set", s]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def small_bpe(tmp_path_factory) -> Path:
    """A 300-entry byte-level BPE trained on a book with the `tokenizers` library (not GPT-NeoX's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([BOOK.read_text()[:200_000]], trainer)
    path = tmp_path_factory.mktemp("bpe") / "small-bpe.json"
    tok.save(str(path))
    return path


def test_a_non_default_tokenizer_is_used_at_every_stage(small_bpe, tmp_path):
    from transformers import AutoTokenizer

    from sinktrain.data import load_tokenizer

    bpe = load_tokenizer(small_bpe)
    n = len(bpe)
    assert n == 300 and bpe.eos_token_id == 0

    # data: tokenized with the BPE, which is kept next to the shards
    book = tmp_path / "book.txt"
    book.write_text(BOOK.read_text()[:60_000])
    data = tmp_path / "data"
    assert main(["data", "prepare", "--sources", str(book), "--out_dir", str(data), "--tokenizer", str(small_bpe),
                 "--txt_documents", "paragraphs", "--val_fraction", "0.1", "--progress", "false"]) == 0
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["tokenizer"]["vocab_size"] == n
    assert load_tokenizer(data / "tokenizer").get_vocab() == bpe.get_vocab()
    shard = np.fromfile(data / manifest["splits"]["train"]["files"][0], dtype=manifest["dtype"]).tolist()
    first_document = bpe.decode(shard[:shard.index(0)])  # ids up to the first EOD, decoded with the BPE
    assert max(shard) < n and len(first_document) > 20 and first_document in book.read_text()

    # train: nothing names the tokenizer again; the run keeps the data's copy and the manifest hash
    run = tmp_path / "run"
    _train(data, run, f"model.tokenizer_vocab_size={n}", "model.sink={kind: token, num_tokens: 1}")
    assert load_tokenizer(run / "tokenizer").get_vocab() == bpe.get_vocab()
    run_info = json.loads((run / "run.json").read_text())
    assert run_info["data_manifest_sha256"] == hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()

    # export: the run's tokenizer, with the sink token registered right after its entries
    out = tmp_path / "export"
    assert main(["export", str(run), str(out)]) == 0
    exported = AutoTokenizer.from_pretrained(out)
    vocab = exported.get_vocab()
    assert vocab.pop("<|sink_0|>") == n and vocab == bpe.get_vocab()
    text = "Abdication, n. An act whereby a sovereign attests his sense of the high temperature of the throne."
    assert exported(text)["input_ids"] == [n, *bpe(text)["input_ids"]]
    meta = json.loads((out / "config.json").read_text())["sinktrain"]
    assert meta["sink_token_ids"] == [n] and meta["data_manifest_sha256"] == run_info["data_manifest_sha256"]

    # stream-eval: the export's own tokenizer, no flag; the sink token leads the stream; another tokenizer refused
    held_out = tmp_path / "held-out.txt"
    held_out.write_text(BOOK.read_text()[100_000:104_000])
    evald = tmp_path / "stream"
    assert main(["stream-eval", str(out), "--text", str(held_out), "--cache", "32", "--sinks", "0,1",
                 "--out", str(evald), "--plots", "false", "--tensorboard", "false"]) == 0
    expected_tokens = len(bpe(held_out.read_text(), add_special_tokens=False)["input_ids"])
    results = json.loads((evald / "results.json").read_text())["export"]
    assert results["1+31"]["tokens"] == expected_tokens - 1  # text tokens 1..N-1 of the BPE's tokenization
    assert json.loads((evald / "run.json").read_text())["models"]["export"]["prefix"] == [n]
    assert main(["stream-eval", str(out), "--text", str(held_out), "--out", str(tmp_path / "x"),
                 "--tokenizer", "gpt-neox-20b"]) == 2


def test_softmax1_training_run_exports_and_loads_without_sinktrain(tmp_path):
    from sinktrain.data import PrepareConfig, prepare
    from sinktrain.model import ModelConfig, build_model
    from sinktrain.train import load_checkpoint_weights

    book = tmp_path / "book.txt"
    book.write_text(BOOK.read_text()[:60_000])
    data = prepare(PrepareConfig(sources=[str(book)], out_dir=str(tmp_path / "data"), txt_documents="paragraphs",
                                 val_fraction=0.1, progress=False))
    run = tmp_path / "run"
    _train(data, run, "model.sink={kind: softmax1, num_tokens: 0}")
    out = tmp_path / "zerosink"
    assert main(["export", str(run), str(out)]) == 0

    ids = [[1, 262, 1332, 13, 309, 717, 247, 1071, 15]]
    # A fresh interpreter in which `import sinktrain` fails: only the folder's own code (auto_map) can load it.
    code = (
        "import sys, json, torch\n"
        "sys.modules['sinktrain'] = None\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True).eval()\n"
        "assert not any(k.startswith('sinktrain') for k in sys.modules if sys.modules[k] is not None)\n"
        f"logits = m(torch.tensor({ids})).logits\n"
        "print(json.dumps({'type': type(m).__name__, 'logits': logits.tolist()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded["type"] == "SinkGPTNeoXForCausalLM"

    # the reference: the checkpoint's weights in sinktrain's own softmax1 model
    state, meta = load_checkpoint_weights(run / "checkpoints" / "step-00000002")
    reference = build_model(ModelConfig.from_dict(meta["config"]["model"]), seed=None).eval()
    reference.load_state_dict(state)
    with torch.no_grad():
        expected = reference(torch.tensor(ids)).logits
    torch.testing.assert_close(torch.tensor(loaded["logits"]), expected, atol=1e-5, rtol=0)
