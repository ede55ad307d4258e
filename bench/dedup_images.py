#!/usr/bin/env python3
"""Image near-duplicate benchmark (part of bench/dedup.sh; runs alone too).

Real pictures: data/photos (scikit-image photographs, the set the verifier's
thresholds were tuned on), five held-out photographs from other wheels (family
`photo_heldout`: matplotlib's grace_hopper, scikit-learn's china and flower, scipy
1.9.3's raccoon face and ascent; never used to choose a default), and the
debian-handbook PNG screenshots (zh-CN, at least 40,000 pixels). Each source gets planted copies
(resized down to a 96 px thumbnail, recompressed, cropped up to 10% per side,
letterboxed/padded, watermarked with a logo and with a text banner, colour-adjusted,
and a crop+resize+JPEG combination) and hard negatives that must stay apart from it:
three different parts of the same picture (left 55%, right 55%, centre 40%), the two
photos of the stereo pair motorcycle_left/right, and the installer screenshots that
share one layout. m6corpus dedup (through target/release/m6-dedup-bench, the same
stage `m6corpus dedup` runs) and imagehash pHash (all pairs within the same Hamming
distance, one thread) run on the same files; P/R/F1 overall, for photos and for
screenshots, recall by kind of change, hard negatives merged by kind, images/s per
core and peak RSS, and the decoding floor (libjpeg-turbo's DCT-domain scaled decode
alone, bytes in memory) beside the images/CPU-s that 5x imagehash would need.

Usage: dedup_images.py [--quick] [--side S] [--progressive] [--wallpapers]
  --quick: photos only, the set the speed target names.
  --wallpapers: instead of the photos above, 26 real photographs from two Debian
  wallpaper packages (family `photo_wallpaper`, bench/lib/wallpapers.py): camera photos
  of 1280-5312 px, with the same copies and hard negatives (dedup_images_stress.py and
  dedup_images_tone.py take the flag too).
  --side S: every photo resized (Pillow bicubic) to S px on its longer side before its
  copies are made: the photos above are 256-640 px, smaller than most web photos, and
  the decoding each size takes differs (JPEG at 4x and 8x the 128 px work size decodes
  at 1/4 and 1/8 scale in the DCT domain), so the speed ratio depends on the size.
  --progressive: every JPEG saved progressive (libjpeg-turbo's script, as Pillow
  writes it), as a large share of web JPEGs are.
Writes bench/results/dedup_images.json (--quick: dedup_images_photos.json, with
--side S: dedup_images_photos_S.json; --wallpapers: dedup_images_wallpapers[_S].json)
when run alone.
"""
import os
import sys

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

import parquet_rows

ROOT = os.path.dirname(_here)
DATA = os.environ.get("M6_DATA_DIR", os.path.join(ROOT, "data"))
OUT = os.path.join(ROOT, "bench", "out", "dedup_images")
BIN = os.path.join(ROOT, "target", "release", "m6-dedup-bench")
THREADS = int(os.environ.get("DEDUP_BENCH_THREADS", str(os.cpu_count() or 1)))
# imagehash's pHash and m6's window pHashes are compared at the same distance.
MAX_HAMMING = 16

KINDS = ["thumb96", "resized50", "jpeg30", "crop_random10", "crop10_each_side", "crop_one_side", "letterbox",
         "padded_white", "watermark_logo", "watermark_banner", "colour", "crop_resize_jpeg"]
NEGATIVES = ["part_left55", "part_right55", "part_centre40"]


