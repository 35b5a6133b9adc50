# Two commands do all the set-up on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install what they need (CPU torch from the local wheel index, pinned so pip
# never pulls a multi-GB CUDA build; on a GPU machine install your CUDA torch first, see README).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint wheel-smoke demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# One pytest-xdist worker per core, whole test files per worker (module fixtures such as the loaded SmolLM2
# are built once), the slowest files first (tests/conftest.py orders them; --no-loadscope-reorder keeps that
# order): on 2 cores the suite takes about half its one-worker time (2026-11-28 on the 2-core development machine:
# 10:21 in the checkout, then 9:37, then 8:08 once the family models' token-by-token decoding was cut by a third;
# 11:10 to 14:58 in fresh-clone CI runs earlier that day; the machine's speed varies by a fifth from run to run).
XDIST := -n auto --dist loadfile --no-loadscope-reorder

# --durations: the ten slowest tests close the log (in CI too), so where the time goes is on record for each run.
test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) --durations=10 tests

# The editing loop: everything except the multi-process (torchrun) tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m "not distributed" tests

lint: $(STAMP)
	$(BIN)/ruff check sinktrain tests benchmarks

# Build the wheel, install it in a fresh venv, run every verb from it outside the checkout.
wheel-smoke:
	PY=$(PY) TORCH_PIN="$(TORCH_PIN)" .ci/wheel-smoke

demo: $(STAMP)
	$(BIN)/sinktrain experiment recipes/experiments/demo-cpu.yaml

clean:
	rm -rf $(VENV) runs
