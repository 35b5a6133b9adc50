"""An earlier stream-eval's folder is never lost or mixed with a new run's files: a second run into it is refused,
`--overwrite` replaces it only once the new output is whole, and only if it is a stream-eval output. run.json and
attention_stats.json record what was used."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket

import pytest
import torch
import transformers
from stream_helpers import BOOKS, REPO

import sinktrain
from sinktrain.cli import main
from sinktrain.data.tokenizer import tokenizer_hash
from sinktrain import model_zoo as zoo
import sinktrain.stream.evaluation as evaluate_module
from sinktrain.stream import StreamEvalConfig, evaluate

BOOK = str(REPO / "tests" / "persuasion_opening.txt")  # its first 20,000 characters (test_sources)


def run(model_dir, out, *args) -> int:
    return main(["stream-eval", str(model_dir), "--text", BOOK, "--cache", "24", "--tokens", "100", "--out", str(out),
                 "--plots", "false", "--tensorboard", "false", *args])


def snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_second_run_is_refused_and_overwrite_replaces_the_whole_folder(model_dirs, tmp_path, capsys):
    out = tmp_path / "eval"
    assert run(model_dirs["vanilla"], out, "--sinks", "0,4") == 0
    first = snapshot(out)
    assert {"nll/vanilla/0+24.npy", "nll/vanilla/4+20.npy", "results.json"} <= set(first)
    capsys.readouterr()

    assert run(model_dirs["vanilla"], out, "--sinks", "1") == 2
    line = one_line(capsys)
    assert f"output folder {out} exists and is not empty; pass --overwrite" in line and "another --out" in line
    assert snapshot(out) == first

    assert run(model_dirs["vanilla"], out, "--sinks", "1", "--overwrite") == 0
    # Only the new run's files: the first run's per-configuration NLLs would otherwise read as this run's.
    assert sorted(p.name for p in (out / "nll" / "vanilla").iterdir()) == ["1+23.npy"]
    assert list(json.loads((out / "results.json").read_text())["vanilla"]) == ["1+23"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no staging folder left beside it


def test_a_failed_run_leaves_the_earlier_output_as_it_was(model_dirs, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    assert run(model_dirs["vanilla"], out, "--sinks", "0,4") == 0
    first = snapshot(out)
    real = evaluate_module.run_configuration
    calls = []

    def second_configuration_fails(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 2:  # after the first configuration's NLLs were written
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "run_configuration", second_configuration_fails)
    cfg = StreamEvalConfig(models=[str(model_dirs["vanilla"])], text=BOOK, cache=24, sinks=[1, 2], tokens=100,
                           out=str(out), overwrite=True, plots=False, tensorboard=False)
    with pytest.raises(RuntimeError, match="killed"):
        evaluate(cfg)
    assert calls == ["1+23", "2+22"]
    assert snapshot(out) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_overwrite_replaces_only_a_stream_eval_output(model_dirs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    assert run(model_dirs["vanilla"], mine, "--sinks", "4", "--overwrite") == 2
    assert "is not an earlier stream-eval output (no nll/); --overwrite replaces only those" in one_line(capsys)
    assert snapshot(mine) == {"notes.txt": b"my notes"}
    other = tmp_path / "zeroshot"  # another verb's output: it holds a results.json too
    other.mkdir()
    (other / "results.json").write_text('{"vanilla": {"piqa": {"acc": 0.6}}}')
    assert run(model_dirs["vanilla"], other, "--sinks", "4", "--overwrite") == 2
    assert "is not an earlier stream-eval output (no nll/)" in one_line(capsys)
    assert snapshot(other) == {"results.json": b'{"vanilla": {"piqa": {"acc": 0.6}}}'}


def test_overwrite_never_deletes_what_stream_eval_did_not_write(model_dirs, tmp_path, capsys):
    """--overwrite replaces the whole folder: one that also holds the model or text being evaluated, or any file
    of the user's, is refused and kept (the model and text inside an earlier output were deleted)."""
    out = tmp_path / "eval"
    assert run(model_dirs["vanilla"], out, "--sinks", "4") == 0
    shutil.copytree(model_dirs["vanilla"], out / "mymodel")
    shutil.copy(BOOK, out / "book.txt")
    capsys.readouterr()
    before = snapshot(out)
    assert main(["stream-eval", str(out / "mymodel"), "--text", str(out / "book.txt"), "--cache", "24", "--tokens",
                 "100", "--out", str(out), "--overwrite"]) == 2
    assert one_line(capsys) == (f"sinktrain stream-eval: error: model {str(out / 'mymodel')!r} lies inside output "
                                f"folder {out}, which --overwrite replaces whole; move it out of there or choose "
                                f"another --out")
    assert run(model_dirs["vanilla"], out, "--sinks", "4", "--overwrite") == 2
    assert one_line(capsys) == (f"sinktrain stream-eval: error: output folder {out} also holds 'book.txt', 'mymodel', "
                                f"which the stream-eval output does not write; --overwrite replaces the whole folder, "
                                f"so move them out of it or choose another --out")
    assert snapshot(out) == before
    shutil.rmtree(out / "mymodel")
    (out / "book.txt").unlink()
    assert run(model_dirs["vanilla"], out, "--sinks", "4", "--overwrite") == 0  # the plots and tb/ are its own


