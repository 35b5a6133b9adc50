"""`sinktrain` console script. Each stage contributes its verbs through `<stage>/cli.py:register(subparsers)`;
a verb only parses arguments and calls the stage's public entry function. Verbs whose input is a stage config
are declared with `sinktrain.cli_config.add_config_verb` (typed `--config FILE`, `--set KEY=VALUE`, `--help`
from the config's field docstrings).

Errors: bad input (ValueError, OSError incl. FileNotFoundError, `sinktrain.util.errors.UserError`, e.g. a
config value out of range or a failed hub push) is printed as one line and exits 2. Anything else, e.g. a
RuntimeError deep inside training, is an internal error and keeps its traceback. The tokenizers library's failed
writes (a bare Exception ending "(os error N)") count as OSErrors; a full disk's line adds the fix. `--debug` (or
SINKTRAIN_DEBUG=1) shows the traceback of any error. Ctrl-C prints "interrupted" and exits 130 (also while the
stages' modules import, before the verb is known); a SIGTERM (outside training, which stops at a checkpoint) exits
143 after the same clean-up. A reader that closes stdout early (`| head`) ends the verb quietly with 141.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import select
import signal
import sys
import threading

from sinktrain.util.errors import Terminated, UserError
from sinktrain.util.rank import stop_with_launcher
from sinktrain.verbs import VERBS

# Each verb and the stage module that adds it (sinktrain/verbs.py). `sinktrain VERB` imports that stage's CLI and
# config alone, which need no torch or transformers: those load, ~6 s on 2 cores, only once the verb runs.
# `sinktrain --help` lists the verbs from the table, importing no stage.
VERB_STAGES = {verb: stage for verb, (stage, _) in VERBS.items()}

# OSError covers the file system's own answers (not a directory, permission denied, disk full), which name the path.
USER_ERRORS = (ValueError, OSError, UserError)
# The tokenizers library (Rust) reports a failed write as a bare Exception: "No space left on device (os error 28)".
RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)$")


# What `sinktrain --help` opens with (the module docstring is for developers).
DESCRIPTION = ("Pretrain language models with and without learnable attention-sink tokens, and measure what that "
               "does to streaming inference (StreamingLLM). `sinktrain VERB --help` describes each verb.")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser of `verb`'s stage alone. Anything else (`--help`, `--version`, a mistyped verb) gets the verbs'
    names and help from the table: enough to list them or to say which one was meant, with no stage imported."""
    import sinktrain

    parser = argparse.ArgumentParser(prog="sinktrain", description=DESCRIPTION)
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    parser.add_argument("--version", action="version", version=f"sinktrain {sinktrain.__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    if verb in VERB_STAGES:
        importlib.import_module(VERB_STAGES[verb]).register(sub)
    else:
        for name, (_, text) in VERBS.items():
            sub.add_parser(name, help=text)
    return parser


def user_message(e: BaseException) -> str:
    """The one line a user error prints. A full disk's own line ("[Errno 28] No space left on device") names no
    fix; every verb writes its outputs beside the earlier ones and renames them in, so running again is safe."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"{e}; free space on that disk (or write the output to another one) and run again"
    return str(e)


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (Linux reports POLLERR on its writing end), so that a
    BrokenPipeError from elsewhere (a socket, a worker's pipe) is still reported as the error it is."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no stdout, or one with no file descriptor
        return False


def leave_closed_stdout() -> int:
    """The status of a verb whose reader stopped reading: what the shell reports for a program killed by SIGPIPE
    (Python ignores that signal). stdout goes to /dev/null first, or the exit's own flush of the text still
    buffered would fail again with a message."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def run_verb(args) -> int:
    """args.func(args), with the tokenizers library's failed writes raised as the OSError they are."""
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        found = RUST_OS_ERROR.search(str(e))
        if type(e) is not Exception or found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code)) from e


# Verbs that handle SIGTERM themselves: training stops at a step with its checkpoint (train/module.py). A study
# takes it like the other verbs: its training puts its own handler in place while it fits (Lightning restores ours
# afterwards), so a SIGTERM during training stops at a checkpoint and one during any other stage cleans up.
OWN_SIGTERM = {"train"}


def _raise_terminated(signum, frame):
    raise Terminated()


def _not_deepspeed_cpu_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Setting accelerator to CPU.")


def quiet_deepspeed_cpu_notice() -> None:
    """DeepSpeed warns on import, when it finds no GPU, that it falls back to the CPU: a line on stdout before
    every verb's output on a CPU machine, where that is expected. Drop that one record. The filter goes on
    DeepSpeed's own logger ("DeepSpeed", which its import configures but keeps), so it also holds in the torchrun
    workers (they run main)."""
    logger = logging.getLogger("DeepSpeed")
    if _not_deepspeed_cpu_notice not in logger.filters:
        logger.addFilter(_not_deepspeed_cpu_notice)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_deepspeed_cpu_notice()
    debug = "--debug" in argv or bool(os.environ.get("SINKTRAIN_DEBUG"))
    argv = [a for a in argv if a != "--debug"]  # accepted anywhere on the line
    try:
        # imports the verb's CLI and config (a fraction of a second, in which Ctrl-C can still land)
        parser = build_parser(argv[0] if argv else None)
    except KeyboardInterrupt:
        if debug:
            raise
        print("sinktrain: interrupted", file=sys.stderr)  # (the verb is not parsed yet)
        return 130
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "config_verb", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    verb = " ".join(a for a in (args.verb, getattr(args, "data_verb", None)) if a)
    # (In the main thread only, where Python delivers signals; a caller's own handler comes back afterwards.)
    takes_sigterm = args.verb not in OWN_SIGTERM and threading.current_thread() is threading.main_thread()
    earlier = signal.signal(signal.SIGTERM, _raise_terminated) if takes_sigterm else None
    stop_with_launcher()
    try:
        code = run_verb(args)
        if sys.stdout is not None:  # text still buffered meets a closed pipe here, not in the exit's own flush
            sys.stdout.flush()
        return code
    except USER_ERRORS as e:
        if debug:
            raise
        if isinstance(e, BrokenPipeError) and stdout_reader_gone():  # `| head`: the reader has what it wanted
            return leave_closed_stdout()
        print(f"sinktrain {verb}: error: {user_message(e)}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt as e:
        # Ctrl-C is the user's choice, not a bug: no traceback. Verbs clean up on the way out (prepare removes its
        # temporary shards); 130 is the shell's status for a SIGINT.
        if debug:
            raise
        if isinstance(e, Terminated):
            print(f"sinktrain {verb}: terminated", file=sys.stderr)
            return 143  # the shell's status for a SIGTERM
        print(f"sinktrain {verb}: interrupted", file=sys.stderr)
        return 130
    finally:
        if takes_sigterm:
            signal.signal(signal.SIGTERM, earlier)


if __name__ == "__main__":
    sys.exit(main())
