# Quick start: `make demo` and `make test`. Both bootstrap .venv from pyproject.toml when it is
# missing or older than pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-fast coverage lint format bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cnnlab demo --overwrite  # a second `make demo` resumes and re-reports

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

# Two pytest runs: importing torchvision (which pulls in triton) after TensorFlow is loaded
# segfaults, so the TensorFlow tests and the PyTorch (transfer) tests never share a process
# (each xdist worker is a process of its own run). Every core works (TEST_WORKERS=auto);
# --dist loadgroup keeps each test group of tests/conftest.py on one worker. docs/testing.md
# The TensorFlow half's test files go to a RAM disk where there is one: the study tests commit
# to SQLite hundreds of times, and an fsync to disk made a fake study 3x slower (13.7 s against
# 4.6 s). Not the transfer half: its files took 5.6 GB of RAM there (docs/testing.md).
TEST_WORKERS ?= auto
TEST_TMPDIR ?= $(shell test -d /dev/shm -a -w /dev/shm && echo /dev/shm)
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup
RAMDISK := $(if $(TEST_TMPDIR),TMPDIR=$(TEST_TMPDIR) )
FAST := -m "not slow and not browser and not postgres and not torchrun"

test: lint
	$(RAMDISK)$(PYTEST) --ignore=tests/transfer $(PYTEST_ARGS)
	$(PYTEST) tests/transfer $(PYTEST_ARGS)

# The quick loop: no real training, browser, PostgreSQL or torchrun tests.
test-fast: $(STAMP)
	$(RAMDISK)$(PYTEST) $(FAST) --ignore=tests/transfer $(PYTEST_ARGS)
	$(PYTEST) $(FAST) tests/transfer $(PYTEST_ARGS)

# Line coverage of src/cnnlab over the whole suite (both runs combined); code that the tests
# reach only in child processes (CLI subprocesses, study workers) is not counted.
coverage: $(STAMP)
	rm -f .coverage .coverage.*
	COVERAGE_FILE=.coverage.tf $(RAMDISK)$(PYTEST) --cov=cnnlab --cov-report= --ignore=tests/transfer $(PYTEST_ARGS)
	COVERAGE_FILE=.coverage.transfer $(PYTEST) --cov=cnnlab --cov-report= tests/transfer $(PYTEST_ARGS)
	$(BIN)/python -m coverage combine .coverage.tf .coverage.transfer
	$(BIN)/python -m coverage report --skip-covered --sort=cover

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache .coverage .coverage.*
