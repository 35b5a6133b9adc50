"""A token-sink model sees its sink token(s) at position 0 of every request lm-eval scores: the harness's
log-likelihood equals a hand computation with the sinks prepended, and differs from one without them."""

from __future__ import annotations

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from sinktrain.zeroshot.lm import SinkHFLM, lm_for, load
from zeroshot_helpers import SINK_IDS

CONTEXT = "Question: How do I keep bread fresh?\nAnswer:"
CONTINUATION = " Wrap it in a cloth and keep it in a cool, dry box."


def hand_loglikelihood(model, prefix: list[int], context_ids: list[int], continuation_ids: list[int]) -> float:
    """Sum of log p(continuation token | everything before it) from one plain forward pass."""
    ids = torch.tensor([prefix + context_ids + continuation_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    start = len(prefix) + len(context_ids)
    return sum(float(logp[start - 1 + i, t]) for i, t in enumerate(continuation_ids))


def request(context: str, continuation: str) -> Instance:
    return Instance(request_type="loglikelihood", doc={}, arguments=(context, continuation), idx=0)


def split_ids(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context / continuation ids as lm-eval splits them: encode the whole text, cut at the context's length."""
    whole = tok.encode(context + continuation, add_special_tokens=False)
    ctx = tok.encode(context, add_special_tokens=False)
    return ctx, whole[len(ctx):]


@pytest.mark.parametrize("name", ["sink1", "sink2"])
def test_request_scored_with_the_sinks_first(model_dirs, name):
    loaded = load(str(model_dirs[name]), "cpu", "float32")
    sinks = SINK_IDS[: 1 if name == "sink1" else 2]
    assert loaded.sink_ids == sinks
    lm = lm_for(loaded, batch_size=4)
    assert isinstance(lm, SinkHFLM)
    ctx, cont = split_ids(loaded.tokenizer, CONTEXT, CONTINUATION)
    (got, _), (got_empty, _) = lm.loglikelihood([request(CONTEXT, CONTINUATION), request("", CONTINUATION)])

    with_sinks = hand_loglikelihood(loaded.model, sinks, ctx, cont)
    assert got == pytest.approx(with_sinks, abs=1e-4)
    # An empty context: the sinks alone condition the continuation (not lm-eval's single BOS/EOS token).
    bare = loaded.tokenizer.encode(CONTINUATION, add_special_tokens=False)
    assert got_empty == pytest.approx(hand_loglikelihood(loaded.model, sinks, [], bare), abs=1e-4)

    # Without the sink the number is another one; lm-eval's stock model class told not to add special tokens
    # gives exactly that one: the sink would silently be lost.
    without = hand_loglikelihood(loaded.model, [], ctx, cont)
    assert abs(without - with_sinks) > 1e-3
    stock = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, backend="causal", add_bos_token=False,
                 batch_size=4, device="cpu")
    (stock_ll, _), = stock.loglikelihood([request(CONTEXT, CONTINUATION)])
    assert stock_ll == pytest.approx(without, abs=1e-4)


def test_long_request_cut_behind_the_sink(model_dirs):
    """A request longer than the model's context loses its oldest text tokens, never the sink."""
    loaded = load(str(model_dirs["sink1"]), "cpu", "float32")
    lm = SinkHFLM(sink_ids=loaded.sink_ids, pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=2,
                  device="cpu", max_length=24)
    ctx, cont = split_ids(loaded.tokenizer, CONTEXT, CONTINUATION)
    keep = 24 + 1 - len(loaded.sink_ids) - len(cont)  # the request fed is max_length tokens + the last target
    assert 0 < keep < len(ctx)
    (got, _), = lm.loglikelihood([request(CONTEXT, CONTINUATION)])
    assert got == pytest.approx(hand_loglikelihood(loaded.model, loaded.sink_ids, ctx[-keep:], cont), abs=1e-4)
