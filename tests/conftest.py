import os

# Keep the suite offline and deterministic whatever the machine's environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under pytest-xdist (`make test` runs one worker per core), each worker gets its share of the cores: torch's
# default of one intra-op thread per core would put cores x workers busy threads on the machine, and their
# spin-waits slow everything. Subprocesses the tests start (CLI verbs, torchrun) inherit the same share.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))
