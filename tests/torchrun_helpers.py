"""Launching torchrun from a test: a free port, and waiting that never leaves workers behind.

torchrun runs its workers in sessions of their own, so SIGKILL on the launcher (what `subprocess.run` does
at its timeout) leaves them training after the test has failed, on a 2-core machine. SIGTERM lets torchrun
stop them first."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finish(procs: list[subprocess.Popen], timeout: float) -> list[subprocess.CompletedProcess]:
    """Wait for each launcher (text-mode pipes). Past `timeout`, SIGTERM every one still running, SIGKILL
    after a grace period, and raise the TimeoutExpired."""
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err or ""))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
    return done


def run(cmd: list[str], *, timeout: float, **popen) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True, timeout=...)` that stops a launcher's workers too."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    return finish([proc], timeout)[0]
