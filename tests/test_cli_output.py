"""What a verb prints besides its own output: nothing from its libraries that a user need not act on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sinktrain.verbs import VERBS

REPO = Path(__file__).resolve().parents[1]


def fresh_cli(argv: list[str], modules: tuple[str, ...], cwd=None) -> subprocess.CompletedProcess:
    """`sinktrain ARGV` in a fresh interpreter; its stdout ends with a line "STATUS [the `modules` it imported]"."""
    code = ("import sys; from sinktrain.cli import main\ntry: code = main(sys.argv[2:])\nexcept SystemExit as e: "
            "code = e.code\nprint(code, sorted(m for m in sys.argv[1].split(',') if m in sys.modules))")
    return subprocess.run([sys.executable, "-c", code, ",".join(modules), *argv], capture_output=True, text=True,
                          cwd=cwd)


def output_of(code: str) -> str:
    """stdout and stderr together (DeepSpeed's logger writes to stdout)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # a machine without a GPU, whatever this one has
    return subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, check=True).stdout


def test_the_deepspeed_cpu_notice_is_dropped_and_its_other_warnings_kept():
    """DeepSpeed warns on import that it found no GPU (train, export and the model loaders import it); on a CPU
    machine that line came before every verb's output, on stdout."""
    pytest.importorskip("deepspeed")
    notice = "Setting accelerator to CPU."
    assert notice in output_of("import deepspeed")  # what a verb printed before
    err = output_of("from sinktrain.cli import main; main(['info', '--preset', 'tiny']); import deepspeed; "
                    "from deepspeed.utils import logger; logger.warning('another warning')")
    assert notice not in err and "another warning" in err


def test_ctrl_c_while_the_stages_import_is_the_interrupted_line(monkeypatch, capsys):
    """build_parser imports the verb's stage (seconds); a Ctrl-C then printed KeyboardInterrupt's traceback."""
    import sinktrain.cli

    def interrupted(verb=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(sinktrain.cli, "build_parser", interrupted)
    assert sinktrain.cli.main(["generate", "model", "--prompt", "hi"]) == 130
    assert capsys.readouterr().err == "sinktrain: interrupted\n"
    with pytest.raises(KeyboardInterrupt):  # --debug shows where it stopped, as later in the run
        sinktrain.cli.main(["generate", "model", "--prompt", "hi", "--debug"])


def test_a_closed_stdout_ends_the_verb_quietly(monkeypatch, capsys):
    """It was "error: [Errno 32] Broken pipe", exit 2, or (text still buffered at the exit) Python's "Exception
    ignored ... BrokenPipeError" and exit 120."""
    from sinktrain.cli import main

    read, write = os.pipe()
    os.close(read)  # as after `| head -c 5` has its bytes
    # Block-buffered, as Python's own stdout on a pipe; set in the test, since capsys sets its own when it starts.
    stdout = open(write, "w", encoding="utf-8")
    monkeypatch.setattr("sys.stdout", stdout)
    assert main(["info", "--preset", "tiny"]) == 141  # what a shell reports for a program SIGPIPE ended
    assert capsys.readouterr().err == ""
    stdout.write("x" * 100)
    stdout.flush()  # stdout is /dev/null now: the exit's flush cannot fail again
    stdout.close()


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch, capsys):
    import sinktrain.cli

    def push(args):
        raise BrokenPipeError(32, "Broken pipe")  # e.g. a socket the hub closed

    monkeypatch.setattr(sinktrain.cli, "run_verb", push)
    assert sinktrain.cli.main(["info", "--preset", "tiny"]) == 2
    assert capsys.readouterr().err == "sinktrain info: error: [Errno 32] Broken pipe\n"


def test_the_top_help_opens_with_what_sinktrain_does(capsys):
    """It opened with the module docstring's developer notes ('Each stage contributes its verbs through ...')."""
    import sinktrain.cli

    with pytest.raises(SystemExit) as exit_:
        sinktrain.cli.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "learnable attention-sink tokens" in out and "register(subparsers)" not in out


