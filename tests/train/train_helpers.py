"""Helpers for the training tests: paths, a free port, and torchrun launchers (single- and two-node)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from torchrun_helpers import finish, free_port, run

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
BOOKS = REPO / "data" / "books"


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("SINKTRAIN_FAULT", None)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def train_args(recipe: str, data_dir: Path, run_dir: Path, *sets: str, resume: str = "auto") -> list[str]:
    args = ["-m", "sinktrain", "train", "--config", str(RECIPES / recipe), "--run-dir", str(run_dir),
            "--resume", resume, "--set", f"data.dir={data_dir}"]
    for s in sets:
        args += ["--set", s]
    return args


def torchrun(args: list[str], *, nproc: int = 2, env: dict | None = None, timeout: int = 300,
             log: Path | None = None) -> subprocess.CompletedProcess:
    """One single-node torchrun job; returns the finished process (stdout+stderr in .stdout)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    proc = run(cmd, timeout=timeout, cwd=REPO, env=env or subprocess_env())
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    return proc


def torchrun_two_nodes(args: list[str], *, env: dict | None = None,
                       timeout: int = 300) -> list[subprocess.CompletedProcess]:
    """Two `torchrun --nnodes 2 --node_rank {0,1}` processes (1 rank each) on 127.0.0.1: one job, world size 2."""
    port = free_port()
    procs = []
    for node_rank in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node_rank),
               "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port), *args]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env or subprocess_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return finish(procs, timeout)


def ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}"
