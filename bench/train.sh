#!/usr/bin/env bash
# Trainer benchmark (CPU; no GPU on the benchmark machine unless CUDA is present), on
# sample datasets made by the real pipeline (trainer/examples/bench_samples: N_POEMS
# real poems, the Debian Handbook's figure pages (WARC -> ingest -> extract) and the
# captioned photos, COPIES times each, -> tokenizer train -> tokenize):
#  1. the loader alone (model replaced by a no-op): samples/s, Parquet MB/s, peak RSS,
#     against a pyarrow loader doing the same shuffle + padding (bench/train_peer.py);
#  2. training tokens/s and samples/s of m6-train against the same model in PyTorch
#     eager (same sizes, same data, same batch size, same thread count).
# Two variants: the top-level results use 32 px images in 8 px patches (16 patches an
# image, model max_len 128); `variants.image_224` tokenizes the same inputs at the
# tokenize stage's default 224 px in 16 px patches (196 patches an image, model
# max_len 256).
# Writes bench/results/train.json. (`python -P`: bench/ holds modules, e.g. inspect.py,
# that would shadow the standard library if the script folder came first on sys.path.)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/train
PY=.venv/bin/python
N_POEMS=${N_POEMS:-30000}
COPIES=${COPIES:-20}
TEXT_FILES=${TEXT_FILES:-8}
STEPS=${STEPS:-10}
ROUNDS=${ROUNDS:-2}
ROUNDS_224=${ROUNDS_224:-2}
THREADS=${THREADS:-$(nproc)}
MODEL=(--set model.d_model=256 --set model.n_layers=4 --set model.n_heads=4 --set model.d_ff=1024 --set batch_size=32)
mkdir -p "$OUT" bench/results

# The trainer builds with the workspace (same invocation shape, same target/).
make trainer >&2
BIN=target/release/m6-train