def test_a_verb_imports_its_own_stage_alone():
    """Every verb imported every stage first: ~7 s of torch, transformers, Lightning and lm-eval on 2 cores before
    `sinktrain data prepare` (which needs none of them) read its first byte. Now a verb's parser is built from the
    stage that adds it, and the table saying which stage that is lists every verb that help lists."""
    import argparse

    import sinktrain.cli as cli

    def verbs(parser) -> set[str]:
        return set(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)

    assert verbs(cli.build_parser()) == set(cli.VERB_STAGES)
    for verb in cli.VERB_STAGES:
        assert verb in verbs(cli.build_parser(verb))  # added by the one stage the table names
    out = fresh_cli(["data", "info", "no-such-folder"], ("torch", "transformers", "lightning", "lm_eval"))
    assert out.stdout.strip() == "2 []", out.stdout + out.stderr
    assert "no-such-folder" in out.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["trian", "--config", "x.yaml"]])
def test_version_help_and_a_mistyped_verb_load_no_stage(argv):
    """`sinktrain --help` imported every stage to list the verbs (~10 s on 2 cores), and so did a mistyped verb
    before argparse named the choices. The verbs and their help now come from sinktrain/verbs.py."""
    import sinktrain

    out = fresh_cli(argv, ("torch", "transformers", "numpy"))
    if argv == ["--version"]:
        assert out.stdout.splitlines() == [f"sinktrain {sinktrain.__version__}", "0 []"]
    elif argv == ["--help"]:
        assert out.stdout.splitlines()[-1] == "0 []", out.stdout
        listed = " ".join(out.stdout.split())  # argparse wraps the help column
        for verb, (_, text) in VERBS.items():
            assert f"{verb} {' '.join(text.split())}" in listed, verb
    else:
        assert out.stdout.splitlines() == ["2 []"], out.stdout
        assert "invalid choice: 'trian'" in out.stderr and "'train'" in out.stderr, out.stderr


def test_each_stage_adds_its_verbs_with_the_tables_help():
    import argparse

    import sinktrain.cli as cli
    from sinktrain.verbs import verb_help

    for verb in cli.VERB_STAGES:
        sub = next(a for a in cli.build_parser(verb)._actions if isinstance(a, argparse._SubParsersAction))
        shown = {action.dest: action.help for action in sub._choices_actions}
        assert shown[verb] == verb_help(verb), verb


REFUSED_BEFORE_TORCH = {  # argv -> what its one error line names
    ("train", "--config", "recipes/tiny-cpu.yaml", "--set", "trainer.max_steps=ten"): "trainer.max_steps",
    ("info", "--preset", "pythia-1b"): "unknown preset 'pythia-1b'; choose one of tiny,",
    ("info", "--preset", "tiny", "--sink-kind", "sinks"): "unknown sink kind 'sinks'; choose one of none,",
}


@pytest.mark.parametrize("argv", [[verb, "--help"] for verb in VERBS] + [list(argv) for argv in REFUSED_BEFORE_TORCH])
def test_a_verbs_help_and_a_refused_config_load_no_torch(argv):
    """Each verb's --help, and a config value refused by its type, took 5-9 s on 2 cores: every stage's config
    imported the stage's package, and with it torch and transformers (`info`: the model package, which registers
    the sink architecture with transformers)."""
    out = fresh_cli(argv, ("torch", "transformers", "lightning"), cwd=REPO)
    if argv[-1] == "--help":
        assert out.stdout.splitlines()[-1] == "0 []", out.stdout[-500:] + out.stderr
        assert f"usage: sinktrain {argv[0]}" in out.stdout
    else:
        assert out.stdout.splitlines() == ["2 []"], out.stdout + out.stderr
        assert REFUSED_BEFORE_TORCH[tuple(argv)] in out.stderr.strip().splitlines()[-1], out.stderr


