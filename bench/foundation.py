"""Benchmark of the foundation: ingest (JSONL -> document shards) and verify.

Writes bench/results/foundation.json. Input: every poem of the chinese-poetry
package as JSONL (real traditional-Chinese text), then the same files 10x over
(as distinct files) to show memory stays flat as input grows."""
import glob, json, os, shutil, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/m6corpus")
DATA = os.environ.get("M6_DATA_DIR", os.path.join(ROOT, "data"))
OUT = os.path.join(ROOT, "bench/out/foundation")
THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))


def make_input():
    src = os.path.join(OUT, "jsonl-1x")
    if os.path.isdir(src):
        return src
    os.makedirs(src)
    files = sorted(glob.glob(os.path.join(DATA, "chinese-poetry/dist/quantangshi/poet.*.json")))
    buf, n, part = [], 0, 0
    for f in files:
        for p in json.load(open(f)):
            text = "\n".join(p.get("paragraphs") or [])
            if not text:
                continue
            buf.append(json.dumps({"id": p.get("id"), "title": p.get("title"), "author": p.get("author"), "text": text}, ensure_ascii=False))
            n += 1
        if len(buf) >= 20000:
            open(os.path.join(src, f"part-{part:04d}.jsonl"), "w").write("\n".join(buf) + "\n")
            buf, part = [], part + 1
    if buf:
        open(os.path.join(src, f"part-{part:04d}.jsonl"), "w").write("\n".join(buf) + "\n")
    return src


def make_10x(src):
    dst = os.path.join(OUT, "jsonl-10x")
    if os.path.isdir(dst):
        return dst
    os.makedirs(dst)
    for r in range(10):
        for f in sorted(os.listdir(src)):
            # Hard links: ten times the bytes to read, no extra disk.
            os.link(os.path.join(src, f), os.path.join(dst, f"r{r}-{f}"))
    return dst


def timed(cmd):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS MiB, stdout)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed: {p.stderr[-2000:]}")
    rss_kb = int(p.stderr.strip().splitlines()[-1])
    return dt, rss_kb / 1024, p.stdout


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if os.path.isfile(os.path.join(d, f)))


def python_peer(src, dst):
    """json.loads per line, pyarrow batches, zstd ParquetWriter: a typical Python ingest."""
    code = r'''
import json, os, sys, pyarrow as pa, pyarrow.parquet as pq
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
schema = pa.schema([("id", pa.string()), ("source_id", pa.string()), ("title", pa.string()), ("text", pa.string()), ("char_count", pa.uint32()), ("meta", pa.string())])
n = 0
for f in sorted(os.listdir(src)):
    w = pq.ParquetWriter(os.path.join(dst, f + ".parquet"), schema, compression="zstd")
    rows = {k: [] for k in schema.names}
    for line in open(os.path.join(src, f), encoding="utf-8"):
        if not line.strip():
            continue
        o = json.loads(line)
        text = o.pop("text")
        rows["id"].append(None); rows["source_id"].append(str(o.pop("id", None))); rows["title"].append(o.pop("title", None))
        rows["text"].append(text); rows["char_count"].append(len(text)); rows["meta"].append(json.dumps(o, ensure_ascii=False))
        n += 1
        if len(rows["text"]) >= 4096:
            w.write_table(pa.table(rows, schema=schema)); rows = {k: [] for k in schema.names}
    if rows["text"]:
        w.write_table(pa.table(rows, schema=schema))
    w.close()
print(n)
'''
    return timed([sys.executable, "-c", code, src, dst])


def main():
    os.makedirs(OUT, exist_ok=True)
    src = make_input()
    big = make_10x(src)
    res = {"nproc": os.cpu_count(), "threads": THREADS}
    for name, inp in [("1x", src), ("10x", big)]:
        out = os.path.join(OUT, f"docs-{name}")
        shutil.rmtree(out, ignore_errors=True)
        secs, rss, stdout = timed([BIN, "ingest", "--input", inp, "--output", out, "--threads", str(THREADS), "--quiet", "--json"])
        summary = json.loads(stdout.strip().splitlines()[-1])
        mb = dir_bytes(inp) / 1e6
        res[f"ingest_{name}"] = {
            "input_mb": round(mb, 1), "docs": summary["rows_out"], "seconds": round(secs, 2),
            "mb_per_s": round(mb / secs, 1), "docs_per_s": round(summary["rows_out"] / secs),
            "mb_per_s_per_core": round(mb / secs / THREADS, 1), "peak_rss_mib": round(rss, 1),
            "output_mb": round(summary["bytes_out"] / 1e6, 1),
        }
        vsecs, vrss, _ = timed([BIN, "verify", out])
        res[f"verify_{name}"] = {"seconds": round(vsecs, 2), "mb_per_s": round(summary["bytes_out"] / 1e6 / vsecs, 1), "peak_rss_mib": round(vrss, 1)}
    # Checksums on read: every reading stage hashes each input shard (blake3) before
    # decoding it. `verify` is that hash (plus footer reads) over the same shards, so
    # its time against a real reading stage's (filter, on the 1x output) bounds the
    # share of a stage's time that checksum-on-read costs.
    docs1 = os.path.join(OUT, "docs-1x")
    fout = os.path.join(OUT, "filter-1x")
    shutil.rmtree(fout, ignore_errors=True)
    fsecs, _, _ = timed([BIN, "filter", "--input", docs1, "--output", fout, "--threads", str(THREADS), "--quiet"])
    hsecs, _, _ = timed([BIN, "verify", docs1])
    shard_mb = dir_bytes(docs1) / 1e6
    res["checksum_on_read"] = {
        "what": "blake3 of every input shard before decoding (verify's time over the filter stage's input) vs the filter stage on it",
        "shard_mb": round(shard_mb, 1), "hash_seconds": round(hsecs, 3), "hash_mb_per_s": round(shard_mb / hsecs, 1),
        "filter_seconds": round(fsecs, 2), "share_of_filter_time": round(hsecs / fsecs, 3),
    }
    peer_out = os.path.join(OUT, "peer-1x")
    shutil.rmtree(peer_out, ignore_errors=True)
    psecs, prss, _ = python_peer(src, peer_out)
    mb = dir_bytes(src) / 1e6
    res["python_peer_1x"] = {"what": "json.loads + pyarrow ParquetWriter(zstd), single process", "seconds": round(psecs, 2), "mb_per_s": round(mb / psecs, 1), "peak_rss_mib": round(prss, 1)}
    ours_per_core = res["ingest_1x"]["mb_per_s_per_core"]
    res["ratio_per_core_vs_python"] = round(ours_per_core / (mb / psecs), 1)
    res["rss_growth_10x_input"] = round(res["ingest_10x"]["peak_rss_mib"] / res["ingest_1x"]["peak_rss_mib"], 2)
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/foundation.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
