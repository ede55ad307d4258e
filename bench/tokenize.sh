#!/usr/bin/env bash
# Tokenizer benchmark: jieba-rs vs Python jieba, m6-tokenizer vs HuggingFace tokenizers
# (same WordPiece vocab.txt), image preprocessing vs PIL+numpy; one run, same inputs.
# Writes bench/results/tokenize.json. Needs `make data` and the bench venv.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${M6_DATA_DIR:-data}
PY=${M6_VENV:-.venv}/bin/python
OUT=bench/out/tokenize
mkdir -p "$OUT" bench/results
make build
rm -rf "$OUT/web_photos"
"$PY" bench/lib/web_photos.py "$DATA" "$OUT/web_photos"
target/release/m6-tokenizer-bench --data "$DATA" --out "$OUT" --poem-files "${POEM_FILES:-15}" > "$OUT/rust.json"
"$PY" bench/tokenize_peers.py "$OUT" "$DATA" bench/results/tokenize.json