def heldout_photos():
    """Real photographs the defaults were never tuned on (family `photo_heldout`).

    The verifier's thresholds were chosen on data/photos (scikit-image); these five
    come from other packages' wheels on PyPI: grace_hopper.jpg (matplotlib),
    china.jpg and flower.jpg (scikit-learn), and the raccoon face and the staircase
    "ascent" (scipy 1.9.3's scipy/misc/*.dat, the last release that shipped them). Fetched
    once into data/cache, extracted to data/photos-heldout as PNG/JPEG as shipped.
    """
    import bz2
    import pickle
    import zipfile
    dest = os.path.join(DATA, "photos-heldout")
    if os.path.isdir(dest):
        return sorted(glob.glob(os.path.join(dest, "*")))
    cache = os.path.join(DATA, "cache")
    os.makedirs(cache, exist_ok=True)
    wheels = {"matplotlib": "matplotlib-3.11.2", "scikit-learn": "scikit_learn-1.7.2", "scipy==1.9.3": "scipy-1.9.3"}
    for spec, stem in wheels.items():
        if not glob.glob(os.path.join(cache, stem + "-*.whl")):
            pin = spec if "==" in spec else f"{spec}=={stem.split('-')[1]}"
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "--python-version", "3.11", "--platform", "manylinux_2_17_x86_64", "-d", cache, pin], check=True)
    import numpy as np
    from PIL import Image
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    whl = lambda stem: zipfile.ZipFile(glob.glob(os.path.join(cache, stem + "-*.whl"))[0])
    with whl("matplotlib-3.11.2") as z:
        open(os.path.join(tmp, "grace_hopper.jpg"), "wb").write(z.read("matplotlib/mpl-data/sample_data/grace_hopper.jpg"))
    with whl("scikit_learn-1.7.2") as z:
        for n in ["china.jpg", "flower.jpg"]:
            open(os.path.join(tmp, n), "wb").write(z.read(f"sklearn/datasets/images/{n}"))
    with whl("scipy-1.9.3") as z:
        # face.dat: bz2 of the raw 768x1024 RGB bytes; ascent.dat: a pickled 512x512 grey array.
        face = np.frombuffer(bz2.decompress(z.read("scipy/misc/face.dat")), dtype=np.uint8).reshape(768, 1024, 3)
        Image.fromarray(face).save(os.path.join(tmp, "raccoon_face.png"))
        ascent = np.asarray(pickle.loads(z.read("scipy/misc/ascent.dat"))).clip(0, 255).astype(np.uint8)
        Image.fromarray(ascent).save(os.path.join(tmp, "ascent.png"))
    os.rename(tmp, dest)
    return sorted(glob.glob(os.path.join(dest, "*")))


def wallpaper_photos():
    """26 camera photographs (family `photo_wallpaper`, bench/lib/wallpapers.py) that no
    default was chosen on until session 15 of round two, whose `recoloured` check was
    made after their hue-turned copies (`bench/dedup_images_stress.py --wallpapers`)."""
    import wallpapers
    return wallpapers.wallpaper_photos(DATA)


def sources(quick):
    out = []
    if "--wallpapers" in sys.argv:
        return [("photo_wallpaper", os.path.splitext(os.path.basename(p))[0], p) for p in wallpaper_photos()]
    for p in sorted(glob.glob(os.path.join(DATA, "photos", "*"))):
        out.append(("photo", os.path.splitext(os.path.basename(p))[0], p))
    for p in heldout_photos():
        out.append(("photo_heldout", os.path.splitext(os.path.basename(p))[0], p))
    if not quick:
        from PIL import Image
        for p in sorted(glob.glob(os.path.join(DATA, "debian-handbook", "zh-CN", "images", "*.png"))):
            with Image.open(p) as im:
                if im.size[0] * im.size[1] >= 40000:
                    out.append(("screenshot", os.path.splitext(os.path.basename(p))[0], p))
    return out


def scene(name):
    # chessboard_GRAY and chessboard_RGB are one picture (identical grey levels): a
    # colour variant. motorcycle_left/right are two photos of one scene: kept apart.
    return "chessboard" if name.startswith("chessboard") else name


