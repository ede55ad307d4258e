"""Crawl benchmark: pages/s and MB/s of `m6corpus crawl` against a local server
serving the real Debian Handbook pages, next to an aiohttp peer on the same seeds in
the same run, and peak RSS as the seed list grows 10x (it must stay flat)."""
import glob, json, os, re, shutil, socket, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("M6CORPUS_BIN", os.path.join(ROOT, "target/release/m6corpus"))
DATA = os.environ.get("M6_DATA_DIR", os.path.join(ROOT, "data"))
OUT = os.path.join(ROOT, "bench/out/crawl")
PY = sys.executable
CONCURRENCY = int(os.environ.get("CRAWL_BENCH_CONCURRENCY", "16"))
SMALL = int(os.environ.get("CRAWL_BENCH_SEEDS", "1000"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def timed(cmd):
    """Runs cmd under /usr/bin/time -v: (seconds, peak RSS in MiB, stdout)."""
    t0 = time.time()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    secs = time.time() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    return secs, rss, p.stdout


def main():
    handbook = os.path.join(DATA, "debian-handbook")
    pages = sorted(os.path.relpath(p, handbook) for p in glob.glob(os.path.join(handbook, "zh-*", "*.html")))
    page_bytes = {p: os.path.getsize(os.path.join(handbook, p)) for p in pages}
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    port = free_port()
    server = subprocess.Popen([PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", handbook], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        results = {}
        for n in (SMALL, SMALL * 10):
            # Distinct URLs (the query varies) for the same real pages.
            seeds = [f"http://127.0.0.1:{port}/{pages[i % len(pages)]}?v={i // len(pages)}" for i in range(n)]
            expect_bytes = sum(page_bytes[pages[i % len(pages)]] for i in range(n))
            sf = os.path.join(OUT, f"seeds-{n}.txt")
            with open(sf, "w") as f:
                f.write("\n".join(seeds) + "\n")
            out = os.path.join(OUT, f"m6-{n}")
            secs, rss, _ = timed([BIN, "crawl", "--input", sf, "--output", out, "--quiet", "--allow-private",
                                  "--set", "per_host_delay_ms=0", "--set", f"concurrency={CONCURRENCY}",
                                  "--set", f"per_host_concurrency={CONCURRENCY}", "--set", "fetch_images=false",
                                  "--threads", "1"])
            man = json.load(open(os.path.join(out, "manifest.json")))
            rows = sum(s["rows"] for s in man["shards"])
            assert rows == n, f"m6corpus wrote {rows} rows for {n} seeds"
            psecs, prss, pout = timed([PY, os.path.join(ROOT, "bench/crawl_peer.py"), sf, os.path.join(OUT, f"peer-{n}.parquet"), str(CONCURRENCY)])
            peer_bytes = int(pout.strip().splitlines()[-1])
            results[n] = {
                "seeds": n,
                "body_mb": round(expect_bytes / 1e6, 2),
                "m6corpus": {"seconds": round(secs, 3), "pages_per_s": round(n / secs, 1), "mb_per_s": round(expect_bytes / 1e6 / secs, 2), "peak_rss_mib": round(rss, 1)},
                "peer_aiohttp": {"seconds": round(psecs, 3), "pages_per_s": round(n / psecs, 1), "mb_per_s": round(peer_bytes / 1e6 / psecs, 2), "peak_rss_mib": round(prss, 1)},
            }
            results[n]["ratio_pages_per_s"] = round(results[n]["m6corpus"]["pages_per_s"] / results[n]["peer_aiohttp"]["pages_per_s"], 3)
            print(json.dumps(results[n]), flush=True)
    finally:
        server.terminate()
        server.wait()
    small, large = results[SMALL], results[SMALL * 10]
    report = {
        "area": "crawl",
        "nproc": os.cpu_count(),
        "server": "python -m http.server (ThreadingHTTPServer) on 127.0.0.1 serving data/debian-handbook zh-CN + zh-TW",
        "input": {"distinct_pages": len(pages), "page_bytes_total": sum(page_bytes.values()), "seed_counts": [SMALL, SMALL * 10], "concurrency": CONCURRENCY},
        "runs": [small, large],
        "pages_per_s": {"value": large["m6corpus"]["pages_per_s"], "unit": "pages/s", "peer": large["peer_aiohttp"]["pages_per_s"], "ratio": large["ratio_pages_per_s"]},
        "mb_per_s": {"value": large["m6corpus"]["mb_per_s"], "unit": "MB/s", "peer": large["peer_aiohttp"]["mb_per_s"], "ratio": round(large["m6corpus"]["mb_per_s"] / large["peer_aiohttp"]["mb_per_s"], 3)},
        "peak_rss_mib": {
            "unit": "MiB",
            "m6corpus": [small["m6corpus"]["peak_rss_mib"], large["m6corpus"]["peak_rss_mib"]],
            "peer_aiohttp": [small["peer_aiohttp"]["peak_rss_mib"], large["peer_aiohttp"]["peak_rss_mib"]],
            "m6corpus_growth_for_10x_seeds": round(large["m6corpus"]["peak_rss_mib"] / small["m6corpus"]["peak_rss_mib"], 3),
            "peer_growth_for_10x_seeds": round(large["peer_aiohttp"]["peak_rss_mib"] / small["peer_aiohttp"]["peak_rss_mib"], 3),
        },
    }
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/crawl.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
