"""What a verb prints besides its own output: nothing from its libraries that a user need not act on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


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
