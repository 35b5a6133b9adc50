import os

import pytest

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

# pytest-xdist hands out whole files (`--dist loadfile`) in collection order (`make test` passes
# --no-loadscope-reorder, which would otherwise put the files with the most tests first). The slowest files go
# first, so that no worker starts a two-minute file while the other has nothing left: the longest-first order
# keeps both cores busy to the end. Seconds per file under `make test` on 2 cores (2026-11-28), slowest first:
SLOWEST_FILES = [
    "train/test_train_distributed.py",   # 162: eight torchrun jobs of two processes
    "stream/test_smollm2.py",            # 111: a real 135M model decoded token by token, fp32 and float64
    "train/test_train_hostile.py",       # 94
    "experiment/test_experiment.py",     # 72
    "experiment/test_experiment_hostile.py",  # 69
    "stream/test_families.py",           # 60: 145 family cases, three caches each
    "export/test_export.py",             # 39
    "generate/test_sink_cache.py",       # 36
    "train/test_train_single.py",        # 34
    "train/test_train_speed.py",         # 30
    "stream/test_sources.py",            # 28
    "experiment/test_experiment_outputs.py",  # 26
]


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return SLOWEST_FILES.index(path) if path in SLOWEST_FILES else len(SLOWEST_FILES)

    items.sort(key=rank)  # stable: the tests inside a file, and the other files, keep their order


@pytest.fixture
def hold_output():
    """`with hold_output(out):` holds out's output lock as another running sinktrain process would: flock treats
    each open() of the lock file apart, so the verb under test, in this process, is refused just the same."""
    import fcntl
    from contextlib import contextmanager

    from sinktrain.util.outputs import lock_path

    @contextmanager
    def hold(out):
        path = lock_path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"pid 4242 on elsewhere\n")
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    return hold


@pytest.fixture
def no_hang():
    """Fails the test after 60 s instead of hanging the suite: reading a FIFO waits for a writer forever."""
    import signal

    def hung(signum, frame):
        raise AssertionError("the test blocked for 60 s (a read of a FIFO waits for a writer forever)")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def odd_marker():
    """`odd_marker(path, kind)` makes `path` a FIFO ("fifo") or JSON nested 200,000 deep ("deep"), which the parser
    cannot take (RecursionError)."""
    def make(path, kind):
        if kind == "fifo":
            os.mkfifo(path)
        else:
            path.write_text("[" * 200_000 + "]" * 200_000)
    return make
