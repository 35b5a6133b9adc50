"""What a training batch is: the data stage's samples for (step, rank), the sink id(s) in front, no loss on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sinktrain.train import load_train_config
from train_helpers import RECIPES


@pytest.mark.parametrize("num_sinks", [1, 2])
def test_sink_recipe_prepends_sink_ids_and_takes_no_loss_on_them(tiny_data, num_sinks):
    from sinktrain.data import TokenDataset
    from sinktrain.train.module import SinkLM

    cfg = load_train_config(RECIPES / "tiny-cpu-sink.yaml",
                            [f"data.dir={tiny_data}", f"model.sink.num_tokens={num_sinks}"])
    module = SinkLM(cfg)
    sink_ids = list(range(50277, 50277 + num_sinks))  # first padded rows after the GPT-NeoX-20B tokenizer
    assert cfg.sample_len == 64 - num_sinks
    ds = TokenDataset(tiny_data, "train", cfg.sample_len, seed=1234)
    tokens = torch.from_numpy(ds.rank_batch(3, 4, 0, 1))

    input_ids, labels = module.inputs_and_labels(tokens)
    assert input_ids.shape == (4, 64)
    assert (input_ids[:, :num_sinks] == torch.tensor(sink_ids)).all()  # every sequence starts with the sinks
    assert torch.equal(input_ids[:, num_sinks:], tokens)
    assert (labels[:, :num_sinks] == -100).all() and torch.equal(labels[:, num_sinks:], tokens)

    # The loss is the mean next-token cross-entropy over text targets only: no position predicts a sink.
    with torch.no_grad():
        loss = module(tokens)
        logits = module.model(input_ids=input_ids).logits
    preds = logits[:, num_sinks - 1 : -1]  # positions whose next token is text
    ref = F.cross_entropy(preds.reshape(-1, preds.shape[-1]).float(), input_ids[:, num_sinks:].reshape(-1))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_micro_batches_are_this_ranks_slice_of_the_steps_global_batch(tiny_data):
    from sinktrain.data import TokenDataset
    from sinktrain.train.datamodule import StepMicroBatches, StepSampler

    ds = TokenDataset(tiny_data, "train", 63, seed=1234)
    G, mb, world, accum = 8, 2, 2, 2  # each rank: 4 samples per step in 2 micro-batches
    for rank in range(world):
        items = StepMicroBatches(ds, G, mb, rank, world, accum, steps=10)
        for step in (0, 7):
            for j in range(accum):
                got = items[step * accum + j].numpy()
                want = np.stack([ds.global_sample(step, rank * 4 + j * mb + b, G) for b in range(mb)])
                assert np.array_equal(got, want)
    # After a resume at step 3 of 5 the loader continues with micro-batch 6; len() covers the whole run.
    sampler = StepSampler(lambda: 3, total_steps=5, accum=2)
    assert list(sampler) == [6, 7, 8, 9] and len(sampler) == 10
