#!/usr/bin/env bash
# m6-train on a CUDA GPU: throughput and utilisation against PyTorch eager, plus the
# checks that only a GPU can run (bf16 path trains, stop/resume, fresh-process load).
#
# Runs on a machine with an NVIDIA GPU and torch installed for `python3` (the device
# machine: torch 2.11.0+cu130). Nothing is built there: m6-train is built here
# (`make trainer`) and carried, and libtorch is taken from that machine's torch
# through LD_LIBRARY_PATH. The sample datasets come from trainer/examples/bench_samples
# + `m6corpus tokenize` (bench/train.sh makes the same ones): DATA/samples (32 px
# images) and DATA/samples-224 (224 px, 196 patches an image).
#
#   1. throughput: m6-train and the same model in PyTorch eager (bf16 autocast,
#      torch.optim.AdamW) on samples-224, at the CPU bench's size (d256, 4 layers,
#      batch 32) and at a base size (d768, 12 layers, batch 64); tokens/s over the
#      steps after the warm-up ones; GPU utilisation (NVML, bench/gpu_sampler.py) over
#      the same seconds;
#   2. the loader alone on that machine's cores (headroom over the GPU's appetite);
#   3. CUDA checks on the default tiny model: 40 steps straight vs 20 + --resume 20
#      (weights compared), the same 40 steps twice (run-to-run spread of CUDA kernels),
#      and --eval-only in a fresh process.
# Everything lands in $RUNS; bench/train_gpu_report.py sums it up into
# $RUNS/train_gpu.json, copied to bench/results/train_gpu.json when RUNS is the default.
# Without a CUDA GPU it exits at once (`make bench` runs every bench/*.sh), and
# bench/results/train_gpu.json keeps the last GPU run's figures; DEVICE=cpu forces a
# dry run on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/m6-train}
DATA=${DATA:-bench/out/gpu/pipeline}
RUNS=${RUNS:-bench/out/train_gpu}
# The project's venv where there is one (its torch is the one m6-train was built
# against), else the python3 that holds torch (the device machine).
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
DEVICE=${DEVICE:-cuda}  # the peer's; DEVICE=cpu tries the script out on a machine without a GPU
if [ "$DEVICE" = cuda ] && ! $PY -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "train_gpu: no CUDA GPU here, skipped (bench/results/train_gpu.json holds the last GPU run)" >&2
  exit 0
fi
# Timed steps after WARM untimed ones (multiples of 10, the log interval): the first
# steps of each new batch shape load CUDA kernels lazily (stalls of 0.1-2 s were seen).
SMALL_WARM=${SMALL_WARM:-100}
SMALL_STEPS=${SMALL_STEPS:-600}
BASE_WARM=${BASE_WARM:-50}
BASE_STEPS=${BASE_STEPS:-250}
# Rounds of the four throughput runs, alternating; the report keeps each side's best
# and lists every round (machines differed by up to 27% from one start to the next).
ROUNDS=${ROUNDS:-2}
CHECKS=${CHECKS:-1}
rm -rf "$RUNS"
mkdir -p "$RUNS"
if [ ! -d "$DATA/samples-224" ]; then
  # The same sample datasets as bench/train.sh, smaller (4 copies of the image inputs).
  bench/lib/train_samples.sh "$DATA" 30000 4 8 || exit 1
fi

TORCH_LIB=$($PY -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || exit 1
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")'
  nproc
} > "$RUNS/machine.txt" 2>&1
cat "$RUNS/machine.txt"

SMALL=(--set model.d_model=256 --set model.n_layers=4 --set model.n_heads=4 --set model.d_ff=1024 --set batch_size=32 --set model.max_len=256)
BASE=(--set model.d_model=768 --set model.n_layers=12 --set model.n_heads=12 --set model.d_ff=3072 --set batch_size=64 --set model.max_len=256)
PEER_SMALL=(--d-model 256 --n-layers 4 --n-heads 4 --d-ff 1024 --batch-size 32 --max-len 256)
PEER_BASE=(--d-model 768 --n-layers 12 --n-heads 12 --d-ff 3072 --batch-size 64 --max-len 256)

