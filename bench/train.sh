#!/usr/bin/env bash
# Trainer benchmark (CPU; no GPU on the benchmark machine unless CUDA is present):
#  1. the loader alone (model replaced by a no-op): samples/s, Parquet MB/s, peak RSS,
#     against a pyarrow loader doing the same shuffle + padding (bench/train_peer.py);
#  2. training tokens/s and samples/s of m6-train against the same model in PyTorch
#     eager (same sizes, same data, same batch size, same thread count).
# Writes bench/results/train.json. (`python -P`: bench/ holds modules, e.g. inspect.py,
# that would shadow the standard library if the script folder came first on sys.path.)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/train
PY=.venv/bin/python
N_POEMS=${N_POEMS:-30000}
IMAGE_REPEATS=${IMAGE_REPEATS:-300}
SHARDS=${SHARDS:-8}
STEPS=${STEPS:-10}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-$(nproc)}
MODEL=(--set model.d_model=256 --set model.n_layers=4 --set model.n_heads=4 --set model.d_ff=1024 --set model.max_len=128 --set batch_size=32)
mkdir -p "$OUT" bench/results

if [ ! -x trainer/target/release/m6-train ] || [ ! -x trainer/target/release/examples/bench_samples ]; then
  make trainer
  (cd trainer && LIBTORCH_USE_PYTORCH=1 PATH="$PWD/../.venv/bin:$PATH" cargo build --release --example bench_samples)
fi
BIN=trainer/target/release/m6-train

rm -rf "$OUT/samples" "$OUT/run"
trainer/target/release/examples/bench_samples "$OUT/samples" "$N_POEMS" "$IMAGE_REPEATS" "$SHARDS" >&2

# Loader runs are short and the machine is shared: alternate 3 times, keep the best.
for r in 1 2 3; do
  echo "loader round $r: m6-train --loader-bench, then the pyarrow peer" >&2
  /usr/bin/time -f '%M' -o "$OUT/loader$r.rss" "$BIN" --input "$OUT/samples" --output "$OUT/run" --loader-bench --cpu "${MODEL[@]}" > "$OUT/loader$r.json"
  "$PY" -P bench/train_peer.py --mode loader --input "$OUT/samples" > "$OUT/loader_peer$r.json"
done

# The machine is shared, so the two trainers alternate for ROUNDS rounds and the best
# round of each is reported.
for r in $(seq 1 "$ROUNDS"); do
  echo "train round $r: m6-train $STEPS steps" >&2
  rm -rf "$OUT/run$r"
  "$BIN" --input "$OUT/samples" --output "$OUT/run$r" --steps "$((STEPS + 3))" --cpu "${MODEL[@]}" \
    --set torch_threads="$THREADS" --set log_every=1 --set eval_every=0 --set checkpoint_every=0 --set warmup_steps=3 > "$OUT/train$r.json"
  echo "train round $r: PyTorch eager peer" >&2
  "$PY" -P bench/train_peer.py --mode train --input "$OUT/samples" --steps "$STEPS" --threads "$THREADS" > "$OUT/train_peer$r.json"
done
BASE_RSS=$( { /usr/bin/time -f '%M' "$BIN" --version >/dev/null; } 2>&1 | tail -1)
echo "$BASE_RSS" > "$OUT/base.rss"

"$PY" - "$OUT" "$STEPS" "$ROUNDS" <<'PYEOF'
import json, os, sys
out, steps, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
j = lambda f: json.load(open(os.path.join(out, f)))
loader = max((j("loader%d.json" % r) for r in (1, 2, 3)), key=lambda x: x["samples_per_s"])
lpeer = max((j("loader_peer%d.json" % r) for r in (1, 2, 3)), key=lambda x: x["samples_per_s"])

def m6_round(r):
    # Throughput over the steps after the first 3 (warm-up), from log.jsonl (one line a step).
    log = [json.loads(l) for l in open(os.path.join(out, "run%d" % r, "log.jsonl"))][3:]
    secs = sum(32 / max(l["samples_per_s"], 1e-9) for l in log)
    toks = sum(l["tokens_per_s"] * 32 / max(l["samples_per_s"], 1e-9) for l in log)
    return {"tokens_per_s": toks / secs, "samples_per_s": 32 * len(log) / secs, "steps": len(log)}

m6 = [m6_round(r) for r in range(1, rounds + 1)]
peer = [j("train_peer%d.json" % r) for r in range(1, rounds + 1)]
best = max(m6, key=lambda x: x["tokens_per_s"])
bpeer = max(peer, key=lambda x: x["tokens_per_s"])
train = j("train1.json")
tok_s, smp_s = best["tokens_per_s"], best["samples_per_s"]
base_rss_mb = int(open(os.path.join(out, "base.rss")).read().split()[-1]) / 1024
loader_rss_mb = max(int(open(os.path.join(out, "loader%d.rss" % r)).read().split()[-1]) for r in (1, 2, 3)) / 1024
manifest = json.load(open(os.path.join(out, "samples", "manifest.json")))
res = {
    "area": "train",
    "nproc": os.cpu_count(),
    "device": train["device"],
    "gpu": "none: this session had no GPU machine; tokens/s are CPU figures",
    "input": {"samples": manifest and sum(s["rows"] for s in manifest["shards"]),
              "shards": len(manifest["shards"]),
              "parquet_bytes": sum(s["bytes"] for s in manifest["shards"]),
              "image_size": manifest["properties"]["image_size"], "patch_size": manifest["properties"]["patch_size"]},
    "loader": {
        "samples_per_s": {"value": loader["samples_per_s"], "unit": "samples/s", "peer": lpeer["samples_per_s"], "ratio": loader["samples_per_s"] / lpeer["samples_per_s"]},
        "parquet_mb_per_s": {"value": loader["parquet_mb_per_s"], "unit": "MB/s", "peer": lpeer["parquet_mb_per_s"], "ratio": loader["parquet_mb_per_s"] / lpeer["parquet_mb_per_s"]},
        "peak_rss_mb": {"value": loader_rss_mb, "unit": "MiB", "peer": lpeer["peak_rss_mb"],
                        "libtorch_baseline": base_rss_mb, "loader_over_baseline": loader_rss_mb - base_rss_mb,
                        "note": "m6-train maps libtorch (CPU+CUDA) at start-up; `m6-train --version` alone peaks at libtorch_baseline"},
        "peer": "pyarrow iter_batches + Python shuffle buffer + numpy padding (bench/train_peer.py)",
    },
    "train": {
        "model": "d_model 256, 4 layers, 4 heads, d_ff 1024, max_len 128, batch 32",
        "parameters": train["parameters"],
        "steps_timed_per_round": steps, "rounds": rounds, "all_rounds": {"m6": m6, "peer": [p["tokens_per_s"] for p in peer]},
        "tokens_per_s": {"value": tok_s, "unit": "tokens/s", "peer": bpeer["tokens_per_s"], "ratio": tok_s / bpeer["tokens_per_s"]},
        "samples_per_s": {"value": smp_s, "unit": "samples/s", "peer": bpeer["samples_per_s"], "ratio": smp_s / bpeer["samples_per_s"]},
        "peer": "same model in PyTorch %s eager, torch.optim.AdamW, same threads" % bpeer["torch"],
    },
    "loader_headroom": {"value": loader["samples_per_s"] / smp_s, "unit": "x", "note": "loader samples/s over what training consumes"},
}
json.dump(res, open("bench/results/train.json", "w"), indent=2)
print(json.dumps(res, indent=2))
PYEOF
