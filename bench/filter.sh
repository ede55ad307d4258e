#!/usr/bin/env bash
# Filter benchmark: MB/s per core for the default text rule set and for the LM rule
# alone, images/s for the image rules, each beside a pure-Python implementation of the
# same rules (bench/filter_peer.py) run on the same input. Writes bench/results/filter.json,
# and bench/results/jpeg_damage.json (bench/jpeg_damage.py).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/release/m6corpus ] || make build
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p bench/results
"$PY" bench/filter_bench.py "$@"
# JPEGs damaged mid-stream: what the filter drops beside Pillow and libjpeg-turbo.
exec "$PY" bench/jpeg_damage.py
