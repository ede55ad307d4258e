#!/usr/bin/env bash
# Image samples at 224 px: bytes per sample (JPEG vs raw) and the trainer's loader
# against what the model consumes on the same CPUs (bench/loader_images.py).
# Writes bench/results/loader_images.json. Needs the trainer (make trainer).
set -euo pipefail
cd "$(dirname "$0")/.."
make build >&2
make trainer >&2
.venv/bin/python -P bench/loader_images.py
