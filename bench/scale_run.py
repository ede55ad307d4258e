#!/usr/bin/env python3
"""Scale-out measurements for issue 15, with the real `m6corpus` binary:

  chain     the whole text chain (ingest -> dedup -> filter -> tokenize) on a small and a
            large input of the same kind of documents: per stage wall, CPU seconds, peak
            RSS, rows and bytes written (and dedup's work folder), so RSS flatness and the
            per-core rate can be read off one table.
  dedup1m   dedup of ~1 M documents with 1, 2 and 4 processes launched at once
            (`--task-count P`, one thread each): per process wall, CPU, peak RSS; the outputs
            must be byte-identical to 1 process. The same run phase by phase (sign, pairs,
            clusters, write) gives the clusters step's memory against its duplicate pairs.
  sizes     ingest and dedup alone at 1 and 2 GB of the same documents (RSS flatness).
  images    the image chain (ingest -> dedup -> filter -> tokenize, raw and JPEG samples)
            on captioned JPEGs of M6-like size cut from the real photos.
  image_scale  image dedup alone at N and 10 N caption-less JPEGs (IMAGES_SMALL, default
            2000): CPU per image and peak RSS, one thread (is the crop-tolerant candidate
            search linear and memory-bounded?).
  incr      a 10% batch deduplicated `--against` the 1 M corpus, beside a full re-dedup of
            the union, with the planted cross-batch copies counted.

Documents are real text, recombined: each is a random run of real verse lines (the
chinese-poetry package, ~1.9 M distinct lines) so that documents are unique unless a copy
is planted on purpose; planted copies are truncated, line-reordered, character-edited and
boilerplate-wrapped versions of an earlier document (the kinds the dedup bench uses).

Usage: bench/scale_run.py [chain|dedup1m|incr ...] (default: all). Env: SCALE_GB (large
chain input, default 5), SMALL_MB (default 100), DOCS_1M (default 1000000), OUT (work
folder, default bench/out/scale). Writes bench/results/scale.json (merging sections).
"""
import glob, hashlib, json, os, random, shutil, subprocess, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import parquet_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("M6_BIN", os.path.join(ROOT, "target/release/m6corpus"))
DATA = os.environ.get("M6_DATA_DIR", os.path.join(ROOT, "data"))
OUT = os.environ.get("OUT", os.path.join(ROOT, "bench/out/scale"))
# The dedup phases, in the order they run.
PHASES = ("sign", "pairs", "clusters", "write")
RES = os.environ.get("RES", os.path.join(ROOT, "bench/results/scale.json"))
NPROC = os.cpu_count() or 1

BOILER = ["首页 | 登录 | 注册 | 帮助中心", "版权所有 © 2026 本站保留所有权利", "分享到：微博 微信 QQ空间",
          "上一篇 下一篇 返回列表", "免责声明：本文内容来自网络，如有侵权请联系删除。", "热门推荐 相关阅读 猜你喜欢"]


def load_lines():
    """Every distinct verse line of the chinese-poetry package (traditional and simplified)."""
    seen, lines = set(), []
    for f in sorted(glob.glob(os.path.join(DATA, "chinese-poetry/dist/**/*.json"), recursive=True)):
        try:
            d = json.load(open(f, encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(d, list):
            continue
        for p in d:
            if isinstance(p, dict):
                for line in p.get("paragraphs") or p.get("content") or []:
                    if isinstance(line, str) and len(line) >= 8 and line not in seen:
                        seen.add(line)
                        lines.append(line)
    if len(lines) < 100000:
        sys.exit(f"only {len(lines)} lines under {DATA}/chinese-poetry: run `make data`")
    return lines


def mutate(rng, lines):
    """A realistic near copy of a document given as its lines."""
    kind = rng.choice(["truncated", "reordered", "edited", "boilerplate"])
    ls = list(lines)
    if kind == "truncated":
        ls = ls[: max(2, int(len(ls) * rng.uniform(0.7, 0.9)))]
    elif kind == "reordered":
        cut = rng.randrange(1, max(2, len(ls)))
        ls = ls[cut:] + ls[:cut]
    elif kind == "edited":
        for _ in range(max(1, len(ls) // 8)):
            i = rng.randrange(len(ls))
            s = ls[i]
            j = rng.randrange(len(s))
            ls[i] = s[:j] + rng.choice("的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要") + s[j + 1:]
    else:
        ls = rng.sample(BOILER, 2) + ls + rng.sample(BOILER, 2)
    return ls, kind


def gen_docs(rng, lines, n_docs, lines_per_doc, copy_rate, prefix, remember=None):
    """Yields (id, text, planted_of) for n_docs documents; `remember` (a list) collects
    (id, lines) of originals so another batch can plant copies of them."""
    recent = []
    for i in range(n_docs):
        did = f"{prefix}{i:08d}"
        if recent and rng.random() < copy_rate:
            src_id, src = rng.choice(recent)
            ls, _ = mutate(rng, src)
            yield did, "\n".join(ls), src_id
            continue
        k = rng.randint(*lines_per_doc)
        ls = [lines[rng.randrange(len(lines))] for _ in range(k)]
        if len(recent) < 20000:
            recent.append((did, ls))
        else:
            recent[rng.randrange(len(recent))] = (did, ls)
        if remember is not None and rng.random() < 0.05:
            remember.append((did, ls))
        yield did, "\n".join(ls), None


def write_jsonl_files(folder, docs, file_bytes):
    os.makedirs(folder, exist_ok=True)
    n, size, f, total, planted = 0, 0, None, 0, 0
    for did, text, src in docs:
        if f is None or size >= file_bytes:
            if f:
                f.close()
            f = open(os.path.join(folder, f"part-{n:05d}.jsonl"), "w", encoding="utf-8")
            n, size = n + 1, 0
        line = json.dumps({"id": did, "title": "", "text": text, "source": "poetry-lines"}, ensure_ascii=False) + "\n"
        f.write(line)
        b = len(line.encode("utf-8"))
        size += b
        total += len(text.encode("utf-8"))
        planted += src is not None
    if f:
        f.close()
    return {"files": n, "text_bytes": total, "planted_copies": planted}


def _timed(cmd, path):
    # Peak RSS through /usr/bin/time, not this process' wait4: a child forked from this
    # Python process (which holds the line pool) would inherit its high-water mark.
    return ["/usr/bin/time", "-f", "%e %U %S %M", "-o", path] + cmd


def _read_time(path):
    wall, user, sys_, kb = open(path).read().split()[-4:]
    return {"wall_s": round(float(wall), 2), "cpu_s": round(float(user) + float(sys_), 2), "peak_rss_mib": round(int(kb) / 1024, 1)}


def measure(cmd):
    """Runs cmd; returns wall seconds, CPU seconds (user+sys) and peak RSS (MiB) of it."""
    tf = os.path.join(OUT, ".time")
    r = subprocess.run(_timed(cmd, tf), capture_output=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.decode()[-3000:]}")
    return _read_time(tf), r.stdout


def launch_all(cmds):
    """Starts every command at once; returns per-process measurements and the total wall."""
    t = time.time()
    tfs = [os.path.join(OUT, f".time{i}") for i in range(len(cmds))]
    procs = [subprocess.Popen(_timed(c, tf), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c, tf in zip(cmds, tfs)]
    errs = [p.communicate()[1] for p in procs]
    wall = round(time.time() - t, 2)
    for c, p, e in zip(cmds, procs, errs):
        if p.returncode != 0:
            sys.exit(f"{' '.join(c)} failed ({p.returncode}):\n{e.decode()[-3000:]}")
    return [_read_time(tf) for tf in tfs], wall


def du(path):
    total = 0
    for dp, _, fs in os.walk(path):
        for f in fs:
            try:
                total += os.path.getsize(os.path.join(dp, f))
            except OSError:
                pass
    return total


def rows_of(ds):
    m = json.load(open(os.path.join(ds, "manifest.json")))
    return sum(s.get("rows", 0) for s in m.get("shards", []))


def shard_digest(ds):
    """blake2 over every shard file's name and bytes (manifests carry timestamps)."""
    h = hashlib.blake2b(digest_size=16)
    for dp, dns, fs in sorted(os.walk(ds)):
        dns.sort()
        for f in sorted(fs):
            if f.endswith(".parquet"):
                p = os.path.join(dp, f)
                h.update(os.path.relpath(p, ds).encode())
                h.update(open(p, "rb").read())
    return h.hexdigest()


def save(section, value):
    os.makedirs(os.path.dirname(RES), exist_ok=True)
    res = json.load(open(RES)) if os.path.exists(RES) else {}
    res.update({"nproc": NPROC, "machine": os.uname().nodename, section: value})
    json.dump(res, open(RES, "w"), indent=1, ensure_ascii=False)
    print(json.dumps({section: value}, ensure_ascii=False, indent=1), flush=True)


def m6(*args):
    return [BIN, *args, "--quiet"]


# ---------------------------------------------------------------- the text chain


def chain_run(label, lines, target_bytes, vocab, threads):
    base = os.path.join(OUT, f"chain-{label}")
    shutil.rmtree(base, ignore_errors=True)
    raw = os.path.join(base, "raw")
    rng = random.Random(7)
    # Documents of 10-80 lines: 45 on average, each line plus its newline.
    mean_line = sum(len(l.encode("utf-8")) + 1 for l in lines[:: max(1, len(lines) // 20000)]) / len(lines[:: max(1, len(lines) // 20000)])
    n_docs = int(target_bytes / (45 * mean_line)) + 1
    t = time.time()
    gen = write_jsonl_files(raw, gen_docs(rng, lines, n_docs, (10, 80), 0.05, f"{label}-"), 48 << 20)
    gen["docs"], gen["generate_s"] = n_docs, round(time.time() - t, 1)
    print(f"[chain {label}] generated {gen}", flush=True)
    th = ["--threads", str(threads)]
    stages, peak_disk = {}, 0

    def stage(name, cmd, out, inp_bytes):
        nonlocal peak_disk
        m, _ = measure(cmd)
        m["output_bytes"] = du(out)
        m["rows_out"] = rows_of(out) if os.path.exists(os.path.join(out, "manifest.json")) else None
        m["mb_per_cpu_s"] = round(inp_bytes / 1e6 / max(m["cpu_s"], 1e-9), 2)
        peak_disk = max(peak_disk, du(base))
        stages[name] = m
        print(f"[chain {label}] {name}: {m}", flush=True)

    docs, dd, clean, samples = (os.path.join(base, x) for x in ("docs", "dedup", "clean", "samples"))
    tb = gen["text_bytes"]
    stage("ingest", m6("ingest", "--input", raw, "--output", docs, *th), docs, tb)
    shutil.rmtree(raw)
    stage("dedup", m6("dedup", "--input", docs, "--output", dd, "--set", "keep_work=true", *th), dd, tb)
    stages["dedup"]["work_bytes"] = du(os.path.join(dd, "_work"))
    stages["dedup"]["signatures_bytes"] = du(os.path.join(dd, "signatures"))
    shutil.rmtree(os.path.join(dd, "_work"), ignore_errors=True)
    stages["dedup"]["output_bytes"] = du(dd)
    stages["ingest"]["rows_in_docs"] = n_docs
    shutil.rmtree(docs)
    if vocab is None:
        vocab = os.path.join(OUT, "vocab.txt")
        measure([BIN, "tokenizer", "train", "--input", dd, "--output", vocab, "--vocab-size", "16000", *th])
    stage("filter", m6("filter", "--input", dd, "--output", clean, *th), clean, tb)
    shutil.rmtree(dd)
    stage("tokenize", m6("tokenize", "--input", clean, "--output", samples, "--set", f'tokenizer="{vocab}"', *th), samples, tb)
    cpu = sum(s["cpu_s"] for s in stages.values())
    wall = sum(s["wall_s"] for s in stages.values())
    res = {"input": gen, "threads": threads, "stages": stages, "chain_cpu_s": round(cpu, 1), "chain_wall_s": round(wall, 1),
           "chain_mb_per_cpu_s": round(tb / 1e6 / cpu, 3), "peak_disk_bytes": peak_disk,
           "peak_rss_mib_max_stage": max(s["peak_rss_mib"] for s in stages.values())}
    shutil.rmtree(base, ignore_errors=True)
    return res, vocab


def chain(lines):
    small_mb = int(os.environ.get("SMALL_MB", "100"))
    big_gb = float(os.environ.get("SCALE_GB", "5"))
    threads = int(os.environ.get("THREADS", str(NPROC)))
    small, vocab = chain_run("small", lines, small_mb << 20, None, threads)
    save("chain_small", small)
    big, _ = chain_run("large", lines, int(big_gb * (1 << 30)), vocab, threads)
    big["rss_ratio_large_over_small"] = {k: round(big["stages"][k]["peak_rss_mib"] / small["stages"][k]["peak_rss_mib"], 2) for k in big["stages"]}
    big["cpu_per_byte_ratio_large_over_small"] = round((big["chain_cpu_s"] / big["input"]["text_bytes"]) / (small["chain_cpu_s"] / small["input"]["text_bytes"]), 2)
    save("chain_large", big)


def dedup_sizes(lines):
    """Ingest and dedup peak RSS at 1 and 2 GB of the chain's documents: between the
    104 MB and 5 GB chain runs, where dedup's fixed buffers fill."""
    res = {}
    for gb in (1.0, 2.0):
        base = os.path.join(OUT, f"mid{gb}")
        shutil.rmtree(base, ignore_errors=True)
        rng = random.Random(7)
        mean_line = sum(len(l.encode("utf-8")) + 1 for l in lines[::80]) / len(lines[::80])
        n = int(gb * (1 << 30) / (45 * mean_line)) + 1
        gen = write_jsonl_files(os.path.join(base, "raw"), gen_docs(rng, lines, n, (10, 80), 0.05, "m-"), 48 << 20)
        ing, _ = measure(m6("ingest", "--input", os.path.join(base, "raw"), "--output", os.path.join(base, "docs"), "--threads", "2"))
        shutil.rmtree(os.path.join(base, "raw"))
        dd, _ = measure(m6("dedup", "--input", os.path.join(base, "docs"), "--output", os.path.join(base, "dd"), "--threads", "2"))
        res[str(gb)] = {"text_bytes": gen["text_bytes"], "docs": n, "ingest": ing, "dedup": dd}
        print(f"[dedup sizes] {gb} GB: {res[str(gb)]}", flush=True)
        shutil.rmtree(base)
    save("dedup_rss_by_input_size", res)


# ---------------------------------------------------------------- dedup at 1 M, 1/2/4 processes


def corpus_1m(lines):
    base = os.path.join(OUT, "d1m")
    docs = os.path.join(base, "docs")
    if os.path.exists(os.path.join(docs, "manifest.json")):
        return base, json.load(open(os.path.join(base, "gen.json")))
    shutil.rmtree(base, ignore_errors=True)
    n = int(os.environ.get("DOCS_1M", "1000000"))
    rng = random.Random(11)
    keep = []
    gen = write_jsonl_files(os.path.join(base, "raw"), gen_docs(rng, lines, n, (6, 24), 0.10, "old-", remember=keep), 24 << 20)
    gen["docs"] = n
    measure(m6("ingest", "--input", os.path.join(base, "raw"), "--output", docs, "--threads", str(NPROC)))
    shutil.rmtree(os.path.join(base, "raw"))
    # The incremental batch: 10% of the corpus' size; 10% of it near copies of corpus
    # documents, 5% copies within the batch, the rest new.
    rng = random.Random(12)
    nb = n // 10

    def batch():
        fresh = gen_docs(rng, lines, nb, (6, 24), 0.05 / 0.9, "new-")
        for i in range(nb):
            if rng.random() < 0.10:
                src_id, src = rng.choice(keep)
                ls, _ = mutate(rng, src)
                yield f"cross-{i:08d}", "\n".join(ls), src_id
            else:
                yield next(fresh)

    bgen = write_jsonl_files(os.path.join(base, "rawnew"), batch(), 24 << 20)
    bgen["docs"] = nb
    measure(m6("ingest", "--input", os.path.join(base, "rawnew"), "--output", os.path.join(base, "new"), "--threads", str(NPROC)))
    shutil.rmtree(os.path.join(base, "rawnew"))
    gen["batch"] = bgen
    json.dump(gen, open(os.path.join(base, "gen.json"), "w"))
    return base, gen


def dedup1m(lines):
    base, gen = corpus_1m(lines)
    docs = os.path.join(base, "docs")
    res = {"input": gen, "input_shards": len(json.load(open(os.path.join(docs, "manifest.json")))["shards"]), "by_processes": {}}
    ref = None
    for p in (1, 2, 4):
        out = os.path.join(base, f"out{p}")
        shutil.rmtree(out, ignore_errors=True)
        rows, wall = launch_all([m6("dedup", "--input", docs, "--output", out, "--task-index", str(i), "--task-count", str(p), "--threads", "1") for i in range(p)])
        dig = shard_digest(out)
        ref = ref or dig
        res["by_processes"][str(p)] = {"wall_s": wall, "processes": rows, "cpu_s_total": round(sum(r["cpu_s"] for r in rows), 2),
                                       "max_peak_rss_mib": max(r["peak_rss_mib"] for r in rows), "kept_rows": rows_of(out),
                                       "byte_identical_to_1": dig == ref}
        print(f"[dedup1m] P={p}: {res['by_processes'][str(p)]}", flush=True)
        if p != 1:
            shutil.rmtree(out)
    # Phase by phase in one process: the clusters step's memory against its pairs.
    out = os.path.join(base, "phased")
    shutil.rmtree(out, ignore_errors=True)
    phases = {}
    for ph in PHASES:
        extra = ["--set", "keep_work=true"]
        m, _ = measure(m6("dedup", "--input", docs, "--output", out, "--phase", ph, "--threads", "1", *extra))
        phases[ph] = m
    work = os.path.join(out, "_work")
    phases["work_bytes"] = du(work)
    phases["pairs_files_bytes"] = sum(du(p) for p in glob.glob(os.path.join(work, "*pairs*")))
    phases["byte_identical_to_1"] = shard_digest(out) == ref
    res["phase_by_phase_1_process"] = phases
    shutil.rmtree(out)
    res["removed_rows"] = gen["docs"] - res["by_processes"]["1"]["kept_rows"]
    res["note"] = (f"{NPROC} cores: with more processes than cores the wall time cannot fall below "
                   "total CPU / cores; the CPU total shows the cost of slicing (waiting is not CPU)")
    save("dedup_1m", res)


def incr(lines):
    base, gen = corpus_1m(lines)
    old = os.path.join(base, "out1")
    if not os.path.exists(os.path.join(old, "manifest.json")):
        sys.exit("run `dedup1m` first (the incremental batch dedups against its 1-process output)")
    new = os.path.join(base, "new")
    old_before = shard_digest(old)
    inc_out, full_out = os.path.join(base, "inc"), os.path.join(base, "full")
    for d in (inc_out, full_out):
        shutil.rmtree(d, ignore_errors=True)
    inc, _ = measure(m6("dedup", "--input", new, "--output", inc_out, "--against", old, "--threads", str(NPROC)))
    full, _ = measure(m6("dedup", "--input", os.path.join(base, "docs"), new, "--output", full_out, "--threads", str(NPROC)))
    import pyarrow.parquet as pq

    def ids(ds):
        """The ids of a dataset's main shards, from its manifest (not its side datasets)."""
        out = []
        for sh in json.load(open(os.path.join(ds, "manifest.json")))["shards"]:
            out += pq.read_table(os.path.join(ds, sh["file"]), columns=["source_id"]).column("source_id").to_pylist()
        return out

    batch = ids(new)
    kept_inc = set(ids(inc_out))
    kept_full_new = {i for i in ids(full_out) if not i.startswith("old-")}
    res = {"batch_docs": len(batch), "corpus_docs": gen["docs"],
           "incremental": inc, "full_union": full,
           "speedup_wall": round(full["wall_s"] / inc["wall_s"], 2), "speedup_cpu": round(full["cpu_s"] / inc["cpu_s"], 2),
           "kept_incremental": len(kept_inc), "kept_of_batch_by_full": len(kept_full_new),
           "cross_copies_planted": sum(1 for i in batch if i.startswith("cross-")),
           "cross_copies_kept_incremental": sum(1 for i in kept_inc if i.startswith("cross-")),
           "cross_copies_kept_full": sum(1 for i in kept_full_new if i.startswith("cross-")),
           "agreement_jaccard_of_kept_batch_ids": round(len(kept_inc & kept_full_new) / max(1, len(kept_inc | kept_full_new)), 4),
           "old_untouched": shard_digest(old) == old_before}
    save("incremental_10pct", res)


# ---------------------------------------------------------------- the image chain


def make_images(folder, n, lines, seed=5):
    """n captioned JPEGs cut from the real photos at M6-like sizes (M6: 1.9 TB / 60 M
    images, about 32 KB each): a random scale, a random window, JPEG quality 70-90;
    a caption of two real lines in a sidecar .txt. Windows of one photo overlap, so
    some are genuine near duplicates (crops) and dedup removes them."""
    from PIL import Image
    rng = random.Random(seed)
    photos = []
    for f in sorted(glob.glob(os.path.join(DATA, "photos/**/*.png"), recursive=True)):
        im = Image.open(f).convert("RGB")
        if min(im.size) >= 128:
            photos.append(im)
    os.makedirs(folder, exist_ok=True)
    total = 0
    for i in range(n):
        im = photos[rng.randrange(len(photos))]
        sc = rng.uniform(0.6, 2.0)
        big = im.resize((max(96, int(im.width * sc)), max(96, int(im.height * sc))))
        w, h = rng.randint(min(200, big.width), min(640, big.width)), rng.randint(min(160, big.height), min(480, big.height))
        x, y = rng.randint(0, big.width - w), rng.randint(0, big.height - h)
        p = os.path.join(folder, f"img{i:07d}.jpg")
        big.crop((x, y, x + w, y + h)).save(p, quality=rng.randint(70, 90))
        total += os.path.getsize(p)
        with open(p[:-4] + ".txt", "w", encoding="utf-8") as f:
            f.write(lines[rng.randrange(len(lines))] + lines[rng.randrange(len(lines))])
    return {"images": n, "bytes": total, "mean_kb": round(total / n / 1024, 1)}


def image_chain(lines):
    n = int(os.environ.get("IMAGES", "5000"))
    threads = int(os.environ.get("THREADS", str(NPROC)))
    base = os.path.join(OUT, "images")
    shutil.rmtree(base, ignore_errors=True)
    raw = os.path.join(base, "raw")
    t = time.time()
    gen = make_images(raw, n, lines)
    gen["generate_s"] = round(time.time() - t, 1)
    vocab = os.path.join(OUT, "vocab.txt")
    if not os.path.exists(vocab):
        sys.exit("run `chain` first (its vocabulary tokenizes the captions)")
    th = ["--threads", str(threads)]
    pairs, dd, clean, samples = (os.path.join(base, x) for x in ("pairs", "dedup", "clean", "samples"))
    stages = {}
    for name, cmd, out in [
        ("ingest", m6("ingest", "--input", raw, "--output", pairs, *th), pairs),
        ("dedup", m6("dedup", "--input", pairs, "--output", dd, "--set", "keep_work=true", *th), dd),
        ("filter", m6("filter", "--input", dd, "--output", clean, *th), clean),
        ("tokenize_raw", m6("tokenize", "--input", clean, "--output", samples + "-raw", "--set", f'tokenizer="{vocab}"', "--set", 'image_encoding="raw"', *th), samples + "-raw"),
        ("tokenize_jpeg", m6("tokenize", "--input", clean, "--output", samples, "--set", f'tokenizer="{vocab}"', *th), samples),
    ]:
        m, _ = measure(cmd)
        if name == "dedup":
            m["work_bytes"] = du(os.path.join(dd, "_work"))
            shutil.rmtree(os.path.join(dd, "_work"), ignore_errors=True)
        m["output_bytes"] = du(out)
        m["rows_out"] = rows_of(out)
        m["images_per_cpu_s"] = round(n / max(m["cpu_s"], 1e-9), 1)
        stages[name] = m
        print(f"[images] {name}: {m}", flush=True)
    res = {"input": gen, "threads": threads, "stages": stages,
           "note": "images_per_cpu_s divides the generated image count by the stage's CPU seconds (later stages see fewer rows after dedup/filter)"}
    shutil.rmtree(base, ignore_errors=True)
    save("image_chain", res)


def make_mosaics(folder, n, seed=11, copy_rate=0.1):
    """n caption-less JPEGs, distinct by construction, with planted near copies.

    Each original is a 2x2 mosaic of random windows of the real photos (random photo,
    scale, position and mirror per tile; 256-640 px; JPEG quality 75-92), so, unlike
    random windows of 26 photos, the set does not grow denser in duplicates as it grows.
    With probability `copy_rate` an image is instead a copy of an earlier one: resized
    to 40-90%, cropped up to 8% per side, letterboxed, or recompressed at quality 40-60
    (one of them, picked at random). Copies only point back, so the first N images of a
    set are a self-contained set. Returns the generation summary and each file's group.
    """
    from PIL import Image, ImageOps
    rng = random.Random(seed)
    photos = [Image.open(f).convert("RGB") for f in sorted(glob.glob(os.path.join(DATA, "photos/*.png")))]
    photos = [p for p in photos if min(p.size) >= 128]
    os.makedirs(folder, exist_ok=True)
    group, total = [], 0
    for i in range(n):
        p = os.path.join(folder, f"img{i:07d}.jpg")
        if i > 0 and rng.random() < copy_rate:
            j = rng.randrange(i)
            im = Image.open(os.path.join(folder, f"img{j:07d}.jpg")).convert("RGB")
            w, h = im.size
            kind = rng.choice(["resize", "crop", "letterbox", "recompress"])
            q = rng.randint(75, 92)
            if kind == "resize":
                f = rng.uniform(0.4, 0.9)
                im = im.resize((max(32, int(w * f)), max(32, int(h * f))), Image.BILINEAR)
            elif kind == "crop":
                l, t, r, b = (rng.uniform(0, 0.08) for _ in range(4))
                im = im.crop((int(w * l), int(h * t), w - int(w * r), h - int(h * b)))
            elif kind == "letterbox":
                s = max(w, h)
                pad = Image.new("RGB", (s, s), (0, 0, 0))
                pad.paste(im, ((s - w) // 2, (s - h) // 2))
                im = pad
            else:
                q = rng.randint(40, 60)
            im.save(p, quality=q)
            group.append(group[j])
        else:
            w, h = rng.randint(256, 640), rng.randint(256, 640)
            canvas = Image.new("RGB", (w, h))
            cx, cy = w // 2, h // 2
            for (x0, y0, x1, y1) in [(0, 0, cx, cy), (cx, 0, w, cy), (0, cy, cx, h), (cx, cy, w, h)]:
                src = photos[rng.randrange(len(photos))]
                tw, th = x1 - x0, y1 - y0
                sc = rng.uniform(0.5, 1.5)
                sw, sh = min(src.width, max(16, int(tw / sc))), min(src.height, max(16, int(th / sc)))
                sx, sy = rng.randint(0, src.width - sw), rng.randint(0, src.height - sh)
                tile = src.crop((sx, sy, sx + sw, sy + sh)).resize((tw, th), Image.BILINEAR)
                if rng.random() < 0.5:
                    tile = ImageOps.mirror(tile)
                canvas.paste(tile, (x0, y0))
            canvas.save(p, quality=rng.randint(75, 92))
            group.append(i)
        total += os.path.getsize(p)
    return {"images": n, "bytes": total, "mean_kb": round(total / n / 1024, 1), "copy_rate": copy_rate}, group


def phase_ratios(res):
    """Per phase, CPU per image at 10 N over N; None where the phase took under 0.02
    CPU-s at N (rounded to nothing, the ratio would mean nothing)."""
    ph_n, ph_10n = res["n"]["phase_by_phase"], res["10n"]["phase_by_phase"]
    return {ph: (round(ph_10n[ph]["cpu_ms_per_image"] / ph_n[ph]["cpu_ms_per_image"], 2) if ph_n[ph]["cpu_s"] >= 0.02 else None)
            for ph in PHASES}


def image_dedup_scale(lines):
    """Image dedup at N and 10 N caption-less JPEGs (env IMAGES_SMALL, default 2000): does
    the crop-tolerant candidate search (7 window hashes per image, LSH bands, verification
    within a bounded window of each bucket) stay linear in CPU, flat in memory, and as
    accurate at 10 N? Originals are distinct mosaics of the real photos with 10% planted
    copies (make_mosaics), the same duplicate density at both sizes; the N set is the
    first N images of the 10 N set. One thread, CPU seconds of the whole stage; precision
    and recall of the removals against the planted groups."""
    n = int(os.environ.get("IMAGES_SMALL", "2000"))
    # Seed 11 is the set the image defaults were chosen on; another seed (IMAGE_SEED=12)
    # is a held-out set of the same make, saved in its own section.
    seed = int(os.environ.get("IMAGE_SEED", "11"))
    base = os.path.join(OUT, "image_scale")
    shutil.rmtree(base, ignore_errors=True)
    big = os.path.join(base, "big", "album")
    t = time.time()
    gen, group = make_mosaics(big, 10 * n, seed=seed)
    gen["seed"] = seed
    small = os.path.join(base, "small", "album")
    os.makedirs(small)
    for i in range(n):
        os.link(os.path.join(big, f"img{i:07d}.jpg"), os.path.join(small, f"img{i:07d}.jpg"))
    gen["generate_s"] = round(time.time() - t, 1)
    res = {"input": gen}

    table = parquet_rows.rows
    for label, count in [("n", n), ("10n", 10 * n)]:
        folder = os.path.dirname(small if label == "n" else big)
        ds, out = os.path.join(base, label + "-ds"), os.path.join(base, label + "-dd")
        measure(m6("ingest", "--input", folder, "--output", ds))
        m, _ = measure(m6("dedup", "--input", ds, "--output", out, "--threads", "1", "--set", "keep_work=true"))
        m["images"] = count
        m["rows_out"] = rows_of(out)
        if label == "n":
            # The same input with 2 threads must give byte-identical shards (the
            # verdict on a pair once depended on which thread met it first).
            out2 = os.path.join(base, label + "-dd2")
            measure(m6("dedup", "--input", ds, "--output", out2, "--threads", "2"))
            m["byte_identical_threads_1_vs_2"] = shard_digest(out) == shard_digest(out2)
        m["work_bytes"] = du(os.path.join(out, "_work"))
        m["cpu_ms_per_image"] = round(m["cpu_s"] / count * 1e3, 3)
        # The same run one phase per process: which phase's CPU per image and memory
        # grow with the corpus (the pairs phase verifies more candidates per image as
        # the buckets fill; its caches stop growing at their bounds).
        phased = os.path.join(base, label + "-phased")
        phases = {}
        for ph in PHASES:
            pm, _ = measure(m6("dedup", "--input", ds, "--output", phased, "--phase", ph, "--threads", "1", "--set", "keep_work=true"))
            pm["cpu_ms_per_image"] = round(pm["cpu_s"] / count * 1e3, 3)
            phases[ph] = pm
        phases["byte_identical_to_one_process"] = shard_digest(phased) == shard_digest(out)
        m["phase_by_phase"] = phases
        # Score: a removal is right when the removed and the kept image share a group.
        gid = lambda sid: group[int(os.path.basename(sid).split(".")[0][3:])]
        id2src = {r["id"]: r["source_id"] for r in table(ds, ["id", "source_id"])}
        rem = [(r["source_id"], id2src[r["kept_id"]]) for r in table(os.path.join(out, "duplicates"), ["source_id", "kept_id"])]
        expected = count - len(set(group[:count]))
        tp = sum(1 for a, b in rem if gid(a) == gid(b))
        pr, rc = (tp / len(rem) if rem else 1.0), (tp / expected if expected else 1.0)
        m.update({"planted_removals": expected, "removed": len(rem), "true_removals": tp, "precision": round(pr, 4),
                  "recall": round(rc, 4), "f1": round(2 * pr * rc / (pr + rc), 4) if pr + rc else 0.0})
        res[label] = m
        print(f"[image_scale] {label}: {m}", flush=True)
    res["cpu_per_image_ratio_10n_vs_n"] = round(res["10n"]["cpu_ms_per_image"] / max(res["n"]["cpu_ms_per_image"], 1e-9), 2)
    res["peak_rss_ratio_10n_vs_n"] = round(res["10n"]["peak_rss_mib"] / max(res["n"]["peak_rss_mib"], 1e-9), 2)
    res["phase_cpu_per_image_ratio_10n_vs_n"] = phase_ratios(res)
    res["phase_peak_rss_mib_n_and_10n"] = {ph: [res[k]["phase_by_phase"][ph]["peak_rss_mib"] for k in ("n", "10n")] for ph in PHASES}
    res["note"] = ("linear in CPU means cpu_per_image_ratio near 1 (a quadratic search would be ~10); flat memory means "
                   "peak_rss_ratio near 1. --threads 1, CPU = user+sys of the whole `m6corpus dedup` process.")
    shutil.rmtree(base, ignore_errors=True)
    # One section per N, so runs at several sizes sit side by side.
    save(f"image_dedup_scale_n{n}" + (f"_seed{seed}" if seed != 11 else ""), res)


def main():
    what = sys.argv[1:] or ["dedup1m", "incr", "chain", "sizes", "images", "image_scale"]
    if not os.path.exists(BIN):
        sys.exit("build first: make build")
    lines = load_lines()
    print(f"{len(lines)} distinct real lines", flush=True)
    for w in what:
        {"chain": chain, "sizes": dedup_sizes, "dedup1m": dedup1m, "incr": incr, "images": image_chain,
         "image_scale": image_dedup_scale}[w](lines)


if __name__ == "__main__":
    main()
