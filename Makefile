# Two commands: `make test` and `make demo`. Everything they need is installed here,
# into .venv in this repository; stamps make a re-run skip what is already done.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The dev environment pins the CPU build of torch that installs from the local wheel;
# without the pin a dependency could pull a multi-GB CUDA build onto a CPU machine.
TORCH_PIN := torch==2.13.0
APT_GET := $(shell command -v apt-get 2>/dev/null)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install test demo lab bench lint format clean

install: .stamp-venv .stamp-chromium

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

.stamp-venv: $(BIN)/python pyproject.toml
	echo "$(TORCH_PIN)" > $(VENV)/constraints.txt
	$(BIN)/pip install -q -c $(VENV)/constraints.txt "$(TORCH_PIN)"
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e ".[dev]"
	@touch $@

# Debian's Chromium drives the browser tests (Playwright never downloads a browser here).
.stamp-chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ -z "$(APT_GET)" ]; then echo "apt-get not found: install Chromium at /usr/bin/chromium"; exit 1; fi; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	fi
	@touch $@

test: install
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python examples/run_examples.py

lab: install
	$(BIN)/jupyter lab --notebook-dir=examples

bench: install
	$(BIN)/python -m benchmarks

lint: .stamp-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: .stamp-venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .stamp-* .pytest_cache
