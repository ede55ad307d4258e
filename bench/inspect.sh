#!/usr/bin/env bash
# stats / sql / report throughput on a real document dataset (every chinese-poetry
# poem, one source per collection), against pyarrow computing the same numbers from
# the same shards in the same run. Writes bench/results/inspect.json.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/inspect_run.py "$@"
