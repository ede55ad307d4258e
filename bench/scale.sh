#!/usr/bin/env bash
# Scale-out measurements (issue 15): the text chain at SMALL_MB (100) and SCALE_GB (5) of
# real-text-derived input, dedup of DOCS_1M (1 M) documents over 1, 2 and 4 processes,
# a 10% batch deduplicated --against that corpus vs a full re-dedup, and the image chain
# on IMAGES (5000) captioned JPEGs. Writes bench/results/scale.json. The 5 GB chain takes
# about an hour of CPU and ~20 GB of disk under bench/out/scale; set SCALE_GB=0.5 for a
# quicker pass. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" bench/scale_run.py dedup1m incr chain sizes images image_scale
