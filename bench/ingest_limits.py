"""Peak RSS of ingest on a .jsonl.gz holding one huge line (issue 14 point 4).

Writes bench/results/ingest_limits.json. The huge line is real poem text repeated to
HUGE_MIB (env BENCH_HUGE_MIB, default "300 1024"), written with gzip level 1 and
streaming (the file stays small). Ours: `m6corpus ingest` with the default
max_record_mb (64). Peer: the reader of a Python JSONL pipeline (gzip.open, one
json.loads per line), which must hold the line to parse it. Peak RSS from /usr/bin/time."""
import glob, gzip, json, os, shutil, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/m6corpus")
DATA = os.environ.get("M6_DATA_DIR", os.path.join(ROOT, "data"))
OUT = os.path.join(ROOT, "bench/out/ingest_limits")
SIZES = [int(s) for s in os.environ.get("BENCH_HUGE_MIB", "300 1024").split()]
PEER_MAX_MIB = int(os.environ.get("BENCH_PEER_MAX_MIB", "300"))

PEER = r"""
import gzip, json, sys
n = bad = 0
with gzip.open(sys.argv[1], "rt", encoding="utf-8") as f:
    for line in f:
        try:
            json.loads(line); n += 1
        except ValueError:
            bad += 1
print(n, bad)
"""


def poems(n):
    files = sorted(glob.glob(os.path.join(DATA, "chinese-poetry/dist/quantangshi/poet.tang.*.json")))
    out = []
    for f in files:
        for p in json.load(open(f)):
            text = "\n".join(p.get("paragraphs") or [])
            if text:
                out.append({"id": p.get("id"), "title": p.get("title"), "text": text})
                if len(out) == n:
                    return out
    return out


def make_input(mib):
    path = os.path.join(OUT, f"huge-{mib}.jsonl.gz")
    if os.path.exists(path):
        return path
    ps = poems(2000)
    piece = "".join(p["text"].replace("\n", "").replace('"', "").replace("\\", "") for p in ps[:50]) * 16
    with gzip.open(path + ".tmp", "wt", encoding="utf-8", compresslevel=1) as f:
        for p in ps[:1000]:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
        f.write('{"id": "huge", "text": "')
        written = 0
        while written < mib << 20:
            f.write(piece)
            written += len(piece.encode())
        f.write('"}\n')
        for p in ps[1000:]:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    os.rename(path + ".tmp", path)
    return path


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed: {p.stderr[-2000:]}")
    return dt, int(p.stderr.strip().splitlines()[-1]) / 1024, p.stdout


def main():
    os.makedirs(OUT, exist_ok=True)
    rows = []
    for mib in SIZES:
        src = make_input(mib)
        out = os.path.join(OUT, f"docs-{mib}")
        shutil.rmtree(out, ignore_errors=True)
        dt, rss, _ = timed([BIN, "ingest", "--input", src, "--output", out, "--quiet", "--threads", "1"])
        errors = json.loads(subprocess.run([BIN, "stats", os.path.join(out, "errors"), "--json"], capture_output=True, text=True).stdout or "{}")
        row = {"huge_line_mib": mib, "file_mb": round(os.path.getsize(src) / 1e6, 1), "ours_seconds": round(dt, 2), "ours_peak_rss_mib": round(rss, 1),
               "ours_error_rows": errors.get("rows")}
        if mib <= PEER_MAX_MIB:
            pdt, prss, pout = timed(["python3", "-c", PEER, src])
            row.update({"peer_seconds": round(pdt, 2), "peer_peak_rss_mib": round(prss, 1), "peer_lines": pout.strip()})
        print(row, flush=True)
        rows.append(row)
    res = {"what": "peak RSS ingesting a .jsonl.gz holding one huge line among 2000 poems; ours: default max_record_mb=64, one thread; "
                   "peer: Python gzip + json.loads per line", "runs": rows}
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/ingest_limits.json"), "w") as f:
        json.dump(res, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
