"""The shared output-folder rule (sinktrain.util.outputs): what a kill leaves is never run over."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinktrain.util.outputs import check_out_dir, staged_out_dir


def test_an_output_a_killed_run_moved_aside_is_refused_not_deleted(tmp_path, monkeypatch):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.json").write_text("earlier")
    real_rename = Path.rename

    def killed_after_moving_the_earlier_output_aside(self, target):
        real_rename(self, target)
        if Path(target).name.startswith("eval.old-"):
            raise KeyboardInterrupt  # the kill between the two renames

    monkeypatch.setattr(Path, "rename", killed_after_moving_the_earlier_output_aside)
    with pytest.raises(KeyboardInterrupt), staged_out_dir(out, "stream-eval") as tmp:
        (tmp / "results.json").write_text("new")
    monkeypatch.undo()
    aside = tmp_path / "eval.old-stream-eval"
    assert not out.exists() and (aside / "results.json").read_text() == "earlier"
    for overwrite in (False, True):  # the next run, with or without --overwrite, must not delete the only copy
        with pytest.raises(FileExistsError, match=f"{str(aside)!r} holds an earlier output that a killed run moved "
                                                  f"aside; move it back to {str(out)!r}"):
            check_out_dir(out, overwrite=overwrite, markers=("nll/",), what="stream-eval output", own=("*",))
    assert (aside / "results.json").read_text() == "earlier"
    aside.rename(out)  # what the message says to do
    check_out_dir(out, overwrite=True, markers=("results.json",), what="stream-eval output", own=("*",))
