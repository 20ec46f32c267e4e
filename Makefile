# webspaces: every command runs from the virtual environment that scripts/setup-host.sh makes.
VENV    := .venv
PY      := $(VENV)/bin/python
PYTEST  := $(PY) -m pytest
SOURCES := program dataplane controlplane lxd simplestreams webspaces benchmarks tests setup.py
BENCH_OUT ?= benchmarks/results

.PHONY: help setup build lint format test test-compiled test-pure bench image clean

help:
	@echo "make setup  install Debian packages and .venv (idempotent; root on Debian 12)"
	@echo "make test   setup, lint, the whole suite compiled, then the unit and net tiers pure-Python"
	@echo "make lint   ruff format --check, ruff check, mypy --strict"
	@echo "make bench  run every benchmark scenario, JSON into $(BENCH_OUT)/"
	@echo "make image  build the busybox test image into build/images/ (webspaces images serve --backend directory:build/images)"

setup:
	bash scripts/setup-host.sh

# The Cython extensions, built in place by setup-host.sh: incrementally, so after an edit to a
# .pyx/.pxd or a compiled .py only what changed is recompiled.
build: setup

lint: setup
	$(PY) -m ruff format --check $(SOURCES)
	$(PY) -m ruff check $(SOURCES)
	$(PY) -m mypy

format: setup
	$(PY) -m ruff format $(SOURCES)
	$(PY) -m ruff check --fix $(SOURCES)

# pytest's exit code 5 ("no tests collected") is a failure here, like any other non-zero code.
test-compiled: build
	$(PYTEST) -p no:cacheprovider

# The twins matter in the unit and net tiers; the LXD and e2e tiers run once, compiled.
test-pure: setup
	WEBSPACES_NO_EXTENSIONS=1 $(PYTEST) -p no:cacheprovider -m "not lxd and not e2e"

test: lint test-compiled test-pure

bench: build
	mkdir -p $(BENCH_OUT)
	$(PY) -m benchmarks run all --json-dir $(BENCH_OUT)

# A tiny LXD image from Debian's busybox-static: its init brings eth0 up with udhcpc (reproducible bytes).
image: setup
	PY=$(PY) bash scripts/build-test-image.sh build/images

clean:
	rm -rf build *.egg-info
	find dataplane -name '*.so' -delete -o -name '*.c' -delete
