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
# The JupyterLab extension: TypeScript in labextension/, built into the package (git-ignored)
# and linked into the venv, so the venv's JupyterLab loads what was just built.
LABEXT := labextension
LABEXT_NAME := jupyter-ext-labextension
LABEXT_OUT := jupyter_ext/labextension
LABEXT_LINK := $(VENV)/share/jupyter/labextensions/$(LABEXT_NAME)
LABEXT_SOURCES := $(LABEXT)/package.json $(LABEXT)/tsconfig.json \
	$(LABEXT)/install.json \
	$(wildcard $(LABEXT)/src/*.ts $(LABEXT)/src/chart/*.ts $(LABEXT)/style/*.* $(LABEXT)/style/icons/*.svg $(LABEXT)/scripts/*.js)

.PHONY: install test demo lab bench bench-mlflow lint format clean cluster cluster-stop

install: .stamp-venv .stamp-kserve-sdk .stamp-chromium .stamp-labext-link

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The extension is built first (order only: a TypeScript change does not reinstall), so
# the editable install finds the assets and never runs npm itself.
.stamp-venv: $(BIN)/python pyproject.toml | .stamp-labext
	echo "$(TORCH_PIN)" > $(VENV)/constraints.txt
	$(BIN)/pip install -q -c $(VENV)/constraints.txt "$(TORCH_PIN)"
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e ".[dev]"
	@touch $@

# KServe's SDK, test-only: tests/test_kserve.py validates the KServe manifests against its
# generated models. kserve pins psutil<6, protobuf<7, python-dateutil<3, ... that would move
# the venv's versions, so it goes beside the venv without its dependencies (not into it:
# `pip check` stays clean); the tests load only its models, which need six and urllib3.
KSERVE_SDK := $(VENV)/kserve-sdk
.stamp-kserve-sdk: .stamp-venv
	rm -rf $(KSERVE_SDK).tmp
	$(BIN)/pip install -q --no-deps --target $(KSERVE_SDK).tmp kserve==0.21.0
	rm -rf $(KSERVE_SDK) && mv $(KSERVE_SDK).tmp $(KSERVE_SDK)
	@touch $@

# Debian's Chromium drives the browser tests (Playwright never downloads a browser here).
.stamp-chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ -z "$(APT_GET)" ]; then echo "apt-get not found: install Chromium at /usr/bin/chromium"; exit 1; fi; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	fi
	@touch $@

# Node and npm build the extension: Debian's packages when absent (Node 18 or newer).
.stamp-node:
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  if [ -z "$(APT_GET)" ]; then echo "apt-get not found: install Node.js 18+ and npm"; exit 1; fi; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; \
	fi
	@node -e 'if (+process.versions.node.split(".")[0] < 18) { console.error("Node " + process.version + " is too old to build the JupyterLab extension: it needs 18 or newer"); process.exit(1); }'
	@touch $@

# Exactly the committed lock file.
.stamp-npm: $(LABEXT)/package-lock.json $(LABEXT)/package.json | .stamp-node
	cd $(LABEXT) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.stamp-labext: .stamp-npm $(LABEXT_SOURCES)
	cd $(LABEXT) && npm run --silent build
	@touch $@

# What `jupyter labextension develop --overwrite .` does: the venv's labextensions entry
# is a link to the build output (the editable install leaves a copy there; replace it).
.stamp-labext-link: .stamp-labext .stamp-venv
	@mkdir -p $(dir $(LABEXT_LINK))
	rm -rf $(LABEXT_LINK) && ln -s $(CURDIR)/$(LABEXT_OUT) $(LABEXT_LINK)
	@$(BIN)/jupyter labextension list 2>&1 | grep -q "$(LABEXT_NAME) .*enabled.*OK" || \
	  { $(BIN)/jupyter labextension list; echo "$(LABEXT_NAME) is not enabled"; exit 1; }
	@touch $@

test: install
	$(BIN)/python -m pytest

# examples/scale_out_ray.ipynb runs against a Ray head of the demo's own: free ports, a
# temp dir under /tmp (Ray's socket paths under it are capped), stopped by its process
# group on the way out, also when a notebook fails or on Ctrl-C; a `make cluster` head is
# never touched. A head that cannot start fails the demo before any notebook runs.
demo: install
	@tmp=$$(mktemp -d /tmp/jx-demo.XXXXXX); \
	trap '$(BIN)/python -m jupyter_ext.cluster.head stop --temp-dir '"$$tmp"'; rm -rf '"$$tmp" EXIT; \
	ports=($$($(BIN)/python -c 'from jupyter_ext.cluster.head import free_port as f; print(f(), f())')); \
	$(BIN)/python -m jupyter_ext.cluster.head start --temp-dir $$tmp \
	  --dashboard-port $${ports[0]} --client-port $${ports[1]} --num-cpus 2 && \
	JUPYTER_EXT_CLUSTER=http://127.0.0.1:$${ports[0]} \
	JUPYTER_EXT_CLUSTER_CLIENT=ray://127.0.0.1:$${ports[1]} \
	  $(BIN)/python examples/run_examples.py

lab: install
	$(BIN)/jupyter lab --notebook-dir=examples

bench: install
	$(BIN)/python -m benchmarks

# mlflow for bench_serving's `mlflow models serve` row, apart from the venv (its many
# dependencies must not move the venv's): pinned to the venv's versions, so the copies it
# installs beside itself are the same; the benchmark puts it on its mlflow processes' path.
bench-mlflow: .bench/mlflow
.bench/mlflow: | .stamp-venv
	mkdir -p .bench && rm -rf $@.tmp
	$(BIN)/pip list --format=freeze --exclude-editable > .bench/constraints.txt
	$(BIN)/pip install -q --target $@.tmp -c .bench/constraints.txt mlflow
	mv $@.tmp $@

# A local Ray head for trying %cluster: dashboard on 127.0.0.1:8265, Ray Client on 10001,
# its own temp dir (.ray/), started in a session of its own and stopped by its process
# group, so `make cluster-stop` ends exactly this head (never `ray stop`, which ends every
# Ray on the machine). RAY_AUTH_MODE=token make cluster keeps Ray's token authentication on.
RAY_TEMP ?= .ray
cluster: .stamp-venv
	$(BIN)/python -m jupyter_ext.cluster.head start --temp-dir $(RAY_TEMP) --dashboard-port 8265 --client-port 10001

cluster-stop:
	$(BIN)/python -m jupyter_ext.cluster.head stop --temp-dir $(RAY_TEMP)

lint: .stamp-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: .stamp-venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .stamp-* .pytest_cache $(LABEXT)/node_modules $(LABEXT)/lib \
	  $(LABEXT)/tsconfig.tsbuildinfo $(LABEXT_OUT)