def test_train_refuses_a_foreign_run_dir_or_a_bad_setting_before_loading_lightning(tmp_path):
    """train's checks of the run dir, the batch geometry and the CUDA-only levers ran after Lightning and DeepSpeed
    had loaded (6 s on 2 cores); they need neither, and the user's folder stays as it was."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    train = ["train", "--config", "recipes/tiny-cpu-deepspeed.yaml", "--set", f"data.dir={tmp_path / 'data'}"]
    refused = {  # the data is never read: these come first
        ("--run-dir", str(mine)): f"run dir '{mine}' is not empty and not a sinktrain run (it holds 'notes.txt')",
        ("--run-dir", str(tmp_path / "run"), "--set", "trainer.devices=4"):
            "world size 4 × micro_batch_size 2 does not divide global_batch_size 4",
        ("--run-dir", str(tmp_path / "run"), "--set", "optim.impl=fused_adam"):
            "optim.impl fused_adam runs on CUDA only and this run trains on the CPU; use optim.impl auto",
    }
    for argv, line in refused.items():
        out = fresh_cli([*train, *argv], ("lightning", "deepspeed"), cwd=REPO)
        assert out.stdout.splitlines()[-1] == "2 []", out.stdout + out.stderr
        assert line in out.stderr.strip().splitlines()[-1], out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_stream_eval_refuses_a_bad_value_before_loading_torch(tmp_path):
    """A cache no larger than its sinks was refused only inside evaluate(), after torch and transformers had loaded
    (5 s); the checks that read no file now run before those imports."""
    argv = ["stream-eval", "some-model", "--text", "book.txt", "--cache", "4", "--sinks", "8", "--out", "o"]
    out = fresh_cli(argv, ("torch", "transformers"), cwd=tmp_path)
    assert out.stdout.splitlines() == ["2 []"], out.stdout + out.stderr
    assert out.stderr.strip().splitlines()[-1] == ("sinktrain stream-eval: error: sink count s=8 is not below the "
                                                   "cache size C=4; w = C - s must be at least 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("verb", ["generate", "chat", "streameval"])
def test_the_generation_verbs_refuse_a_bad_cache_before_loading_torch(verb, tmp_path):
    """Their configs' check() ran inside the verbs' modules, after torch and transformers had loaded (7.5 s)."""
    argv = [verb, "some-model", "--cache", "4", "--sinks", "8",
            *{"generate": ["--prompt", "Once"], "chat": [], "streameval": ["--out", "o"]}[verb]]
    out = fresh_cli(argv, ("torch", "transformers"), cwd=tmp_path)
    assert out.stdout.splitlines() == ["2 []"], out.stdout + out.stderr
    assert out.stderr.strip().splitlines()[-1] == (f"sinktrain {verb}: error: the cache (4 entries) must be larger "
                                                   f"than the sink count (8); raise --cache above --sinks")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


MISSING_MODEL = {  # verb -> the rest of its argv after the model
    "stream-eval": ["--text", "book.txt", "--out", "o"],
    "zeroshot": ["--tasks", "piqa", "--out", "o"],
    "generate": ["--prompt", "Once"],
    "chat": [],
    "streameval": ["--out", "o"],
}


@pytest.mark.parametrize("verb", list(MISSING_MODEL))
def test_a_mistyped_model_is_refused_before_loading_torch(verb, tmp_path):
    """Model sources were resolved in sinktrain/model/, whose package loads torch and transformers: a model that
    does not exist was refused after 4.5-5.3 s on 2 cores (sinktrain/model_source.py now)."""
    out = fresh_cli([verb, "./no-such-model", *MISSING_MODEL[verb]], ("torch", "transformers"), cwd=tmp_path)
    assert out.stdout.splitlines() == ["2 []"], out.stdout + out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(
        f"sinktrain {verb}: error: model './no-such-model' does not exist; pass a model folder"), out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []

