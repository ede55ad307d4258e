#!/usr/bin/env python3
"""JPEGs damaged in the middle of their data: what `m6corpus filter` drops
(`image.damaged`), beside Pillow and libjpeg-turbo's own warnings, and that no whole
file is dropped. Part of bench/filter.sh; writes bench/results/jpeg_damage.json.

Whole files: the scikit-image photos saved by Pillow as baseline q90 4:2:0, q75 4:4:4
with optimised tables, q90 with restart markers every 4 MCUs and progressive q90, each
at its own size (96-1,411 px: the filter's small-file path, a 1/8-scale read before the
full decode) and enlarged to 1,600 px (its 1/4-scale path, where that read is the
decode); where libjpeg-turbo-progs can be fetched, the photos at their own size saved by
its cjpeg with what Pillow does not offer (a restart marker every MCU, 1x2 chroma
sampling, a progressive script of its own, progressive with restart intervals); and,
where apt-get can fetch them (bench/lib/wallpapers.py), 26 camera photos as
their photographers saved them (1280-5312 px, 14 progressive). Each whole file gets
one copy per kind of damage at a seeded random place 10-90% into its entropy-coded data:
200 or 16 random bytes written over it, 64 bytes zeroed, one bit flipped, 1 or 100 bytes
lost, 50 random bytes inserted. Every damaged copy keeps its end marker, so
`image.truncated` never applies.

Found by: m6corpus = dropped by `image.damaged` or `image.decode`; tokenize = refused
by `m6corpus tokenize` (default settings: `check_damage` on) given the files as
image-caption pairs, and with `check_damage = false`; Pillow =
`Image.open(...).load()` raises (LOAD_TRUNCATED_IMAGES off); libjpeg-turbo = `djpeg`
exits with its warning status (it warns of "corrupt JPEG data" and decodes on), where
libjpeg-turbo-progs can be fetched with apt-get download. Damage that changes only a
coefficient's magnitude bits leaves every code valid and no byte over: no reader finds
it, so no kind reaches 100% (a bit flip least). Whole files dropped by anything are
listed: they are false alarms.

Also what `check_damage` costs `tokenize` on the whole files (CPU seconds with it on
and off, alternated; `tokenize_check_damage_cost`).

Usage: jpeg_damage.py [--data DIR]
"""
import argparse
import glob
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

KINDS = ["over200", "over16", "zero64", "bitflip", "lose1", "lose100", "insert50"]


def scan_bounds(b):
    """Offsets of the first scan's data and of the end marker."""
    i = 2
    while i + 4 <= len(b):
        m, n = b[i + 1], b[i + 2] << 8 | b[i + 3]
        if m == 0xDA:
            return i + 2 + n, b.rfind(b"\xff\xd9")
        i += 2 + n
    raise ValueError("no scan")