def test_out_inside_a_model_tokenizer_or_text_folder_is_refused(model_dirs, tmp_path, capsys):
    """The results would be written into a folder the run reads (a model folder that is later exported or pushed
    carried them), with or without --overwrite, whether the folder exists yet or not."""
    model = tmp_path / "model"
    shutil.copytree(model_dirs["vanilla"], model)
    before = snapshot(model)
    for out, how in ((model / "eval", "lies inside"), (model, "is")):
        for extra in ((), ("--overwrite",)):
            assert run(model, out, "--sinks", "4", *extra) == 2
            assert one_line(capsys) == (f"sinktrain stream-eval: error: --out {str(out)!r} {how} model {str(model)!r}, "
                                        f"which the run reads; choose an --out outside it")
    assert run(model_dirs["vanilla"], model / "eval", "--sinks", "4", "--tokenizer", str(model)) == 2
    assert f"lies inside --tokenizer {str(model)!r}, which the run reads" in one_line(capsys)
    assert snapshot(model) == before
    books = tmp_path / "books"  # a folder of texts: the results would be read as text by the next run
    books.mkdir()
    shutil.copy(BOOK, books / "book.txt")
    assert main(["stream-eval", str(model_dirs["vanilla"]), "--text", str(books), "--cache", "24", "--tokens", "100",
                 "--sinks", "4", "--out", str(books / "eval")]) == 2
    assert one_line(capsys) == (f"sinktrain stream-eval: error: --out {str(books / 'eval')!r} lies inside --text "
                                f"{str(books)!r}, which the run reads; choose an --out outside it")
    assert sorted(p.name for p in books.iterdir()) == ["book.txt"]


def test_only_a_killed_runs_staging_folder_is_cleared(model_dirs, tmp_path, capsys):
    """<out>.tmp-stream-eval is where the output is staged; the run clears one a killed run left. A folder of the
    user's of that name was deleted with it, and a link there failed the run (streameval: at its very end)."""
    out, staging = tmp_path / "eval", tmp_path / "eval.tmp-stream-eval"
    staging.mkdir()
    (staging / "notes.txt").write_text("mine")
    assert run(model_dirs["vanilla"], out, "--sinks", "4") == 2
    assert one_line(capsys) == (f"sinktrain stream-eval: error: {str(staging)!r}, where the stream-eval output is "
                                f"staged, holds 'notes.txt', which the stream-eval output does not write, so no "
                                f"killed run left it; move it away or choose another --out")
    assert (staging / "notes.txt").read_text() == "mine"
    shutil.rmtree(staging)
    staging.symlink_to(tmp_path / "elsewhere")
    assert run(model_dirs["vanilla"], out, "--sinks", "4") == 2
    assert "is staged, is a symbolic link, which sinktrain never makes there" in one_line(capsys)
    staging.unlink()
    (staging / "nll").mkdir(parents=True)  # what a killed run leaves: its own names only
    (staging / "results.json").write_text("{}")
    assert run(model_dirs["vanilla"], out, "--sinks", "4") == 0
    assert not staging.exists() and (out / "results.json").is_file() and not out.with_name("eval.lock").exists()


