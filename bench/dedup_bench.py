#!/usr/bin/env python3
"""Dedup benchmark: quality (precision/recall/F1 on a hard planted set of page-level
copies and hard negatives built from several real Chinese sources, per kind of copy and
per threshold; planted image variants of real photos) and speed/memory, for m6corpus
dedup and its peers (datasketch MinHashLSH, rensa RMinHashLSH, imagehash pHash) on the same inputs. The hard set is bench/lib/dedup_hardset.py.

Writes bench/results/dedup.json. Inputs are built here from data/chinese-poetry and
data/photos; the m6 side runs through target/release/m6-dedup-bench (the same
DedupStage and run_stage that `m6corpus dedup` runs).
"""
import os
import sys

# bench/ holds other scripts (e.g. inspect.py) that would shadow standard modules.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
sys.path.insert(0, os.path.join(_here, "lib"))

import glob
import json
import random
import re
import shutil
import subprocess
import time
import unicodedata

import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("M6_DATA_DIR", os.path.join(ROOT, "data"))
OUT = os.path.join(ROOT, "bench", "out", "dedup")
BIN = os.path.join(ROOT, "target", "release", "m6-dedup-bench")
THREADS = int(os.environ.get("DEDUP_BENCH_THREADS", str(os.cpu_count() or 1)))
SMALL = int(os.environ.get("DEDUP_BENCH_SMALL", "10000"))
DOCS_PER_SHARD = 1250
THRESHOLD = 0.4  # m6 default (chosen on the hard set's tune split, see text_quality.chosen)
SWEEP = [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
# (bands, rows) layouts swept with every threshold; the first is the default.
LAYOUTS = [(42, 3), (32, 4), (25, 5)]
NUM_PERM = 128
NGRAM = 5
MAX_HAMMING = 10

random.seed(1234)
try:
    from opencc import OpenCC
    T2S = OpenCC("t2s")
except Exception as e:  # noqa: BLE001
    sys.exit(f"opencc-python-reimplemented is needed (bench/requirements.txt): {e}")


def load_poems():
    files = sorted(glob.glob(os.path.join(DATA, "chinese-poetry/dist/quantangshi/poet.*.json")))
    seen, out = set(), []
    for f in files:
        for p in json.load(open(f, encoding="utf-8")):
            t = "\n".join(p.get("paragraphs") or [])
            if len(t) >= 20 and t not in seen:
                seen.add(t)
                out.append(t)
    return out


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return r


LAST_CPU = {}


def timed_rss(cmd):
    """Runs cmd under /usr/bin/time -v; returns (seconds, peak RSS MiB, stdout) and
    leaves its CPU seconds (user + system) in LAST_CPU["secs"]."""
    t = time.time()
    r = run(["/usr/bin/time", "-v"] + cmd)
    secs = time.time() - t
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", r.stderr))
    LAST_CPU["secs"] = cpu
    return secs, (int(m.group(1)) / 1024 if m else None), r.stdout


def write_jsonl(path, docs):
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")


def m6_dedup(name, docs, shards=8, extra=(), out="out", reuse=False):
    base = os.path.join(OUT, name)
    if not reuse:
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        jl = os.path.join(base, "in.jsonl")
        write_jsonl(jl, [{"id": d["id"], "source": d.get("source", ""), "text": d["text"]} for d in docs])
        run([BIN, "docs", jl, os.path.join(base, "in"), str(shards)])
    shutil.rmtree(os.path.join(base, out), ignore_errors=True)
    secs, rss, _ = timed_rss([BIN, "dedup", os.path.join(base, "in"), os.path.join(base, out), str(THREADS)] + list(extra))
    return base, secs, rss


def read_table(d, cols):
    rows = []
    for f in sorted(glob.glob(os.path.join(d, "*.parquet"))):
        rows.extend(pq.read_table(f, columns=cols).to_pylist())
    return rows


def m6_pairs(base, out="out"):
    """(removed source_id, kept source_id) for every removal."""
    id2sid = {r["id"]: r["source_id"] for r in read_table(os.path.join(base, "in"), ["id", "source_id"])}
    return [(r["source_id"], id2sid[r["kept_id"]]) for r in read_table(os.path.join(base, out, "duplicates"), ["source_id", "kept_id"])]


def score(removals, group, expected):
    """removals: (removed key, kept key). A removal is right when both are in one planted group."""
    tp = sum(1 for a, b in removals if group.get(a) is not None and group.get(a) == group.get(b))
    fp = len(removals) - tp
    p = tp / len(removals) if removals else 1.0
    r = tp / expected if expected else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "true_removals": tp, "false_removals": fp, "expected_removals": expected}


