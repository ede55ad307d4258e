#!/usr/bin/env bash
# Data-parallel trainer benchmark on the CPU: m6-train at world size 1 and 2 (two
# processes launched by `torchrun --no-python`, gradients over the TCP ring) against
# PyTorch DDP (gloo) for the same model, same data and the same global batch, in the
# same run. Tokens/s count every rank's tokens. The cores are split between the ranks
# (world size 2: THREADS/2 torch threads each), so on one machine this measures the
# cost of the collective and of the split, not a speed-up; past one machine the ranks
# get their own cores.
# Writes bench/results/train_dp.json.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/train_dp
PY=.venv/bin/python
TORCHRUN=.venv/bin/torchrun
N_POEMS=${N_POEMS:-6000}
COPIES=${COPIES:-4}
TEXT_FILES=${TEXT_FILES:-8}
STEPS=${STEPS:-20}
THREADS=${THREADS:-$(nproc)}
GLOBAL_BATCH=${GLOBAL_BATCH:-32}
MAX_LEN=128
MODEL=(--set model.d_model=256 --set model.n_layers=4 --set model.n_heads=4 --set model.d_ff=1024 --set model.max_len=$MAX_LEN)
mkdir -p "$OUT" bench/results
[ -n "${SKIP_BUILD:-}" ] || make trainer >&2  # SKIP_BUILD=1: use the m6-train already built
BIN=target/release/m6-train
[ -d "$OUT/pipeline/samples" ] || bench/lib/train_samples.sh "$OUT/pipeline" "$N_POEMS" "$COPIES" "$TEXT_FILES"
SAMPLES="$OUT/pipeline/samples"

for world in ${WORLDS:-1 2}; do
  threads=$((THREADS / world)); [ "$threads" -ge 1 ] || threads=1
  per_rank=$((GLOBAL_BATCH / world))
  port=$((29600 + 4 * world))
  rm -rf "$OUT/run$world"
  echo "train_dp: m6-train, $world rank(s) x $threads thread(s)" >&2
  $TORCHRUN --no-python --nproc-per-node "$world" --master-port "$port" \
    "$BIN" --input "$SAMPLES" --output "$OUT/run$world" --steps "$((STEPS + 3))" --cpu "${MODEL[@]}" \
    --set batch_size="$per_rank" --set lanes=2 --set torch_threads="$threads" --set log_every=1 --set eval_every=0 \
    --set checkpoint_every=0 --set warmup_steps=3 > "$OUT/m6_$world.json"
  echo "train_dp: PyTorch DDP peer, $world rank(s)" >&2
  # --no-python + `python -P`: bench/ holds modules (inspect.py) that would shadow the stdlib.
  $TORCHRUN --no-python --nproc-per-node "$world" --master-port "$((port + 10))" \
    "$PY" -P bench/train_peer.py --mode train --input "$SAMPLES" --steps "$STEPS" --threads "$threads" \
    --max-len "$MAX_LEN" --batch-size "$per_rank" > "$OUT/peer_$world.json"
done

"$PY" - "$OUT" "$GLOBAL_BATCH" "$THREADS" <<'PYEOF'
import json, os, sys
out, gb, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
res = {"area": "train_dp", "nproc": os.cpu_count(), "threads": threads, "global_batch": gb,
       "model": "d_model 256, 4 layers, 4 heads, d_ff 1024, max_len 128 (CPU, fp32)",
       "how": "torchrun --no-python --nproc-per-node W: m6-train (TCP ring) vs PyTorch DDP (gloo), same data, global batch, "
              "threads split over the ranks; tokens/s of all ranks over the timed steps (first 3 left out)"}
for w in (1, 2):
    log = [json.loads(l) for l in open(os.path.join(out, "run%d" % w, "log.jsonl"))][3:]
    secs = sum(gb / max(l["samples_per_s"], 1e-9) for l in log)
    toks = sum(l["tokens_per_s"] * gb / max(l["samples_per_s"], 1e-9) for l in log)
    m6 = toks / secs
    peer = json.load(open(os.path.join(out, "peer_%d.json" % w)))
    res["world_size_%d" % w] = {"tokens_per_s": {"value": m6, "unit": "tokens/s", "peer": peer["tokens_per_s"], "ratio": m6 / peer["tokens_per_s"]},
                                "steps_timed": len(log), "peer": "PyTorch %s DDP" % peer["torch"] if w > 1 else "PyTorch %s eager" % peer["torch"]}
json.dump(res, open("bench/results/train_dp.json", "w"), indent=2)
print(json.dumps(res, indent=2))
PYEOF
