"""`sinktrain stream-eval MODEL... [--KEY VALUE ...]`: StreamEvalConfig's keys, typed (`sinktrain stream-eval
--help` lists them), e.g. `sinktrain stream-eval smollm2-135m-instruct --text book.txt --cache 256 --sinks 0,1,4
--out runs/smollm2`."""

from __future__ import annotations

from pathlib import Path

from sinktrain.cli_config import add_config_verb
from sinktrain.verbs import verb_help


def register(sub) -> None:
    from sinktrain.stream.config import StreamEvalConfig

    add_config_verb(sub, "stream-eval", StreamEvalConfig, run, positionals=("models",),
                    help=verb_help("stream-eval"))


def run(cfg) -> int:
    from sinktrain.model_source import check_model_spec
    from sinktrain.stream.config import check_values
    from sinktrain.util.devices import check_device

    # Before the evaluator's imports (torch and transformers, seconds): a value it would refuse, then a mistyped
    # model, is refused in well under a second; then the device, which imports torch. evaluate() checks again.
    check_values(cfg)
    for model in cfg.models:
        check_model_spec(model)
    check_device(cfg.device)
    from sinktrain.stream import evaluate

    results = evaluate(cfg)
    print((Path(cfg.out) / "table.md").read_text(), end="")
    return 0 if results else 1