def norm(text):
    """The same normalisation m6 applies (NFKC, lower case, t2s, drop non-alphanumerics)."""
    t = T2S.convert(unicodedata.normalize("NFKC", text)).lower()
    return "".join(ch for ch in t if ch.isalnum())


class UF:
    def __init__(self):
        self.p = {}

    def find(self, x):
        self.p.setdefault(x, x)
        while self.p[x] != x:
            self.p[x] = self.p[self.p[x]]
            x = self.p[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


def shingles(text):
    s = norm(text)
    return [s[i : i + NGRAM] for i in range(max(1, len(s) - NGRAM + 1))]


def lsh_layout(threshold):
    """The (bands, rows) datasketch picks for a threshold (equal weights on false
    positives and negatives); rensa is given the same so the two differ only in code."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, NUM_PERM, 0.5, 0.5)


def datasketch_dedup(docs, threshold=THRESHOLD):
    from datasketch import MinHash, MinHashLSH

    t = time.time()
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    sigs = {}
    for d in docs:
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([x.encode("utf-8") for x in set(shingles(d["text"]))])
        sigs[d["id"]] = m
        lsh.insert(d["id"], m)
    uf = UF()
    order = {d["id"]: i for i, d in enumerate(docs)}
    for k, m in sigs.items():
        for c in lsh.query(m):
            if c != k and m.jaccard(sigs[c]) >= threshold:
                uf.union(order[k], order[c])
    removals = []
    for d in docs:
        r = uf.find(order[d["id"]])
        if r != order[d["id"]]:
            removals.append((d["id"], docs[r]["id"]))
    return removals, time.time() - t


def rensa_dedup(docs, threshold=THRESHOLD):
    """rensa's RMinHash + RMinHashLSH (Rust behind Python), the same shingles and layout."""
    from rensa import RMinHash, RMinHashLSH

    # rensa needs bands dividing num_perm: the divisor nearest datasketch's choice.
    want, _rows = lsh_layout(threshold)
    bands = min((b for b in range(1, NUM_PERM + 1) if NUM_PERM % b == 0), key=lambda b: (abs(b - want), b))
    t = time.time()
    lsh = RMinHashLSH(threshold=threshold, num_perm=NUM_PERM, num_bands=bands)
    sigs = []
    for i, d in enumerate(docs):
        m = RMinHash(num_perm=NUM_PERM, seed=42)
        m.update(shingles(d["text"]))
        sigs.append(m)
        lsh.insert(i, m)
    uf = UF()
    for i, m in enumerate(sigs):
        for c in lsh.query(m):
            if c != i and m.jaccard(sigs[c]) >= threshold:
                uf.union(i, c)
    removals = []
    for i, d in enumerate(docs):
        r = uf.find(i)
        if r != i:
            removals.append((d["id"], docs[r]["id"]))
    return removals, time.time() - t


def hard_quality():
    """The hard set: m6 swept over thresholds and band layouts on both splits, the
    default chosen on `tune` (best F1, then precision, then the higher threshold), peers
    swept over thresholds on `test`."""
    import dedup_hardset as H

    sets = H.build(DATA, T2S.convert)
    res = {"sources": "chinese-poetry Tang shi, Song shi, Song ci; debian-handbook zh-CN and zh-TW paragraphs (alternate chapters)",
           "copy_kinds": H.COPY_KINDS, "negative_kinds": H.NEGATIVE_KINDS, "splits": {}}
    for split, (docs, group, expected, counts) in sets.items():
        base = None
        rows = []
        for bands, r in LAYOUTS:
            for t in SWEEP:
                name = f"hard_{split}"
                out = f"out_{bands}x{r}_{t}"
                base, secs, rss = m6_dedup(name, docs, shards=4, extra=[f"threshold={t}", f"bands={bands}", f"rows={r}"], out=out, reuse=base is not None)
                row = {"bands": bands, "rows": r, "threshold": t}
                row.update(H.evaluate(m6_pairs(base, out), docs, group, expected))
                row["seconds"] = round(secs, 3)
                rows.append(row)
                shutil.rmtree(os.path.join(base, out), ignore_errors=True)
        res["splits"][split] = {"docs": len(docs), "bytes": sum(len(d["text"].encode()) for d in docs), "planted_copies": expected, "counts": counts, "m6_sweep": rows}
    tune = res["splits"]["tune"]["m6_sweep"]
    best = max(tune, key=lambda x: (x["f1"], x["precision"], x["threshold"], -x["bands"]))
    res["chosen"] = {"bands": best["bands"], "rows": best["rows"], "threshold": best["threshold"], "tune_f1": best["f1"],
                     "rule": "highest F1 on the tune split, ties to higher precision, then the higher threshold, then fewer bands"}
    test = res["splits"]["test"]
    docs, group, expected, _ = sets["test"]
    res["chosen"]["test"] = next(x for x in test["m6_sweep"] if (x["bands"], x["rows"], x["threshold"]) == (best["bands"], best["rows"], best["threshold"]))
    default = next(x for x in test["m6_sweep"] if (x["bands"], x["rows"], x["threshold"]) == (LAYOUTS[0][0], LAYOUTS[0][1], THRESHOLD))
    res["m6_default_on_test"] = default
    res["default_matches_choice"] = (LAYOUTS[0][0], LAYOUTS[0][1], THRESHOLD) == (best["bands"], best["rows"], best["threshold"])
    peers = {}
    for name, fn in (("datasketch", datasketch_dedup), ("rensa", rensa_dedup)):
        prow = []
        for t in [0.3, 0.4, 0.5, 0.6, 0.7]:
            try:
                rem, secs = fn(docs, t)
            except Exception as e:  # noqa: BLE001
                prow.append({"threshold": t, "error": f"{type(e).__name__}: {e}"[:300]})
                continue
            b, r = lsh_layout(t)
            if name == "rensa":
                b = min((x for x in range(1, NUM_PERM + 1) if NUM_PERM % x == 0), key=lambda x: (abs(x - b), x))
                r = NUM_PERM // b
            row = {"threshold": t, "bands_rows": [b, r]}
            row.update(H.evaluate(rem, docs, group, expected))
            row["seconds"] = round(secs, 3)
            row["docs_per_s_per_core"] = round(len(docs) / secs, 1)
            prow.append(row)
        peers[name] = prow
    test["peers"] = peers
    return res


def images_bench():
    """Image near duplicates (crops, padding, watermarks, hard negatives): bench/dedup_images.py."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("dedup_images", os.path.join(_here, "dedup_images.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.images_bench()


def big_shard(poems, n):
    """Issue 14 point 3: peak RSS deduplicating one shard of `n` rows,
    and the work files' and signatures' bytes per document (run with --keep-work)."""
    # Eight random lines of real poems per document: rows rarely share more than a line,
    # so this measures the shard's size, not a flood of duplicates (see clusters_memory).
    rng = random.Random(11)
    lines = [l for p in poems for l in p.split("\n") if len(l) >= 5]
    docs = [{"id": f"b{i}", "source": "big", "text": "\n".join(lines[rng.randrange(len(lines))] for _ in range(8))} for i in range(n)]
    base, secs, rss = m6_dedup("big_shard", docs, shards=1, extra=["keep_work=true"])
    del docs
    ins = glob.glob(os.path.join(base, "in", "*.parquet"))
    work = os.path.join(base, "out", "_work")

    def size(pattern):
        return sum(os.path.getsize(f) for f in glob.glob(os.path.join(work, pattern)))

    sig = sum(os.path.getsize(f) for f in glob.glob(os.path.join(base, "out", "signatures", "*.parquet")))
    kept = json.load(open(os.path.join(base, "out", "manifest.json")))
    kept_rows = sum(x["rows"] for x in kept["shards"])
    res = {"rows": n, "input_shards": len(ins), "seconds": round(secs, 2), "cpu_seconds": round(LAST_CPU["secs"], 2), "peak_rss_mib": rss,
           "work_bytes_per_doc": {"bin": round(size("sig/*.bin") / n, 1), "ids": round(size("sig/*.ids") / n, 1), "runs": round(size("sig/*.run") / n, 1),
                                  "pairs": round(size("pairs/*.bin") / n, 2)},
           "signatures_bytes_per_kept_doc": round(sig / max(1, kept_rows), 1), "kept_rows": kept_rows}
    shutil.rmtree(base, ignore_errors=True)
    return res


def clusters_memory(poems, n):
    """The single-process clusters phase's peak RSS against the number of duplicates:
    `n` documents with 0 %, 10 % and 30 % planted copies, phases run one by one through
    `m6corpus dedup --phase` so the clusters step is measured alone."""
    m6 = os.path.join(ROOT, "target", "release", "m6corpus")
    rng = random.Random(13)
    out = []
    for frac in (0.0, 0.1, 0.3):
        n_copy = int(n * frac)
        docs = [{"id": f"m{i}", "source": "mem", "text": poems[(i * 2) % len(poems)] + "\n\n" + poems[(i * 2 + 1) % len(poems)]} for i in range(n - n_copy)]
        for j in range(n_copy):
            t = docs[rng.randrange(len(docs))]["text"]
            docs.append({"id": f"c{j}", "source": "mem", "text": t[: int(len(t) * 0.85)] if j % 2 else t})
        base = os.path.join(OUT, "clusters_mem")
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        write_jsonl(os.path.join(base, "in.jsonl"), docs)
        run([BIN, "docs", os.path.join(base, "in.jsonl"), os.path.join(base, "in"), str(max(1, n // DOCS_PER_SHARD))])
        common = [m6, "dedup", "--quiet", "--threads", str(THREADS), "--input", os.path.join(base, "in"), "--output", os.path.join(base, "out")]
        row = {"docs": n, "planted_copies": n_copy}
        for phase in ("sign", "pairs", "clusters", "write"):
            secs, rss, _ = timed_rss(common + ["--phase", phase])
            row[phase] = {"seconds": round(secs, 2), "peak_rss_mib": rss}
            if phase == "clusters":
                done = json.load(open(os.path.join(base, "out", "_work", "clusters.json")))
                row.update({"verified_pairs": done.get("pairs"), "rows_in_pairs": done.get("rows_in_pairs"), "removed": done.get("removed")})
        out.append(row)
        shutil.rmtree(base, ignore_errors=True)
    return out


def main():
    if not os.path.isfile(BIN):
        sys.exit(f"{BIN} missing: cargo build --release -p m6-stage-dedup")
    os.makedirs(OUT, exist_ok=True)
    poems = load_poems()
    res = {"nproc": os.cpu_count(), "threads": THREADS, "threshold": THRESHOLD, "num_perm": NUM_PERM, "ngram": NGRAM,
           "source": "text quality: bench/lib/dedup_hardset.py; throughput: data/chinese-poetry quantangshi (Tang+Song poems, traditional); images: data/photos (scikit-image)"}

    # ---- quality on the hard planted set, per kind and per threshold
    res["text_quality"] = hard_quality()
    if os.environ.get("DEDUP_BENCH_ONLY") == "quality":
        # For choosing defaults quickly; never written to bench/results.
        print(json.dumps(res, indent=2, ensure_ascii=False))
        return

    # ---- throughput and memory as the input grows 10x (2-poem documents)
    rng = random.Random(7)
    idx = list(range(len(poems)))
    rng.shuffle(idx)
    tp = {}
    for label, n in (("small", SMALL), ("large", SMALL * 10)):
        k = 2 if n * 2 <= len(poems) else 1
        sdocs = [{"id": f"d{i}", "source": "tp", "text": "\n\n".join(poems[idx[(i * k + j) % len(poems)]] for j in range(k))} for i in range(n)]
        nbytes = sum(len(d["text"].encode()) for d in sdocs)
        row = {"docs": n, "bytes": nbytes, "poems_per_doc": k}
        # Shards of a fixed size, as a real corpus grows: more shards, not bigger ones.
        shards = max(1, n // DOCS_PER_SHARD)
        row["shards"] = shards
        for mode, extra in (("exact", ["near=false"]), ("minhash", [])):
            # Best of two runs: the machine is shared with other work.
            best = None
            for _ in range(2):
                _, secs, rss = m6_dedup(f"tp_{label}_{mode}", sdocs, shards=shards, extra=extra)
                if best is None or secs < best[0]:
                    best = (secs, rss, LAST_CPU["secs"])
            secs, rss, cpu = best
            row[mode] = {"seconds": round(secs, 3), "cpu_seconds": round(cpu, 3),
                         "docs_per_s_per_core": round(n / secs / THREADS, 1),
                         "docs_per_cpu_s": round(n / cpu, 1),
                         "mb_per_s_per_core": round(nbytes / 1e6 / secs / THREADS, 2), "peak_rss_mib": rss}
        # The peers run in one thread, so their wall time is their CPU time.
        for peer, fn in (("datasketch", datasketch_dedup), ("rensa", rensa_dedup)):
            _, p_secs = fn(sdocs)
            row[f"{peer}_minhash"] = {"seconds": round(p_secs, 3), "docs_per_s_per_core": round(n / p_secs, 1),
                                      "mb_per_s_per_core": round(nbytes / 1e6 / p_secs, 2)}
            row[f"ratio_minhash_docs_per_s_per_core_vs_{peer}"] = round(row["minhash"]["docs_per_s_per_core"] / row[f"{peer}_minhash"]["docs_per_s_per_core"], 1)
            row[f"ratio_minhash_docs_per_cpu_s_vs_{peer}"] = round(row["minhash"]["docs_per_cpu_s"] / row[f"{peer}_minhash"]["docs_per_s_per_core"], 1)
        tp[label] = row
        for mode in ("exact", "minhash"):
            shutil.rmtree(os.path.join(OUT, f"tp_{label}_{mode}"), ignore_errors=True)
    tp["rss_growth_minhash_large_over_small"] = round(tp["large"]["minhash"]["peak_rss_mib"] / tp["small"]["minhash"]["peak_rss_mib"], 2)
    tp["note"] = ("seconds are end to end: read shards, sign, partition, cluster, write kept rows and audit rows; "
                  "per core = / threads (wall), per CPU second = / (user + system); the peers' (datasketch, rensa) time covers "
                  "only in-memory normalise + shingle + sign + LSH insert/query + verify + union-find, no I/O, one thread; "
                  "all at the m6 default threshold, peers with datasketch's optimal band layout for it")
    res["throughput"] = tp

    res["clusters_memory"] = clusters_memory(poems, int(os.environ.get("DEDUP_BENCH_CLUSTERS", "100000")))

    big = int(os.environ.get("DEDUP_BENCH_BIG_SHARD", "0"))
    if big:
        # The same at a tenth of the rows: memory should not follow the shard's size.
        res["one_big_shard"] = {"rows_1m": big_shard(poems, big), "rows_100k": big_shard(poems, big // 10)}

    res["images"] = images_bench()
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "dedup.json"), "w") as f:
        json.dump(res, f, indent=2, ensure_ascii=False)
    print(json.dumps(res, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
