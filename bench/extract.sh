#!/usr/bin/env bash
# Benchmark of `m6corpus extract`: pages/s and MB/s per core on the real Debian Handbook
# pages (zh-CN + zh-TW, repeated EXTRACT_BENCH_REPEAT times), peak RSS, and trafilatura
# (Python) on the same page shards in the same run. Writes bench/results/extract.json.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT="${EXTRACT_BENCH_REPEAT:-4}"
NPROC="$(nproc)"
PY=".venv/bin/python"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

make build
cargo build --release -q --workspace --exclude m6-trainer --bins --tests --example bench_pages
"$PY" -c "import trafilatura" 2>/dev/null || .venv/bin/pip install -q -r bench/requirements.txt

target/release/examples/bench_pages "$WORK/pages" "$REPEAT" data/debian-handbook/zh-CN data/debian-handbook/zh-TW

# One m6corpus run: wall seconds and peak RSS (KiB) from GNU time.
run() {
    local threads="$1" out="$WORK/docs-$1"
    /usr/bin/time -f "%e %M" -o "$WORK/time-$threads" \
        target/release/m6corpus extract --input "$WORK/pages" --output "$out" --threads "$threads" >/dev/null 2>"$WORK/log-$threads"
    cat "$WORK/time-$threads"
}
read -r S1 R1 < <(run 1)
read -r SN RN < <(run "$NPROC")
PEER="$("$PY" bench/extract_peer.py "$WORK/pages" "$WORK/docs-1")"

"$PY" - "$WORK" "$REPEAT" "$NPROC" "$S1" "$R1" "$SN" "$RN" "$PEER" <<'PY'
import json, sys, glob
import pyarrow.parquet as pq
work, repeat, nproc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s1, r1, sn, rn = float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
peer = json.loads(sys.argv[8])
pages = nbytes = 0
for s in glob.glob(f"{work}/pages/part-*.parquet"):
    t = pq.read_table(s, columns=["body"])
    pages += t.num_rows
    nbytes += sum(len(b) for b in t.column(0).to_pylist())
manifest = json.load(open(f"{work}/docs-1/manifest.json"))
docs = sum(s["rows"] for s in manifest["shards"])
def fig(secs, rss_kib, threads):
    return {"threads": threads, "seconds": secs, "pages_per_s": pages / secs, "mb_per_s": nbytes / secs / 1e6,
            "pages_per_s_per_core": pages / secs / threads, "mb_per_s_per_core": nbytes / secs / 1e6 / threads,
            "peak_rss_mb": rss_kib / 1024}
one, many = fig(s1, r1, 1), fig(sn, rn, nproc)
res = {
    "bench": "extract",
    "nproc": nproc,
    "input": {"what": "Debian Handbook zh-CN + zh-TW HTML pages as a page dataset", "repeat": repeat, "pages": pages, "bytes": nbytes, "mb": nbytes / 1e6},
    "m6corpus_documents": docs,
    "m6corpus_1_thread": one,
    "m6corpus_all_threads": many,
    "peer_1_core": peer,
    "ratio_pages_per_s_per_core_m6_over_peer": one["pages_per_s"] / peer["pages_per_s"],
    "ratio_peak_rss_m6_1_thread_over_peer": one["peak_rss_mb"] / peer["peak_rss_mb"],
    "units": {"seconds": "s wall", "mb_per_s": "1e6 bytes of HTML body per s", "peak_rss_mb": "MiB (max RSS)"},
}
json.dump(res, open("bench/results/extract.json", "w"), indent=2)
print(json.dumps(res, indent=2))
PY
