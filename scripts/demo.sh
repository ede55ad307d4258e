#!/usr/bin/env bash
# The demo: runs the whole pipeline on real sample data (Tang and Song poems from the
# chinese-poetry npm package; the Debian Handbook's Chinese pages and screenshots served
# from a loopback HTTP server) and prints what every stage produced.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/m6corpus
OUT=demo-out
rm -rf "$OUT" && mkdir -p "$OUT/raw"

echo "== preparing real inputs"
.venv/bin/python scripts/prepare_demo.py "$OUT/raw"

# Serve the handbook on loopback for the crawler; stopped when the demo exits.
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "${M6_DATA_DIR:-data}/debian-handbook" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
.venv/bin/python - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/zh-CN/index.html")
        break
    except OSError:
        time.sleep(0.1)
PY
echo "http://127.0.0.1:$port/zh-CN/index.html" > "$OUT/raw/seeds.txt"

run() { echo; echo "== m6corpus $*"; $BIN "$@"; }
run run ingest --config pipeline.toml
run run crawl --config pipeline.toml
run run extract --config pipeline.toml
run run dedup --config pipeline.toml
run run filter --config pipeline.toml
run tokenizer train --input "$OUT/corpus/docs-clean" --output "$OUT/vocab.txt" --vocab-size 8000
run run tokenize --config pipeline.toml
run run train --config pipeline.toml
echo
for d in "$OUT"/corpus/*/ "$OUT"/corpus/*/*/; do
  [ -f "$d/manifest.json" ] || continue
  echo "================ $(basename "$d")"
  $BIN stats "$d"
done
$BIN verify "$OUT"/corpus/*/
$BIN report "$OUT"/corpus/*/ -o "$OUT/report.html"
echo "report: $OUT/report.html"
