#!/usr/bin/env bash
# Runs every benchmark script bench/*.sh (each writes bench/results/<area>.json) and
# merges their results into bench/results.json with the machine's core count.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results bench/out
only="${BENCH_ONLY:-}"
for b in bench/*.sh; do
  area=$(basename "$b" .sh)
  if [ -n "$only" ] && [[ " $only " != *" $area "* ]]; then continue; fi
  echo "== bench: $area"
  if ! bash "$b"; then echo "bench $area FAILED" >&2; fi
done
.venv/bin/python - <<'PY'
import json, glob, os, platform
out = {"nproc": os.cpu_count(), "machine": platform.machine(), "results": {}}
for f in sorted(glob.glob("bench/results/*.json")):
    with open(f) as fh:
        out["results"][os.path.basename(f)[:-5]] = json.load(fh)
with open("bench/results.json", "w") as fh:
    json.dump(out, fh, indent=2, ensure_ascii=False)
print("wrote bench/results.json with", ", ".join(out["results"]))
PY