def test_out_that_is_a_file_or_the_current_folder_is_refused(model_dirs, tmp_path, capsys, monkeypatch):
    (tmp_path / "f").write_text("x")
    assert run(model_dirs["vanilla"], tmp_path / "f", "--sinks", "4") == 2
    assert f"--out '{tmp_path / 'f'}' is a file; pass a folder" in one_line(capsys)
    assert (tmp_path / "f").read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)  # the output would replace the folder the process runs in
    assert run(model_dirs["vanilla"], ".", "--sinks", "4") == 2
    assert "--out '.' is the current folder or holds it; pass a folder inside it" in one_line(capsys)
    assert not any(empty.iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == ["empty", "f"]


def test_run_json_records_where_models_and_text_came_from(model_dirs, tmp_path, tokenizer, monkeypatch):
    """Each model's spec, kind and folder (a zoo name: its cached folder), the tokenizer hash, the text's sha256
    (several files: of their sorted [name, sha256] pairs) and the versions; with --configs, the cache the
    recompute baseline re-encodes is the longest s+w, not config.cache."""
    monkeypatch.setenv("SINKTRAIN_CACHE", str(tmp_path / "cache"))  # a zoo model already fetched: no download
    monkeypatch.setitem(zoo.MODELS, "tiny-zoo", {"folder": "Tiny"})
    cached = tmp_path / "cache" / "tiny-zoo" / "Tiny"
    shutil.copytree(model_dirs["vanilla"], cached)
    books = tmp_path / "books"
    books.mkdir()
    texts = {"b.txt": (BOOKS / "austen_persuasion.txt").read_bytes()[:2000], "a.txt": b"A short first book."}
    for name, data in texts.items():
        (books / name).write_bytes(data)
    out = tmp_path / "eval"
    assert main(["stream-eval", str(model_dirs["vanilla"]), "tiny-zoo", "--text", str(books), "--tokens", "100",
                 "--configs", "2+6,1+3", "--baselines", "recompute", "--out", str(out), "--plots", "false",
                 "--tensorboard", "false"]) == 0
    info = json.loads((out / "run.json").read_text())
    pairs = sorted([name, hashlib.sha256(data).hexdigest()] for name, data in texts.items())
    assert info["text_sha256"] == hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
    assert info["versions"] == {"sinktrain": sinktrain.__version__, "torch": torch.__version__,
                                "transformers": transformers.__version__}
    assert info["models"]["vanilla"]["source"] == {"spec": str(model_dirs["vanilla"]), "kind": "folder",
                                                   "location": str(model_dirs["vanilla"].resolve())}
    assert info["models"]["tiny-zoo"]["source"] == {"spec": "tiny-zoo", "kind": "folder", "location": str(cached)}
    assert info["models"]["vanilla"]["tokenizer_hash"] == tokenizer_hash(tokenizer)
    assert info["cache_size"] == info["recompute_cache"] == 8 and info["config"]["cache"] == 1024
    # what other stages read from run.json stays
    assert info["config"]["text"] == str(books) and info["text"]["documents"] == ["a", "b"]
    assert info["models"]["vanilla"]["tokens"] == 100
    footnote = "recompute: each token predicted by a fresh forward over the last 8 tokens."
    assert footnote in (out / "table.md").read_text()

    single = tmp_path / "single"
    assert run(model_dirs["vanilla"], single, "--sinks", "4") == 0
    info = json.loads((single / "run.json").read_text())
    assert info["text_sha256"] == hashlib.sha256(open(BOOK, "rb").read()).hexdigest()
    assert info["cache_size"] == 24 and info["recompute_cache"] is None
    assert "recompute" not in (single / "table.md").read_text()


def test_attention_stats_record_the_tokens_used_and_maps_do_not_need_first_k(model_dirs, tmp_path, capsys):
    """A 10-token stream cuts the 64-token probe: the record says 10; with --first_k 16 there are no statistics
    (and a warning says why), but the attention maps are still drawn."""
    out = tmp_path / "eval"
    assert main(["stream-eval", str(model_dirs["vanilla"]), "--text", BOOK, "--cache", "4", "--sinks", "1",
                 "--tokens", "10", "--out", str(out), "--tensorboard", "false"]) == 0
    assert json.loads((out / "attention_stats.json").read_text())["vanilla"]["tokens"] == 10
    capsys.readouterr()
    out = tmp_path / "few"
    assert main(["stream-eval", str(model_dirs["vanilla"]), "--text", BOOK, "--cache", "4", "--sinks", "1",
                 "--tokens", "10", "--first_k", "16", "--out", str(out), "--tensorboard", "false"]) == 0
    assert json.loads((out / "attention_stats.json").read_text()) == {}
    assert (out / "attention_maps_vanilla.png").is_file() and not (out / "sink_attention.png").exists()
    assert "vanilla: no attention statistics: the probe has 10 tokens" in capsys.readouterr().err


def busy(out, holder: str = "pid 4242 on elsewhere") -> str:
    return (f"sinktrain stream-eval: error: --out {str(out)!r} is being written by another sinktrain process "
            f"({holder}); wait for it to end, or choose another --out")


def test_an_output_another_run_is_writing_is_refused_and_kept(model_dirs, tmp_path, capsys, hold_output):
    out = tmp_path / "eval"
    assert run(model_dirs["vanilla"], out, "--sinks", "0") == 0
    first = snapshot(out)
    capsys.readouterr()
    with hold_output(out):
        assert run(model_dirs["vanilla"], out, "--sinks", "1", "--overwrite") == 2
        assert one_line(capsys) == busy(out)
        assert snapshot(out) == first
    assert run(model_dirs["vanilla"], out, "--sinks", "1", "--overwrite") == 0  # once the other run has ended
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no lock file left beside it


def test_a_second_run_started_while_the_first_computes_is_refused(model_dirs, tmp_path, capsys, monkeypatch):
    """Both runs passed the check of --out before either wrote it: the second cleared the first one's staging
    folder under it, and whichever finished last silently replaced the other's results (both exited 0)."""
    out = tmp_path / "eval"
    real = evaluate_module.run_configuration
    second = []

    def a_second_run_starts(*args, **kwargs):
        if not second:  # (the second run's own configurations compute normally, on the old code)
            second.append(None)
            second[0] = run(model_dirs["vanilla"], out, "--sinks", "1")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "run_configuration", a_second_run_starts)
    assert run(model_dirs["vanilla"], out, "--sinks", "0") == 0
    err = capsys.readouterr().err
    assert second == [2] and busy(out, f"pid {os.getpid()} on {socket.gethostname()}") in err, err
    assert list(json.loads((out / "results.json").read_text())["vanilla"]) == ["0+24"]


def test_a_sigterm_while_overwriting_keeps_the_earlier_output_and_cleans_up(model_dirs, tmp_path, capsys, monkeypatch):
    """A scheduler's SIGTERM is taken as Ctrl-C is: exit 143 in one line, the earlier output as it was, and neither
    the staging folder nor the lock left beside it (the process used to die where it stood and leave both)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Python delivers signals to the main thread only")
    out = tmp_path / "eval"
    assert run(model_dirs["vanilla"], out, "--sinks", "0") == 0
    first = snapshot(out)
    capsys.readouterr()
    before = signal.getsignal(signal.SIGTERM)

    def terminated_midway(*args, **kwargs):
        assert (tmp_path / "eval.tmp-stream-eval").is_dir()  # the new output is being written
        signal.raise_signal(signal.SIGTERM)
        raise AssertionError("the SIGTERM did not stop the run")

    monkeypatch.setattr(evaluate_module, "run_configuration", terminated_midway)
    assert run(model_dirs["vanilla"], out, "--sinks", "1", "--overwrite") == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == "sinktrain stream-eval: terminated"
    assert snapshot(out) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