def variants(im, rng, logo):
    from PIL import Image, ImageDraw, ImageEnhance, ImageFont
    w, h = im.size
    v = {}
    s = max(w, h)
    v["thumb96"] = im.resize((max(8, w * 96 // s), max(8, h * 96 // s)), Image.BILINEAR)
    v["resized50"] = im.resize((w // 2, h // 2), Image.LANCZOS)
    v["jpeg30"] = ("jpeg", 30, im)
    l, r, t, b = [rng.uniform(0, 0.1) for _ in range(4)]
    v["crop_random10"] = im.crop((int(w * l), int(h * t), w - int(w * r), h - int(h * b)))
    v["crop10_each_side"] = im.crop((w // 10, h // 10, w - w // 10, h - h // 10))
    v["crop_one_side"] = im.crop((0, 0, w - w // 10, h - h // 20))
    pad = Image.new("RGB", (s, s), (0, 0, 0))
    pad.paste(im, ((s - w) // 2, (s - h) // 2))
    if w == h:  # already square: letterbox to 16:9 instead
        pad = Image.new("RGB", (w * 16 // 9, h), (0, 0, 0))
        pad.paste(im, ((w * 16 // 9 - w) // 2, 0))
    v["letterbox"] = pad
    m = s // 12
    pad = Image.new("RGB", (w + 2 * m, h + 2 * m), (255, 255, 255))
    pad.paste(im, (m, m))
    v["padded_white"] = pad
    wm = im.copy().convert("RGBA")
    ls = max(8, min(w, h) // 5)
    lg = logo.resize((ls, ls))
    lg.putalpha(lg.split()[3].point(lambda x: int(x * 0.7)))
    wm.alpha_composite(lg, (w - ls - w // 40, h - ls - h // 40))
    v["watermark_logo"] = wm.convert("RGB")
    wm = im.copy()
    d = ImageDraw.Draw(wm)
    bh = max(8, h // 9)
    d.rectangle((0, h - bh, w, h), fill=(20, 20, 20))
    try:
        font = ImageFont.load_default(size=max(8, bh * 2 // 3))
    except TypeError:
        font = ImageFont.load_default()
    d.text((w // 20, h - bh + bh // 8), "www.example.com  © m6 2024", fill=(255, 255, 255), font=font)
    v["watermark_banner"] = wm
    c = ImageEnhance.Brightness(im).enhance(1.25)
    c = ImageEnhance.Contrast(c).enhance(0.8)
    v["colour"] = ImageEnhance.Color(c).enhance(1.5)
    l, r, t, b = [rng.uniform(0, 0.08) for _ in range(4)]
    cc = im.crop((int(w * l), int(h * t), w - int(w * r), h - int(h * b)))
    v["crop_resize_jpeg"] = ("jpeg", 50, cc.resize((cc.size[0] * 2 // 3, cc.size[1] * 2 // 3), Image.BILINEAR))
    return v


def negatives(im):
    w, h = im.size
    return {"part_left55": im.crop((0, 0, w * 55 // 100, h)), "part_right55": im.crop((w * 45 // 100, 0, w, h)),
            "part_centre40": im.crop((w * 3 // 10, h * 3 // 10, w * 7 // 10, h * 7 // 10))}


def photo_side():
    """--side S: the longer side photos are resized to (None: as they come)."""
    if "--side" in sys.argv:
        return int(sys.argv[sys.argv.index("--side") + 1])
    return None


def build(base, quick):
    from PIL import Image
    os.makedirs(os.path.join(base, "files"), exist_ok=True)
    rng = random.Random(7)
    logo = Image.open(os.path.join(DATA, "photos", "logo.png")).convert("RGBA")
    entries, group, family = [], {}, {}
    side = photo_side()
    for fam, name, p in sources(quick):
        im = Image.open(p).convert("RGB")
        if side and fam.startswith("photo"):
            k = side / max(im.size)
            im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.BICUBIC)
        items = {"orig": im}
        items.update(variants(im, rng, logo))
        # Photos travel the web as JPEG, screenshots as PNG.
        fmt = ("jpeg", 90) if fam.startswith("photo") else ("png", None)
        for k, v in list(items.items()) + list(negatives(im).items()):
            key = f"{name}:{k}"
            if isinstance(v, tuple):
                fmt_k, q, v = v
            else:
                fmt_k, q = fmt
            path = os.path.join(base, "files", f"{name}_{k}." + ("jpg" if fmt_k == "jpeg" else "png"))
            if fmt_k == "jpeg":
                v.save(path, "JPEG", quality=q, progressive="--progressive" in sys.argv)
            else:
                v.save(path, "PNG")
            entries.append((key, path))
            group[key] = f"{scene(name)}:{k}" if k in NEGATIVES else scene(name)
            family[key] = fam
    rng.shuffle(entries)
    return entries, group, family


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def timed(cmd):
    t = time.time()
    r = run(["/usr/bin/time", "-v"] + cmd)
    secs = time.time() - t
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", r.stderr))
    return secs, cpu, (round(int(m.group(1)) / 1024, 1) if m else None)


def score(removals, keys, group):
    """removals: (removed key, kept key). Right when both are in one planted group."""
    groups = {}
    for k in keys:
        groups.setdefault(group[k], []).append(k)
    expected = sum(len(v) - 1 for v in groups.values())
    tp = sum(1 for a, b in removals if group[a] == group[b])
    p = tp / len(removals) if removals else 1.0
    r = tp / expected if expected else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "true_removals": tp,
            "false_removals": len(removals) - tp, "expected_removals": expected}


def breakdown(removals, keys, group, family):
    """Recall by kind of change (copy in its original's cluster) and hard negatives merged."""
    root = {}
    for a, b in removals:
        root[a] = b
    cl = lambda k: root.get(k, k)
    by_kind, neg = {}, {}
    for k in keys:
        name, kind = k.split(":")
        if kind == "orig":
            continue
        o = f"{name}:orig"
        same = cl(k) == cl(o)
        if kind in NEGATIVES:
            s = neg.setdefault(kind, [0, 0])
        else:
            s = by_kind.setdefault(kind, [0, 0])
        s[0] += same
        s[1] += 1
    # The stereo pair and same-layout screenshots: merged when in one cluster.
    ml, mr = "motorcycle_left:orig", "motorcycle_right:orig"
    out = {"found_by_kind": {k: round(v[0] / v[1], 4) for k, v in sorted(by_kind.items())},
           "hard_negatives_merged_with_original": {k: f"{v[0]}/{v[1]}" for k, v in sorted(neg.items())}}
    if ml in keys and mr in keys:
        out["stereo_pair_merged"] = cl(ml) == cl(mr)
    wrong = [(a, b) for a, b in removals if group[a] != group[b]]
    out["false_removal_examples"] = [f"{a} -> {b}" for a, b in wrong[:10]]
    return out


def subset(removals, keys, group, family, fam):
    ks = [k for k in keys if family[k] == fam]
    s = set(ks)
    return score([(a, b) for a, b in removals if a in s and b in s], ks, group) | \
        {"cross_family_removals": sum(1 for a, b in removals if (a in s) != (b in s))}


# dedup's signing work size (m6_stage_dedup::image_hash::WORK_SIDE).
WORK_SIDE = 128


def decode_floor(paths, peer_images_per_cpu_s, side=WORK_SIDE, repeat=3):
    """What decoding alone costs, by libjpeg-turbo (Pillow), with the files in memory.

    `draft`: Image.draft("L", (side, side)) + load -- the DCT-domain 1/2-1/8 scaled
    decode straight to grey at the size m6's signatures need (its work picture is
    WORK_SIDE px): every entropy-coded bit is still read, which no baseline-JPEG decoder can skip.
    `full`: a plain full-size decode. Beside them, the images/CPU-s that 5x imagehash
    would mean: when decoding alone is slower than that, the target is below the
    decoding floor, whatever the rest of the stage does. Best of `repeat`.

    Ours, from target/release/m6-decode-bench on the JPEGs: `m6_decode_at_side` is the
    decode dedup's signing does at its work size (zune-jpeg's full-size luma below 4x
    that, jpeg_dc's 1/4 or 1/8 luma above); `jpeg_dc_1_8` decodes every file to its DC
    picture only (1/8 scale: 64 px for a 512 px photo, too small for the signature's
    128 px, so not a floor dedup can reach, but what reading every entropy-coded bit
    costs at the least).
    """
    import io
    from PIL import Image
    blobs = [open(p, "rb").read() for p in paths]

    def run(draft):
        best = None
        for _ in range(repeat):
            c = time.process_time()
            for b in blobs:
                im = Image.open(io.BytesIO(b))
                if draft and im.format == "JPEG":
                    im.draft("L", (side, side))
                im.load()
            c = time.process_time() - c
            best = c if best is None else min(best, c)
        return best
    d, f = run(True), run(False)
    n = len(blobs)
    ours = {}
    tool = os.path.join(ROOT, "target", "release", "m6-decode-bench")
    jpegs = [p for p in paths if p.lower().endswith((".jpg", ".jpeg"))]
    if os.path.exists(tool) and jpegs:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            for i, p in enumerate(jpegs):
                os.symlink(os.path.abspath(p), os.path.join(tmp, f"{i:06d}.jpg"))
            r = json.loads(subprocess.run([tool, tmp, str(side), str(repeat)], capture_output=True, text=True, check=True).stdout)
        ours = {"m6_decode_at_side": r["filter_decode"], "zune_luma_full": r["zune_luma_full"], "jpeg_dc_1_8": r["dc"],
                "jpeg_dc_handled": r["dc_handled"], "jpegs": r["jpegs"]}
    return {"images": n, "mean_file_kb": round(sum(map(len, blobs)) / n / 1024, 1), "ours": ours,
            "pillow_draft_decode_images_per_cpu_s": round(n / d, 1), "pillow_draft_decode_ms_per_image": round(d / n * 1e3, 3),
            "pillow_full_decode_images_per_cpu_s": round(n / f, 1), "pillow_full_decode_ms_per_image": round(f / n * 1e3, 3),
            "images_per_cpu_s_for_5x_imagehash": round(5 * peer_images_per_cpu_s, 1),
            "target_below_decode_floor": 5 * peer_images_per_cpu_s > n / d,
            "note": f"libjpeg-turbo via Pillow {Image.__version__}, bytes in memory, decode only (no hash, no Parquet), one thread, best of {repeat}"}


def imagehash_removals(entries):
    """The peer: imagehash pHash of every file (decode included), then all pairs within
    MAX_HAMMING, clustered. Returns (removed key, kept key) pairs and the wall and CPU
    seconds of the hashing loop (single-threaded; on a shared machine the wall clock
    also counts other processes, CPU time does not, for either side)."""
    from PIL import Image
    import imagehash
    t, c = time.time(), time.process_time()
    hashes = [(k, imagehash.phash(Image.open(p))) for k, p in entries]
    hash_secs, hash_cpu = time.time() - t, time.process_time() - c
    n = len(hashes)
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for i in range(n):
        for j in range(i + 1, n):
            if hashes[i][1] - hashes[j][1] <= MAX_HAMMING:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    return [(hashes[i][0], hashes[find(i)][0]) for i in range(n) if find(i) != i], hash_secs, hash_cpu


def images_bench(quick=False):
    base = OUT
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    entries, group, family = build(base, quick)
    keys = [k for k, _ in entries]
    with open(os.path.join(base, "list.tsv"), "w") as f:
        for k, p in entries:
            f.write(f"{k}\t{p}\n")
    run([BIN, "images", os.path.join(base, "list.tsv"), os.path.join(base, "in"), "4"])
    # DEDUP_IMAGE_EXTRA="key=value ..." overrides [dedup] fields (used to choose the defaults).
    extra = os.environ.get("DEDUP_IMAGE_EXTRA", "").split()
    secs, cpu, rss = timed([BIN, "dedup", os.path.join(base, "in"), os.path.join(base, "out"), str(THREADS)] + extra)

    table = parquet_rows.rows
    id2key = {r["id"]: r["source_id"] for r in table(os.path.join(base, "in"), ["id", "source_id"])}
    rem = [(r["source_id"], id2key[r["kept_id"]]) for r in table(os.path.join(base, "out", "duplicates"), ["source_id", "kept_id"])]
    n = len(entries)
    m6 = score(rem, keys, group)
    m6.update({"seconds": round(secs, 3), "cpu_seconds": round(cpu, 3), "images_per_s": round(n / secs, 1),
               "images_per_s_per_core": round(n / secs / THREADS, 1), "images_per_cpu_s": round(n / cpu, 1), "peak_rss_mib": rss})
    m6.update(breakdown(rem, keys, group, family))
    fams = sorted(set(family.values()))
    for fam in fams:
        m6[fam] = subset(rem, keys, group, family, fam)

    rem_peer, hash_secs, hash_cpu = imagehash_removals(entries)
    peer = score(rem_peer, keys, group)
    peer.update({"hash_seconds": round(hash_secs, 3), "hash_cpu_seconds": round(hash_cpu, 3), "images_per_s": round(n / hash_secs, 1),
                 "images_per_cpu_s": round(n / hash_cpu, 1),
                 "note": f"imagehash.phash of every file (PIL decode included) + all-pairs Hamming <= {MAX_HAMMING}, one thread; the all-pairs step is not timed"})
    peer.update(breakdown(rem_peer, keys, group, family))
    floor = decode_floor([p for _, p in entries], peer["images_per_cpu_s"])
    for fam in fams:
        peer[fam] = subset(rem_peer, keys, group, family, fam)
    return {"images": n, "sources": {f: sum(1 for x in sources(quick) if x[0] == f) for f in fams}, "threads": THREADS,
            "kinds_of_change": KINDS, "hard_negatives": NEGATIVES + ["motorcycle_left vs motorcycle_right", "installer screenshots of one layout"],
            "ground_truth": "one group per source picture and its planted copies (chessboard_GRAY/RGB: one picture); every part_* crop its own group",
            "formats": "photos and their copies as JPEG (q90; jpeg30 q30, crop_resize_jpeg q50), screenshots as PNG",
            "m6": m6, "imagehash": peer, "decode_floor": floor,
            "ratio_images_per_s_per_core_vs_imagehash": round(m6["images_per_s_per_core"] / peer["images_per_s"], 2),
            # The per-core figure the targets use: images per CPU-second on both sides
            # (m6: the whole dedup run, Parquet in to Parquet out, all its threads).
            "ratio_images_per_cpu_s_vs_imagehash": round(m6["images_per_cpu_s"] / peer["images_per_cpu_s"], 2),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def main():
    if not os.path.isfile(BIN):
        sys.exit(f"{BIN} missing: make build")
    res = images_bench(quick="--quick" in sys.argv)
    res["m6_overrides"] = os.environ.get("DEDUP_IMAGE_EXTRA", "")
    res["photo_side"] = photo_side()
    res["progressive_jpegs"] = "--progressive" in sys.argv
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    # --quick (photos only: the set the speed target names) has its own file.
    name = "dedup_images_photos" if "--quick" in sys.argv else "dedup_images"
    name = "dedup_images_wallpapers" if "--wallpapers" in sys.argv else name
    name += f"_{photo_side()}" if photo_side() else ""
    name += "_progressive.json" if "--progressive" in sys.argv else ".json"
    with open(os.path.join(ROOT, "bench", "results", name), "w") as f:
        json.dump(res, f, indent=2, ensure_ascii=False)
    print(json.dumps(res, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
