"""Names the user chose (an export or model folder, a study's variant) are drawn as written in every plot:
matplotlib read a `$...$` in one as TeX and failed at the end of the run, after all its work, in a multi-line
ParseFatalException (or drew something else)."""

from __future__ import annotations

import numpy as np
import pytest

TEX = "x$\\bad$"  # what mathtext cannot parse


def plots(tmp_path):
    from sinktrain.experiment.report import plot_loss_curves, plot_sink_dependence, plot_sink_scores
    from sinktrain.export.model_card import plot_loss_curve
    from sinktrain.generate.streameval import plot as plot_streameval
    from sinktrain.stream.report import plot_attention_maps, plot_log_ppl, plot_sink_attention

    rows = [{"step": s, "loss": 2.0 / s, "val_loss": 2.5 / s, "sink_score": [0.1 * s, 0.2], "sink_dependence": 0.1}
            for s in (1, 2)]
    by_length = [{"input_tokens_from": 0, "input_tokens_to": 10, "accuracy": 0.5, "digit_accuracy": 0.5}]
    return {
        "export loss curve": lambda p: plot_loss_curve(rows, p, f"{TEX}: training loss"),
        "study loss curves": lambda p: plot_loss_curves({TEX: rows}, p),
        "study sink scores": lambda p: plot_sink_scores({TEX: rows}, p),
        "study sink dependence": lambda p: plot_sink_dependence({TEX: rows}, p),
        "streameval": lambda p: plot_streameval({"sink": {"accuracy": 0.5, "digit_accuracy": 0.5,
                                                          "by_length": by_length}}, p, f"StreamEval: {TEX}"),
        "stream-eval log-ppl": lambda p: plot_log_ppl({TEX: {"4+60": np.ones(200)}}, p, cache=64),
        "stream-eval sink attention": lambda p: plot_sink_attention({TEX: [[0.5, 0.4], [0.3, 0.2]]}, p, 1),
        "stream-eval attention maps": lambda p: plot_attention_maps([np.eye(4)] * 2, p, TEX),
    }


@pytest.mark.parametrize("name", list(plots(None)))
def test_a_name_with_tex_in_it_is_drawn_as_written(tmp_path, name):
    path = tmp_path / "plot.png"
    plots(tmp_path)[name](path)
    assert path.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_labels_title_and_legend_are_literal():
    from sinktrain.plotting import pyplot, style_axes

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], label=TEX)
    style_axes(ax, TEX, TEX, TEX)
    texts = [ax.xaxis.label, ax.yaxis.label, ax.title, *ax.get_legend().get_texts()]
    assert [t.get_text() for t in texts] == [TEX] * 4 and not any(t.get_parse_math() for t in texts)
    plt.close(fig)
