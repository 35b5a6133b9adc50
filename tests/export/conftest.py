import os
import sys
from pathlib import Path

import pytest
from torchrun_helpers import free_port, run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def zero2_token_run(tmp_path_factory) -> Path:
    """A tiny `token`-sink model (64-token sequences, global batch 4) trained by 2 DeepSpeed ZeRO-2 ranks on CPU
    under torchrun; checkpoints at steps 4 and 8."""
    from sinktrain.data import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("zero2")
    data = prepare(PrepareConfig(sources=[str(REPO / "data/books/austen_persuasion.txt")], out_dir=str(root / "data"),
                                 txt_documents="paragraphs", val_fraction=0.05, progress=False))
    run_dir = root / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "sinktrain", "train", "--config", str(REPO / "recipes/tiny-cpu.yaml"), "--run-dir", str(run_dir),
           "--set", f"data.dir={data}", "--set", "trainer.strategy=deepspeed", "--set", "trainer.zero_stage=2",
           "--set", "model.sink={kind: token, num_tokens: 1}", "--set", "trainer.max_steps=8",
           "--set", "model.max_seq_len=64", "--set", "trainer.global_batch_size=4",
           "--set", "trainer.micro_batch_size=2",
           "--set", "checkpoint.every=4", "--set", "checkpoint.keep_last=0", "--set", "trainer.val_every=0",
           "--set", "logging.sink_score_every=0"]
    proc = run(cmd, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return run_dir


def pytest_collection_modifyitems(items):
    """Tests on the ZeRO-2 run start torchrun (2 processes): `make test-fast` leaves them out."""
    for item in items:
        if "zero2_token_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.distributed)
