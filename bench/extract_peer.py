"""Peer for bench/extract.sh: trafilatura main-content extraction over the same `page`
Parquet shards m6corpus extract reads, on one core. Prints one JSON object."""
import glob
import json
import resource
import sys
import time

import pyarrow.parquet as pq
import trafilatura


def main():
    pages_dir, docs_dir = sys.argv[1], sys.argv[2]
    shards = sorted(glob.glob(f"{pages_dir}/part-*.parquet"))
    n = nbytes = 0
    out = {}
    t0 = time.perf_counter()
    for s in shards:
        f = pq.ParquetFile(s)
        for b in f.iter_batches(batch_size=64, columns=["url", "body"]):
            for url, body in zip(b.column(0).to_pylist(), b.column(1).to_pylist()):
                text = trafilatura.extract(body, url=url, include_comments=False, include_tables=True, favor_precision=False)
                n += 1
                nbytes += len(body)
                if url.endswith("?copy=1"):
                    out[url] = text or ""
    secs = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # Agreement with m6corpus on the first copy: character-bigram Jaccard of the texts.
    ours = {}
    for s in sorted(glob.glob(f"{docs_dir}/part-*.parquet")):
        t = pq.read_table(s, columns=["url", "text"])
        for url, text in zip(t.column(0).to_pylist(), t.column(1).to_pylist()):
            if url.endswith("?copy=1"):
                ours[url] = text

    def grams(s):
        s = "".join(s.split())
        return {s[i:i + 2] for i in range(len(s) - 1)}

    sims = []
    for url, theirs in out.items():
        a, b = grams(ours.get(url, "")), grams(theirs)
        if a or b:
            sims.append(len(a & b) / len(a | b))
    sims.sort()
    print(json.dumps({
        "peer": f"trafilatura {trafilatura.__version__}",
        "pages": n,
        "bytes": nbytes,
        "seconds": secs,
        "pages_per_s": n / secs,
        "mb_per_s": nbytes / secs / 1e6,
        "peak_rss_mb": rss_mb,
        "agreement_pages": len(sims),
        "agreement_bigram_jaccard_mean": sum(sims) / len(sims) if sims else None,
        "agreement_bigram_jaccard_median": sims[len(sims) // 2] if sims else None,
    }))


if __name__ == "__main__":
    main()
