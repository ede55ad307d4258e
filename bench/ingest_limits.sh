#!/usr/bin/env bash
# Peak RSS of ingesting a .jsonl.gz that holds one huge line (300 MiB and 1 GiB of real
# poem text) among ordinary ones: ours (the line goes to errors/ past max_record_mb,
# never held whole) against the Python reader every JSONL pipeline uses (gzip + json).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/ingest_limits.py "$@"