# traced NAME CMD...: runs CMD (90 s at most) under a utilisation trace; stdout to NAME.json.
traced() {
  local name=$1
  shift
  $PY -P bench/gpu_sampler.py 0.1 > "$RUNS/smi-$name.csv" &
  local smi=$!
  echo "== $name" >&2
  timeout 90 "$@" > "$RUNS/$name.json" 2> "$RUNS/$name.err"
  echo $? > "$RUNS/$name.rc"
  kill -TERM $smi
  wait $smi 2>/dev/null
  tail -n 2 "$RUNS/$name.err" >&2
}

# m6 runs: WARM steps, the timed ones, then one more step that evaluates and writes the
# checkpoint (left out of the timing). Both trainers read the loss every 10 steps.
m6() {
  local name=$1 warm=$2 steps=$3
  shift 3
  traced "$name" "$BIN" --input "$DATA/samples-224" --output "$RUNS/$name" --steps "$((warm + steps + 1))" "$@" \
    --set log_every=10 --set eval_every="$((warm + steps + 1))" --set checkpoint_every=0 --set warmup_steps=3 --log warn
}
peer() {
  local name=$1 warm=$2 steps=$3
  shift 3
  traced "$name" $PY -P bench/train_peer.py --mode train --device "$DEVICE" --input "$DATA/samples-224" --warmup "$warm" --steps "$steps" --log-every 10 "$@"
}
for r in $(seq 1 "$ROUNDS"); do
  m6 m6_small_r$r "$SMALL_WARM" "$SMALL_STEPS" "${SMALL[@]}"
  peer peer_small_r$r "$SMALL_WARM" "$SMALL_STEPS" "${PEER_SMALL[@]}"
  m6 m6_base_r$r "$BASE_WARM" "$BASE_STEPS" "${BASE[@]}"
  peer peer_base_r$r "$BASE_WARM" "$BASE_STEPS" "${PEER_BASE[@]}"
done

echo "== loader alone" >&2
timeout 60 "$BIN" --input "$DATA/samples-224" --output "$RUNS/loader" --loader-bench "${SMALL[@]}" > "$RUNS/loader.json" 2> "$RUNS/loader.err"
echo $? > "$RUNS/loader.rc"

# CUDA checks on the default tiny model and the 32 px samples.
if [ "$CHECKS" = 1 ]; then
echo "== checks" >&2
CK=(--input "$DATA/samples" --steps 40 --set checkpoint_every=0 --set eval_every=0 --log warn)
{
  timeout 60 "$BIN" "${CK[@]}" --output "$RUNS/ck_straight" > "$RUNS/ck_straight.json" &&
    timeout 60 "$BIN" "${CK[@]}" --output "$RUNS/ck_again" > "$RUNS/ck_again.json" &&
    timeout 60 "$BIN" "${CK[@]}" --output "$RUNS/ck_resumed" --stop-at 20 > "$RUNS/ck_first20.json" &&
    timeout 60 "$BIN" "${CK[@]}" --output "$RUNS/ck_resumed" --resume > "$RUNS/ck_resumed.json" &&
    timeout 60 "$BIN" --input "$DATA/samples" --output "$RUNS/ck_straight" --eval-only --log warn > "$RUNS/ck_eval_fresh.json"
} 2> "$RUNS/checks.err"
echo $? > "$RUNS/checks.rc"
tail -n 3 "$RUNS/checks.err" >&2
fi

$PY -P bench/train_gpu_report.py "$RUNS" "$ROUNDS" "$SMALL_WARM" "$SMALL_STEPS" "$BASE_WARM" "$BASE_STEPS"
if [ "$RUNS" = bench/out/train_gpu ] && [ "$DEVICE" = cuda ]; then
  mkdir -p bench/results && cp "$RUNS/train_gpu.json" bench/results/train_gpu.json
fi
