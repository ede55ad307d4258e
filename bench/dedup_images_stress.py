#!/usr/bin/env python3
"""Image near-duplicate stress set: copies of kinds the defaults were never chosen on.

bench/dedup_images.py's twelve kinds of change are the ones the verifier's thresholds
were tuned on. This set makes other, realistic web copies of the same real photos
(data/photos, family `photo`, and the five held-out photographs, `photo_heldout`),
to show where recall is lost on edits nobody tuned for:

  in the issue's scope (resized down to thumbnails, recompressed, cropped up to 10% per
  side, padded/letterboxed, watermarked, colour-adjusted; and combinations of them):
    thumb64, thumb150_q60, webp50, png, grey, sepia, hue_shift (about 35 degrees),
    darker (brightness x0.6), contrast130, gamma07, blur2, sharpen, noise8 (Gaussian,
    sigma 8), stretch_w90 (width x0.9: an aspect change), frame_red (a 4% coloured
    frame), combo_crop_banner_q40 (random crop up to 10% per side + text banner + JPEG
    q40), combo_letterbox_thumb200, combo_pad_colour_q60 (white padding + saturation +
    JPEG q60)
  beyond it, reported apart (recall there is information, not a target):
    caption_centre (a meme-style caption across the middle), crop15_each_side, rot3
    (rotated 3 degrees), mirror (flipped left to right)

Hard negatives as in dedup_images.py (left 55%, right 55%, centre 40% of each picture;
the stereo pair). Precision counts every removal; recall and F1 `in_scope` count the
in-scope copies only. imagehash pHash (all pairs within Hamming 16) runs on the same
files for comparison. Writes bench/results/dedup_images_stress.json.

Usage: dedup_images_stress.py [--wallpapers]   (DEDUP_IMAGE_EXTRA="k=v ..." overrides [dedup] fields)
  --wallpapers: the 26 camera photos of bench/lib/wallpapers.py instead, as shipped
  (1280-5312 px); writes dedup_images_stress_wallpapers.json.
"""
import json
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dedup_images as D  # noqa: E402
import parquet_rows  # noqa: E402

IN_SCOPE = ["thumb64", "thumb150_q60", "webp50", "png", "grey", "sepia", "hue_shift", "darker", "contrast130",
            "gamma07", "blur2", "sharpen", "noise8", "stretch_w90", "frame_red", "combo_crop_banner_q40",
            "combo_letterbox_thumb200", "combo_pad_colour_q60"]
BEYOND = ["caption_centre", "crop15_each_side", "rot3", "mirror"]
OUT = os.path.join(D.ROOT, "bench", "out", "dedup_images_stress")