def damaged(b, kind, rnd):
    start, end = scan_bounds(b)
    at = rnd.randint(start + (end - start) // 10, start + (end - start) * 9 // 10)
    d = bytearray(b)
    rand = lambda n: bytes(rnd.randrange(256) for _ in range(n))
    if kind == "over200":
        d[at:at + 200] = rand(200)
    elif kind == "over16":
        d[at:at + 16] = rand(16)
    elif kind == "zero64":
        d[at:at + 64] = bytes(64)
    elif kind == "bitflip":
        d[at] ^= 1 << rnd.randrange(8)
    elif kind == "lose1":
        del d[at]
    elif kind == "lose100":
        del d[at:at + 100]
    elif kind == "insert50":
        d[at:at] = rand(50)
    return bytes(d)


# Progressive script with three levels of successive approximation on luma and its
# DC refined last: not the one Pillow (libjpeg's jpeg_simple_progression) writes.
SCANS = """0: 0-0, 0, 2 ;
1: 0-0, 0, 1 ;
2: 0-0, 0, 1 ;
0: 0-0, 2, 1 ;
0: 1-2, 0, 3 ;
0: 3-63, 0, 3 ;
0: 1-63, 3, 2 ;
0: 1-63, 2, 1 ;
1: 1-63, 0, 0 ;
2: 1-63, 0, 0 ;
0: 1-63, 1, 0 ;
0: 0-0, 1, 0 ;
1: 0-0, 1, 0 ;
2: 0-0, 1, 0 ;
"""

# cjpeg settings Pillow does not offer: a restart marker every MCU, 1x2 chroma
# sampling, the script above, progressive with restart intervals.
CJPEG = {"cjpeg_restart_every_mcu": ["-restart", "1"], "cjpeg_sample_1x2": ["-sample", "1x2"], "cjpeg_own_scan_script": ["-scans", "SCANS"], "cjpeg_progressive_restart_2": ["-progressive", "-restart", "2"]}


def whole_files(data, dest, cjpeg=None):
    """Writes the whole JPEGs into dest/<set>/; returns {set: [paths]}. With `cjpeg`
    (libjpeg-turbo's encoder), also the CJPEG sets of the photos at their own size."""
    from PIL import Image
    sets = {}
    photos = sorted(p for p in glob.glob(f"{data}/photos/*") if p.endswith((".png", ".jpg")))
    saves = {
        "baseline_q90": dict(quality=90),
        "q75_444_optimised": dict(quality=75, subsampling=0, optimize=True),
        "restart_markers_q90": dict(quality=90, restart_marker_blocks=4),
        "progressive_q90": dict(quality=90, progressive=True),
    }
    for size in ["own", "1600"]:
        for name, kw in saves.items():
            key = f"{name}_{size}px" if size != "own" else f"{name}_own_size"
            os.makedirs(os.path.join(dest, key))
            for p in photos:
                im = Image.open(p).convert("RGB")
                if size != "own":
                    s = int(size) / max(im.size)
                    im = im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC)
                q = os.path.join(dest, key, os.path.basename(p).rsplit(".", 1)[0] + ".jpg")
                im.save(q, **kw)
            sets[key] = sorted(glob.glob(os.path.join(dest, key, "*.jpg")))
    if cjpeg:
        script = os.path.join(dest, "scans.txt")
        open(script, "w").write(SCANS)
        for key, opts in CJPEG.items():
            os.makedirs(os.path.join(dest, key))
            for p in photos:
                ppm = os.path.join(dest, "in.ppm")
                Image.open(p).convert("RGB").save(ppm)
                q = os.path.join(dest, key, os.path.basename(p).rsplit(".", 1)[0] + ".jpg")
                subprocess.run([cjpeg] + [script if o == "SCANS" else o for o in opts] + ["-outfile", q, ppm], check=True)
            sets[key] = sorted(glob.glob(os.path.join(dest, key, "*.jpg")))
    if shutil.which("apt-get"):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
        import wallpapers  # noqa: E402
        wallpapers.wallpaper_photos(data)
    shipped = sorted(glob.glob(f"{data}/photos-wallpapers/*.jpg"))
    if shipped:
        os.makedirs(os.path.join(dest, "camera_photos_as_shipped"))
        for p in shipped:
            shutil.copy(p, os.path.join(dest, "camera_photos_as_shipped"))
        sets["camera_photos_as_shipped"] = sorted(glob.glob(os.path.join(dest, "camera_photos_as_shipped", "*.jpg")))
    return sets


def djpeg_path(data):
    """libjpeg-turbo's djpeg, fetched once into DATA/cache with apt-get download; `None`
    where it cannot be fetched or does not run (it needs the system's libjpeg62-turbo)."""
    exe = shutil.which("djpeg") or fetch_djpeg(data)
    if exe and subprocess.run([exe, "-version"], capture_output=True).returncode == 0:
        return exe
    return None


def fetch_djpeg(data):
    root = os.path.join(data, "cache", "libjpeg-turbo-progs")
    exe = os.path.join(root, "usr", "bin", "djpeg")
    if os.path.exists(exe):
        return exe
    if not shutil.which("apt-get"):
        return None
    cache = os.path.join(data, "cache")
    os.makedirs(cache, exist_ok=True)
    r = subprocess.run(["apt-get", "download", "libjpeg-turbo-progs"], cwd=cache, capture_output=True, text=True)
    debs = glob.glob(os.path.join(cache, "libjpeg-turbo-progs_*.deb"))
    if r.returncode != 0 or not debs:
        return None
    subprocess.run(["dpkg", "-x", debs[0], root], check=True)
    return exe if os.path.exists(exe) else None


def libjpeg_warns(djpeg, path):
    if djpeg is None:
        return None
    r = subprocess.run([djpeg, "-outfile", os.devnull, path], capture_output=True)
    # 0: clean; 2: warnings (corrupt data read through); 1: a fatal error.
    return r.returncode != 0


def pillow_fails(path):
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
        return False
    except Exception:
        return True