rm -rf "$OUT"/*
bench/lib/train_samples.sh "$OUT/pipeline" "$N_POEMS" "$COPIES" "$TEXT_FILES"

# variant NAME SAMPLES MAX_LEN ROUNDS: loader and training rounds into $OUT/NAME.
variant() {
  local name=$1 samples=$2 max_len=$3 rounds=$4 d="$OUT/$1"
  mkdir -p "$d"
  # Loader runs are short and the machine is shared: alternate 3 times, keep the best.
  for r in 1 2 3; do
    echo "$name loader round $r: m6-train --loader-bench, then the pyarrow peer" >&2
    /usr/bin/time -f '%M' -o "$d/loader$r.rss" "$BIN" --input "$samples" --output "$d/run" --loader-bench --cpu "${MODEL[@]}" --set model.max_len="$max_len" > "$d/loader$r.json"
    "$PY" -P bench/train_peer.py --mode loader --input "$samples" --max-len "$max_len" > "$d/loader_peer$r.json"
  done
  # The machine is shared, so the two trainers alternate and the best round of each
  # is reported.
  for r in $(seq 1 "$rounds"); do
    echo "$name train round $r: m6-train $STEPS steps" >&2
    /usr/bin/time -f '%M' -o "$d/train$r.rss" "$BIN" --input "$samples" --output "$d/run$r" --steps "$((STEPS + 3))" --cpu "${MODEL[@]}" --set model.max_len="$max_len" \
      --set torch_threads="$THREADS" --set log_every=1 --set eval_every=0 --set checkpoint_every=0 --set warmup_steps=3 > "$d/train$r.json"
    echo "$name train round $r: PyTorch eager peer" >&2
    "$PY" -P bench/train_peer.py --mode train --input "$samples" --steps "$STEPS" --threads "$THREADS" --max-len "$max_len" > "$d/train_peer$r.json"
  done
  echo "$rounds $max_len $samples" > "$d/variant"
}
variant base "$OUT/pipeline/samples" 128 "$ROUNDS"
variant image_224 "$OUT/pipeline/samples-224" 256 "$ROUNDS_224"

BASE_RSS=$( { /usr/bin/time -f '%M' "$BIN" --version >/dev/null; } 2>&1 | tail -1)
echo "$BASE_RSS" > "$OUT/base.rss"

"$PY" - "$OUT" "$STEPS" <<'PYEOF'
import json, os, sys
out, steps = sys.argv[1], int(sys.argv[2])
base_rss_mb = int(open(os.path.join(out, "base.rss")).read().split()[-1]) / 1024


def variant(name):
    d = os.path.join(out, name)
    rounds, max_len, samples = open(os.path.join(d, "variant")).read().split()
    rounds, max_len = int(rounds), int(max_len)
    j = lambda f: json.load(open(os.path.join(d, f)))
    loader = max((j("loader%d.json" % r) for r in (1, 2, 3)), key=lambda x: x["samples_per_s"])
    lpeer = max((j("loader_peer%d.json" % r) for r in (1, 2, 3)), key=lambda x: x["samples_per_s"])

    def m6_round(r):
        # Throughput over the steps after the first 3 (warm-up), from log.jsonl (one line a step).
        log = [json.loads(l) for l in open(os.path.join(d, "run%d" % r, "log.jsonl"))][3:]
        secs = sum(32 / max(l["samples_per_s"], 1e-9) for l in log)
        toks = sum(l["tokens_per_s"] * 32 / max(l["samples_per_s"], 1e-9) for l in log)
        return {"tokens_per_s": toks / secs, "samples_per_s": 32 * len(log) / secs, "steps": len(log)}

    m6 = [m6_round(r) for r in range(1, rounds + 1)]
    peer = [j("train_peer%d.json" % r) for r in range(1, rounds + 1)]
    best = max(m6, key=lambda x: x["tokens_per_s"])
    bpeer = max(peer, key=lambda x: x["tokens_per_s"])
    train = j("train1.json")
    tok_s, smp_s = best["tokens_per_s"], best["samples_per_s"]
    loader_rss_mb = max(int(open(os.path.join(d, "loader%d.rss" % r)).read().split()[-1]) for r in (1, 2, 3)) / 1024
    manifest = json.load(open(os.path.join(samples, "manifest.json")))
    counts = manifest["runs"][-1]["counts"]
    return {
        "device": train["device"],
        "input": {"samples": sum(s["rows"] for s in manifest["shards"]),
                  "shards": len(manifest["shards"]),
                  "parquet_bytes": sum(s["bytes"] for s in manifest["shards"]),
                  "image_size": manifest["properties"]["image_size"], "patch_size": manifest["properties"]["patch_size"],
                  "text_samples": counts.get("samples.text"), "image_samples": counts.get("samples.image_text"),
                  "vocab_size": manifest["properties"]["vocab_size"], "tokenize_max_len": manifest["properties"]["max_len"],
                  "made_by": "m6corpus ingest (poems JSONL; Debian Handbook figure pages as WARC; captioned photos) -> extract -> tokenizer train -> tokenize (trainer/examples/bench_samples)"},
        "loader": {
            "samples_per_s": {"value": loader["samples_per_s"], "unit": "samples/s", "peer": lpeer["samples_per_s"], "ratio": loader["samples_per_s"] / lpeer["samples_per_s"]},
            "parquet_mb_per_s": {"value": loader["parquet_mb_per_s"], "unit": "MB/s", "peer": lpeer["parquet_mb_per_s"], "ratio": loader["parquet_mb_per_s"] / lpeer["parquet_mb_per_s"]},
            "peak_rss_mb": {"value": loader_rss_mb, "unit": "MiB", "peer": lpeer["peak_rss_mb"],
                            "libtorch_baseline": base_rss_mb, "loader_over_baseline": loader_rss_mb - base_rss_mb,
                            "note": "m6-train maps libtorch (CPU+CUDA) at start-up; `m6-train --version` alone peaks at libtorch_baseline"},
            "peer": "pyarrow iter_batches + Python shuffle buffer + numpy padding (bench/train_peer.py)",
        },
        "train": {
            "model": "d_model 256, 4 layers, 4 heads, d_ff 1024, max_len %d, batch 32" % max_len,
            "parameters": train["parameters"],
            "steps_timed_per_round": steps, "rounds": rounds, "all_rounds": {"m6": m6, "peer": [p["tokens_per_s"] for p in peer]},
            "tokens_per_s": {"value": tok_s, "unit": "tokens/s", "peer": bpeer["tokens_per_s"], "ratio": tok_s / bpeer["tokens_per_s"]},
            "samples_per_s": {"value": smp_s, "unit": "samples/s", "peer": bpeer["samples_per_s"], "ratio": smp_s / bpeer["samples_per_s"]},
            "peak_rss_mb": {"value": max(int(open(os.path.join(d, "train%d.rss" % r)).read().split()[-1]) for r in range(1, rounds + 1)) / 1024,
                            "unit": "MiB", "peer": max(p["peak_rss_mb"] for p in peer)},
            "peer": "same model in PyTorch %s eager, torch.optim.AdamW, same threads" % bpeer["torch"],
        },
        "loader_headroom": {"value": loader["samples_per_s"] / smp_s, "unit": "x", "note": "loader samples/s over what training consumes"},
    }


base = variant("base")
res = {"area": "train", "nproc": os.cpu_count(), "device": base.pop("device")}
# GPU figures come from bench/train_gpu.sh, run where there is a GPU (it skips itself
# elsewhere); its last results are summarised here, with the card they came from.
try:
    g = json.load(open("bench/results/train_gpu.json"))
    res["gpu"] = {"machine": g["machine"], "source": "bench/results/train_gpu.json (bench/train_gpu.sh)",
                  **{k: {"model": g[k]["model"], "m6_tokens_per_s": g[k]["m6"].get("tokens_per_s"),
                         "peer_tokens_per_s": g[k]["peer"].get("tokens_per_s"), "ratio": g[k].get("ratio_tokens_per_s"),
                         "m6_gpu_util_pct": g[k]["m6"].get("gpu_util_pct"), "peer_gpu_util_pct": g[k]["peer"].get("gpu_util_pct")}
                     for k in ("small", "base")}}
except (OSError, KeyError, ValueError):
    res["gpu"] = "none: bench/train_gpu.sh has not run on a GPU; tokens/s here are CPU figures"
res.update(base)
v224 = variant("image_224")
v224.pop("device")
res["variants"] = {"image_224": v224}
json.dump(res, open("bench/results/train.json", "w"), indent=2)
print(json.dumps(res, indent=2))
PYEOF
