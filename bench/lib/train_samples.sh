#!/usr/bin/env bash
# Makes the trainer benchmarks' sample datasets with the real pipeline (shared by
# bench/train.sh and bench/train_gpu.sh):
#   bench/lib/train_samples.sh DIR N_POEMS COPIES TEXT_FILES
# DIR/samples: 32 px images in 8 px patches (trainer/examples/bench_samples: ingest,
# extract, tokenizer train, tokenize); DIR/samples-224: the same inputs tokenized at
# the tokenize stage's default 224 px in 16 px patches.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$1 n_poems=$2 copies=$3 text_files=$4
[ -x target/release/m6corpus ] || { echo "target/release/m6corpus is missing: make build" >&2; exit 1; }
[ -x target/release/examples/bench_samples ] || make trainer >&2
target/release/examples/bench_samples "$dir" "$n_poems" "$copies" "$text_files" 32 8 128 8000 >&2
target/release/m6corpus tokenize --input "$dir/docs" --input "$dir/web/pairs" --input "$dir/photo-pairs" \
  --output "$dir/samples-224" --tokenizer "$dir/vocab.txt" --max-len 128 --quiet --log warn >&2