def font(size):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def variants(im, rng):
    import numpy as np
    from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps
    w, h = im.size
    s = max(w, h)
    v = {}
    v["thumb64"] = im.resize((max(8, w * 64 // s), max(8, h * 64 // s)), Image.BILINEAR)
    v["thumb150_q60"] = ("jpeg", 60, im.resize((max(8, w * 150 // s), max(8, h * 150 // s)), Image.LANCZOS))
    v["webp50"] = ("webp", 50, im)
    v["png"] = ("png", None, im)
    v["grey"] = im.convert("L").convert("RGB")
    g = np.asarray(im.convert("L"), dtype=np.float32)
    v["sepia"] = Image.fromarray(np.stack([g * 1.07, g * 0.74, g * 0.43], -1).clip(0, 255).astype(np.uint8))
    hsv = np.asarray(im.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + 25) % 256
    v["hue_shift"] = Image.fromarray(hsv, "HSV").convert("RGB")
    v["darker"] = ImageEnhance.Brightness(im).enhance(0.6)
    v["contrast130"] = ImageEnhance.Contrast(im).enhance(1.3)
    v["gamma07"] = im.point(lambda x: int(255 * (x / 255) ** 0.7))
    v["blur2"] = im.filter(ImageFilter.GaussianBlur(2))
    v["sharpen"] = im.filter(ImageFilter.UnsharpMask(2, 150, 3))
    noisy = np.asarray(im, dtype=np.float32) + np.random.default_rng(rng.randrange(1 << 30)).normal(0, 8, (h, w, 3))
    v["noise8"] = Image.fromarray(noisy.clip(0, 255).astype(np.uint8))
    v["stretch_w90"] = im.resize((w * 9 // 10, h), Image.BICUBIC)
    b = max(2, s // 25)
    fr = Image.new("RGB", (w + 2 * b, h + 2 * b), (180, 30, 40))
    fr.paste(im, (b, b))
    v["frame_red"] = fr
    l, r, t, bb = [rng.uniform(0, 0.1) for _ in range(4)]
    cc = im.crop((int(w * l), int(h * t), w - int(w * r), h - int(h * bb)))
    cw, ch = cc.size
    d = ImageDraw.Draw(cc)
    bh = max(8, ch // 9)
    d.rectangle((0, ch - bh, cw, ch), fill=(20, 20, 20))
    d.text((cw // 20, ch - bh + bh // 8), "www.example.com", fill=(255, 255, 255), font=font(max(8, bh * 2 // 3)))
    v["combo_crop_banner_q40"] = ("jpeg", 40, cc)
    pad = Image.new("RGB", (s, s), (0, 0, 0))
    pad.paste(im, ((s - w) // 2, (s - h) // 2))
    v["combo_letterbox_thumb200"] = pad.resize((200, 200), Image.BILINEAR)
    m = s // 12
    pad = Image.new("RGB", (w + 2 * m, h + 2 * m), (255, 255, 255))
    pad.paste(ImageEnhance.Color(im).enhance(1.4), (m, m))
    v["combo_pad_colour_q60"] = ("jpeg", 60, pad)
    c = im.copy()
    d = ImageDraw.Draw(c)
    fs = max(8, h // 10)
    d.text((w // 10, h // 2 - fs // 2), "WHEN YOU SEE IT", fill=(255, 255, 255), font=font(fs), stroke_width=max(1, fs // 12), stroke_fill=(0, 0, 0))
    v["caption_centre"] = c
    v["crop15_each_side"] = im.crop((w * 15 // 100, h * 15 // 100, w - w * 15 // 100, h - h * 15 // 100))
    v["rot3"] = im.rotate(3, resample=Image.BICUBIC, expand=False, fillcolor=(255, 255, 255))
    v["mirror"] = ImageOps.mirror(im)
    assert sorted(v) == sorted(IN_SCOPE + BEYOND)
    return v


def build(base):
    from PIL import Image
    os.makedirs(os.path.join(base, "files"))
    rng = random.Random(11)
    entries, group, family = [], {}, {}
    for fam, name, p in D.sources(True):
        im = Image.open(p).convert("RGB")
        items = {"orig": im}
        items.update(variants(im, rng))
        items.update(D.negatives(im))
        for k, v in items.items():
            fmt, q = "jpeg", 90
            if isinstance(v, tuple):
                fmt, q, v = v
            path = os.path.join(base, "files", f"{name}_{k}." + {"jpeg": "jpg", "png": "png", "webp": "webp"}[fmt])
            if fmt == "jpeg":
                v.save(path, "JPEG", quality=q)
            elif fmt == "webp":
                v.save(path, "WEBP", quality=q)
            else:
                v.save(path, "PNG")
            key = f"{name}:{k}"
            entries.append((key, path))
            group[key] = f"{D.scene(name)}:{k}" if k in D.NEGATIVES else D.scene(name)
            family[key] = fam
    rng.shuffle(entries)
    return entries, group, family


def evaluate(rem, keys, group, family, in_scope=IN_SCOPE, beyond=BEYOND):
    """Precision over every removal; recall and F1 over the `in_scope` copies, found
    when they end in their original's cluster; per kind, per family, and the hard
    negatives merged with their original."""
    root = dict(rem)
    cl = lambda k: root.get(k, k)
    by, by_fam = {}, {}
    for k in keys:
        name, kind = k.split(":")
        if kind == "orig" or kind in D.NEGATIVES:
            continue
        found = cl(k) == cl(f"{name}:orig")
        s = by.setdefault(kind, [0, 0])
        s[0] += found
        s[1] += 1
        if kind in in_scope:
            f = by_fam.setdefault(family[k], [0, 0])
            f[0] += found
            f[1] += 1
    tp_in = sum(by[k][0] for k in in_scope)
    n_in = sum(by[k][1] for k in in_scope)
    all_ = D.score(rem, keys, group)
    p = all_["precision"]
    r = tp_in / n_in
    neg = {}
    for k in keys:
        name, kind = k.split(":")
        if kind in D.NEGATIVES:
            s = neg.setdefault(kind, [0, 0])
            s[0] += cl(k) == cl(f"{name}:orig")
            s[1] += 1
    return {
        "precision": p, "false_removals": all_["false_removals"],
        "in_scope": {"recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0, "found": tp_in, "copies": n_in,
                     "recall_by_family": {f: round(v[0] / v[1], 4) for f, v in sorted(by_fam.items())}},
        "found_by_kind_in_scope": {k: f"{by[k][0]}/{by[k][1]}" for k in in_scope},
        "found_by_kind_beyond_scope": {k: f"{by[k][0]}/{by[k][1]}" for k in beyond},
        "hard_negatives_merged_with_original": {k: f"{v[0]}/{v[1]}" for k, v in sorted(neg.items())},
        "false_removal_examples": [f"{a} -> {b}" for a, b in rem if group[a] != group[b]][:10],
        "missed_in_scope": sorted(k for k in keys if k.split(":")[1] in in_scope and cl(k) != cl(k.split(":")[0] + ":orig")),
    }


def run_set(build, out, name, in_scope, beyond, note):
    """Builds a set with `build(out)` (entries, group, family), deduplicates it with
    m6corpus and hashes it with imagehash, scores both with `evaluate`, and writes
    bench/results/NAME.json."""
    if not os.path.isfile(D.BIN):
        sys.exit(f"{D.BIN} missing: make build")
    shutil.rmtree(out, ignore_errors=True)
    entries, group, family = build(out)
    keys = [k for k, _ in entries]
    with open(os.path.join(out, "list.tsv"), "w") as f:
        for k, p in entries:
            f.write(f"{k}\t{p}\n")
    D.run([D.BIN, "images", os.path.join(out, "list.tsv"), os.path.join(out, "in"), "4"])
    extra = os.environ.get("DEDUP_IMAGE_EXTRA", "").split()
    secs, cpu, rss = D.timed([D.BIN, "dedup", os.path.join(out, "in"), os.path.join(out, "out"), str(D.THREADS)] + extra)
    id2key = {r["id"]: r["source_id"] for r in parquet_rows.rows(os.path.join(out, "in"), ["id", "source_id"])}
    rem = [(r["source_id"], id2key[r["kept_id"]]) for r in parquet_rows.rows(os.path.join(out, "out", "duplicates"), ["source_id", "kept_id"])]
    m6 = evaluate(rem, keys, group, family, in_scope, beyond)
    m6.update({"cpu_seconds": round(cpu, 3), "images_per_cpu_s": round(len(keys) / cpu, 1), "peak_rss_mib": rss})
    rem_peer, _, hash_cpu = D.imagehash_removals(entries)
    n = len(entries)
    peer = evaluate(rem_peer, keys, group, family, in_scope, beyond)
    peer.pop("missed_in_scope")
    peer.update({"hash_cpu_seconds": round(hash_cpu, 3), "images_per_cpu_s": round(n / hash_cpu, 1)})
    res = {"images": n, "sources": {f: sum(1 for x in D.sources(True) if x[0] == f) for f in ("photo", "photo_heldout", "photo_wallpaper")},
           "in_scope_kinds": in_scope, "beyond_scope_kinds": beyond, "hard_negatives": D.NEGATIVES + ["motorcycle_left vs motorcycle_right"],
           "m6": m6, "imagehash": peer, "m6_overrides": os.environ.get("DEDUP_IMAGE_EXTRA", ""), "note": note}
    os.makedirs(os.path.join(D.ROOT, "bench", "results"), exist_ok=True)
    name += "_wallpapers" if "--wallpapers" in sys.argv else ""
    with open(os.path.join(D.ROOT, "bench", "results", name + ".json"), "w") as f:
        json.dump(res, f, indent=2, ensure_ascii=False)
    print(json.dumps(res, indent=2, ensure_ascii=False))


def main():
    run_set(build, OUT, "dedup_images_stress", IN_SCOPE, BEYOND,
            "kinds of change never used to choose a default before this set was made; photos and their copies JPEG q90 unless the kind says otherwise")


if __name__ == "__main__":
    main()