def filter_verdicts(bin_, folder, work):
    """{file name: rule} for every file `m6corpus filter` (default rules) drops."""
    import pyarrow.parquet as pq
    ds, out = os.path.join(work, "ds"), os.path.join(work, "out")
    shutil.rmtree(ds, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([bin_, "ingest", "--input", folder, "--output", ds, "--quiet"], check=True, capture_output=True)
    subprocess.run([bin_, "filter", "--input", ds, "--output", out, "--quiet"], check=True, capture_output=True)
    dropped = {}
    for f in glob.glob(os.path.join(out, "rejects", "*.parquet")):
        # An ingested file's `source_id` is its path under the input folder.
        t = pq.read_table(f, columns=["source_id", "rule"]).to_pydict()
        for src, rule in zip(t["source_id"], t["rule"]):
            dropped[os.path.basename(src)] = rule
    return dropped


def pairs_dataset(bin_, named, work):
    """`named` files ((name, path) pairs) as an image-caption pair dataset (a caption
    file beside each, in a folder of links), and a minimal vocabulary for `tokenize`:
    (dataset folder, vocabulary file)."""
    pairs, ds = os.path.join(work, "pairs"), os.path.join(work, "pairs_ds")
    for d in (pairs, ds):
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(pairs)
    for name, path in named:
        os.link(path, os.path.join(pairs, name))
        open(os.path.join(pairs, name.rsplit(".", 1)[0] + ".txt"), "w").write("图片\n")
    vocab = os.path.join(work, "vocab.txt")
    open(vocab, "w").write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[IMG]", "[/IMG]", "图", "片"]) + "\n")
    subprocess.run([bin_, "ingest", "--input", pairs, "--output", ds, "--quiet"], check=True, capture_output=True)
    return ds, vocab


def run_tokenize(bin_, ds, vocab, out, check, threads=None):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [bin_, "tokenize", "--input", ds, "--output", out, "--tokenizer", vocab, "--quiet", "--set", f"check_damage={str(check).lower()}"]
    subprocess.run(cmd + (["--threads", str(threads)] if threads else []), check=True, capture_output=True)


def tokenize_refusals(bin_, ds, vocab, work, check=True):
    """{file name: message} for every file `m6corpus tokenize` refuses (default
    settings; `check=False`: `check_damage = false`) in the pair dataset `ds`
    ([`pairs_dataset`])."""
    import pyarrow.parquet as pq
    out = os.path.join(work, "samples")
    run_tokenize(bin_, ds, vocab, out, check)
    refused = {}
    for f in glob.glob(os.path.join(out, "errors", "*.parquet")):
        # The location ends with the ingested file's path under the input folder.
        t = pq.read_table(f, columns=["location", "message"]).to_pydict()
        for loc, msg in zip(t["location"], t["message"]):
            refused[os.path.basename(loc.rstrip(")").rsplit("(", 1)[-1])] = msg
    return refused


def tokenize_check_cost(bin_, sets, work, rounds=6):
    """What `check_damage` costs `tokenize --threads 1` on the whole files: CPU seconds
    (the child's user + system) with it on and off, run alternately `rounds` times,
    median and best, on the files at their own size (96-1,411 px: the `_own_size` and
    `cjpeg_` sets) and on all of them (1,600 px and camera photos added)."""
    import resource
    import statistics
    res = {}
    groups = {"own_size": [k for k in sets if k.endswith("_own_size") or k.startswith("cjpeg_")], "all": list(sets)}
    for label, keys in groups.items():
        named = [(f"{k}__{os.path.basename(p)}", p) for k in keys for p in sets[k]]
        ds, vocab = pairs_dataset(bin_, named, work)
        cpu = {True: [], False: []}
        for _ in range(rounds):
            for check in (True, False):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                run_tokenize(bin_, ds, vocab, os.path.join(work, "samples"), check, threads=1)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[check].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        med = {c: statistics.median(v) for c, v in cpu.items()}
        res[label] = {
            "files": len(named),
            "cpu_seconds_check_on": {"median": round(med[True], 3), "best": round(min(cpu[True]), 3)},
            "cpu_seconds_check_off": {"median": round(med[False], 3), "best": round(min(cpu[False]), 3)},
            "check_cost_median": round(med[True] / med[False] - 1, 3),
            "check_cost_best": round(min(cpu[True]) / min(cpu[False]) - 1, 3),
        }
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("M6_DATA_DIR", "data"))
    args = ap.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    bin_ = os.environ.get("M6CORPUS_BIN", "target/release/m6corpus")
    work = tempfile.mkdtemp(prefix="m6-jpeg-damage-")
    try:
        djpeg = djpeg_path(args.data)
        cjpeg = djpeg and os.path.join(os.path.dirname(djpeg), "cjpeg")
        sets = whole_files(args.data, os.path.join(work, "whole"), cjpeg if cjpeg and os.path.exists(cjpeg) else None)
        rnd = random.Random(20261201)
        res = {}
        false_alarms = []
        for key, files in sets.items():
            folder = os.path.join(work, "in", key)
            os.makedirs(folder)
            made = {}
            for p in files:
                b = open(p, "rb").read()
                base = os.path.basename(p)[:-4]
                shutil.copy(p, os.path.join(folder, f"{base}__whole.jpg"))
                made[f"{base}__whole.jpg"] = "whole"
                for kind in KINDS:
                    q = f"{base}__{kind}.jpg"
                    open(os.path.join(folder, q), "wb").write(damaged(b, kind, rnd))
                    made[q] = kind
            dropped = filter_verdicts(bin_, folder, os.path.join(work, "run"))
            run = os.path.join(work, "run")
            ds, vocab = pairs_dataset(bin_, [(n, os.path.join(folder, n)) for n in os.listdir(folder)], run)
            refused = tokenize_refusals(bin_, ds, vocab, run)
            unchecked = tokenize_refusals(bin_, ds, vocab, run, check=False)
            row = {}
            for kind in ["whole"] + KINDS:
                names = [q for q, k in made.items() if k == kind]
                ours = [q for q in names if dropped.get(q) in ("image.damaged", "image.decode")]
                pil = [q for q in names if pillow_fails(os.path.join(folder, q))]
                lj = [q for q in names if libjpeg_warns(djpeg, os.path.join(folder, q))] if djpeg else None
                tok = [q for q in names if q in refused]
                row[kind] = {"files": len(names), "m6corpus": len(ours), "tokenize": len(tok), "tokenize_check_off": sum(q in unchecked for q in names), "pillow": len(pil), "libjpeg_turbo_warns": None if lj is None else len(lj)}
                if kind == "whole":
                    false_alarms += [f"{key}/{q}: m6corpus {dropped[q]}" for q in names if q in dropped]
                    false_alarms += [f"{key}/{q}: tokenize {refused[q]}" for q in tok]
                    false_alarms += [f"{key}/{q}: tokenize, check off: {unchecked[q]}" for q in names if q in unchecked]
                    false_alarms += [f"{key}/{q}: Pillow" for q in pil] + [f"{key}/{q}: libjpeg-turbo" for q in (lj or [])]
            res[key] = row
        total = {}
        for kind in ["whole"] + KINDS:
            for side in ["files", "m6corpus", "tokenize", "tokenize_check_off", "pillow", "libjpeg_turbo_warns"]:
                vals = [res[k][kind][side] for k in res]
                total.setdefault(kind, {})[side] = None if any(v is None for v in vals) else sum(vals)
        res["all"] = total
        cost = tokenize_check_cost(bin_, sets, os.path.join(work, "run"))
        out = {
            "note": "Damaged copies of whole JPEGs (see bench/jpeg_damage.py): per set and kind of damage, how many files each reader finds damaged. m6corpus: `filter` with its default rules drops the file as image.damaged or image.decode; tokenize: `tokenize` with its default settings (check_damage on) refuses the file as a pair's image (an errors row); tokenize_check_off: the same with check_damage = false (damage found only where the sample's decoder fails and the check confirms it); pillow: Image.open().load() raises; libjpeg_turbo_warns: djpeg exits non-zero (it warns and decodes on). `whole` rows are the undamaged files: anything there is a false alarm (listed in false_alarms).",
            "djpeg": djpeg and subprocess.run([djpeg, "-version"], capture_output=True, text=True).stderr.strip(),
            "pillow": __import__("PIL").__version__,
            "false_alarms": false_alarms,
            "tokenize_check_damage_cost": cost,
            **res,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs("bench/results", exist_ok=True)
    json.dump(out, open("bench/results/jpeg_damage.json", "w"), indent=2)
    print(json.dumps(out["all"], indent=2))
    print("false alarms:", out["false_alarms"])
    print("tokenize check_damage cost:", json.dumps(cost))


if __name__ == "__main__":
    main()
