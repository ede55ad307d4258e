#!/usr/bin/env bash
# Crawl benchmark: m6corpus crawl vs an aiohttp peer against a local server of the
# real Debian Handbook pages; writes bench/results/crawl.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x target/release/m6corpus ] || make build
"$PY" -c "import aiohttp, pyarrow" 2>/dev/null || "$PY" -m pip install --quiet -r bench/requirements.txt
exec "$PY" bench/crawl_bench.py "$@"
