#!/usr/bin/env bash
# Dedup benchmark: quality (P/R/F1 on planted near duplicates of real Chinese poems and
# real photos) and speed/RSS vs datasketch, rensa and imagehash, on the same inputs.
# Writes bench/results/dedup.json. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
make build
"$PY" bench/dedup_bench.py
