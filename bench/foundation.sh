#!/usr/bin/env bash
# Ingest and verify throughput on real Chinese text (all chinese-poetry poems as JSONL),
# peak RSS at 1x and 10x input, and a Python peer (json + pyarrow ParquetWriter, what
# a datatrove-style Python pipeline does) on the same input in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/foundation.py "$@"
