"""Helpers for the streaming tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from sinktrain.model import ModelConfig, SinkConfig, build_model

REPO = Path(__file__).resolve().parents[2]
BOOKS = REPO / "data" / "books"
SINK_ID = 50277  # first free padded row of the GPT-NeoX vocabulary


@contextlib.contextmanager
def one_thread():
    """One intra-op thread: the reference mode runs thousands of tiny forwards, and on a busy 2-core machine
    torch's thread pool spends ~10x their compute waiting for cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def tiny(kind: str = "none", seed: int = 0, **sink):
    return build_model(ModelConfig(preset="tiny", sink=SinkConfig(kind=kind, **sink)), seed=seed).eval()


def train_tiny(tokenizer, kind: str = "none", steps: int = 40):
    """Tiny model after `steps` Adam steps on the start of Emma (a few seconds on CPU).

    Only the transformer layers learn (the two 50k-row embedding matrices stay at their init, and the loss is a
    softmax over the ids that occur in the training text): Adam on the embeddings would cost ~10x the step,
    and what the tests need is attention that is far from uniform."""
    text = (BOOKS / "austen_emma.txt").read_text()[:60000]
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    vocab, local = torch.unique(ids, return_inverse=True)
    model = tiny(kind, seed=1).train()
    for emb in (model.get_input_embeddings(), model.get_output_embeddings()):
        emb.weight.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    seq, batch = 64, 8
    with one_thread():
        for _ in range(steps):
            starts = torch.randint(0, len(ids) - seq - 1, (batch,), generator=gen).tolist()
            x = torch.stack([ids[s : s + seq] for s in starts])
            y = torch.stack([local[s + 1 : s + seq + 1] for s in starts])
            hidden = model.gpt_neox(input_ids=x, use_cache=False).last_hidden_state
            logits = hidden @ model.get_output_embeddings().weight[vocab].T
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.final_loss = float(loss.detach())
    return model.eval()
