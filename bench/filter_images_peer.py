#!/usr/bin/env python3
"""The Pillow equivalent of `m6corpus filter` on an image dataset, end to end from
Parquet to Parquet, doing the same work with the same thresholds:

  header rules (format allow-list, bomb guard at 50 M pixels, at least 5000 pixels,
  sides 10..16384, aspect <= 5), animation, truncation / decode errors (Pillow raises
  on a truncated file), one decode to grey with the longer side at most 256 px,
  the blank rule (luma standard deviation < 2 on a 64 px box thumbnail of that picture),
  and the three quality signals m6corpus records as columns (variance of the
  4-neighbour Laplacian, 256-bin grey entropy, flat-border share with the same
  trimming as m6_imaging::content_frame), written as three Float32 columns beside the
  kept rows with zstd, as m6corpus writes its shards.

Usage: filter_images_peer.py MODE INPUT_DATASET_DIR OUTPUT.parquet
  MODE full:  Image.open + convert("L") + resize(BOX) -- a full decode of every image
  MODE draft: as full, but JPEGs first get Image.draft("L", size) so libjpeg decodes
              at 1/2, 1/4 or 1/8 scale in the DCT domain straight to grey (how a
              competent Pillow user cuts JPEG decoding cost)
  MODE decode: the decode floor, not a filter: the Parquet file is read first (not
              timed), then only Image.open + draft("L", size) + convert("L") per image
              (libjpeg-turbo's DCT-domain 1/2-1/8 decode straight to grey for JPEGs,
              a full decode for the rest): no rules, no signals, no resize, no write
Prints JSON: images, kept, dropped per rule, cpu_seconds and seconds (both measured
in-process from the first Parquet read to the last write: interpreter start and imports
are not counted, which flatters the peer slightly; in decode mode, of the decode loop).
"""
import glob, io, json, os, sys, time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # our own bomb guard below, from the header
FORMATS = {"PNG", "JPEG", "GIF", "WEBP", "BMP"}
SIDE = 256


def content_frame(g):
    """Port of m6_imaging::content_frame (flat, edge-coloured lines trimmed, <= 45%/side, 4 passes)."""
    h, w = g.shape
    x0, y0, x1, y1 = 0, 0, w, h
    for _ in range(4):
        sub = g[y0:y1, x0:x1]
        rm, rs = sub.mean(1), sub.std(1)
        cm, cs = sub.mean(0), sub.std(0)

        def side(limit, means, stds):
            edge, k = means[0], 0
            while k < limit and k < len(means):
                if stds[k] > 3.0 or abs(means[k] - edge) > 8.0:
                    break
                k += 1
            return k

        top = side(max(h * 45 // 100 - y0, 0), rm, rs)
        bottom = side(max(h * 45 // 100 - (h - y1), 0), rm[::-1], rs[::-1])
        left = side(max(w * 45 // 100 - x0, 0), cm, cs)
        right = side(max(w * 45 // 100 - (w - x1), 0), cm[::-1], cs[::-1])
        if top + bottom + left + right == 0 or x1 - x0 < left + right + 4 or y1 - y0 < top + bottom + 4:
            break
        x0, y0, x1, y1 = x0 + left, y0 + top, x1 - right, y1 - bottom
    return x0, y0, x1, y1


def judge(b, draft):
    im = Image.open(io.BytesIO(b))
    if im.format not in FORMATS:
        return "format", None
    w, h = im.size
    if w * h > 50_000_000:
        return "bomb", None
    if w * h < 5000:
        return "min_pixels", None
    if min(w, h) < 10:
        return "min_side", None
    if max(w, h) > 16384:
        return "max_side", None
    if max(w, h) / min(w, h) > 5:
        return "aspect", None
    if getattr(im, "is_animated", False):
        return "animated", None
    f = min(1.0, SIDE / max(w, h))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    if draft and im.format == "JPEG":
        im.draft("L", size)
    try:
        g = im.convert("L")
    except (OSError, SyntaxError):
        return "decode", None
    if g.size != size:
        g = g.resize(size, Image.BOX)
    a = np.asarray(g, dtype=np.float32)
    th = np.asarray(g.resize((max(1, round(size[0] * min(1.0, 64 / max(size)))), max(1, round(size[1] * min(1.0, 64 / max(size))))), Image.BOX), dtype=np.float32) if max(size) > 64 else a
    if th.std() < 2.0:
        return "blank", None
    lap = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4 * a[1:-1, 1:-1]
    sharp = float(lap.var()) if lap.size else 0.0
    hist = np.bincount(np.clip(np.rint(a), 0, 255).astype(np.int64).ravel(), minlength=256)
    p = hist[hist > 0] / a.size
    ent = float(-(p * np.log2(p)).sum())
    fx0, fy0, fx1, fy1 = content_frame(a)
    border = 1.0 - (fx1 - fx0) * (fy1 - fy0) / a.size
    return None, (sharp, ent, border)


def decode_floor(src):
    blobs = []
    for f in sorted(glob.glob(os.path.join(src, "*.parquet"))):
        blobs += pq.read_table(f, columns=["bytes"]).column("bytes").to_pylist()
    t, c = time.perf_counter(), time.process_time()
    for b in blobs:
        im = Image.open(io.BytesIO(b))
        w, h = im.size
        f = min(1.0, SIDE / max(w, h))
        if im.format == "JPEG":
            im.draft("L", (max(1, round(w * f)), max(1, round(h * f))))
        im.convert("L")
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(json.dumps({"mode": "decode", "images": len(blobs), "seconds": dt, "cpu_seconds": dc}))


def main():
    mode, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "decode":
        return decode_floor(src)
    draft = mode == "draft"
    t, c = time.perf_counter(), time.process_time()
    kept_tables, dropped, n = [], Counter(), 0
    for f in sorted(glob.glob(os.path.join(src, "*.parquet"))):
        tab = pq.read_table(f)
        col = tab.column("bytes").to_pylist()
        keep, sig = [], ([], [], [])
        for i, b in enumerate(col):
            n += 1
            try:
                rule, s = judge(b, draft)
            except Exception:
                rule, s = "decode", None
            if rule:
                dropped[rule] += 1
                continue
            keep.append(i)
            for k in range(3):
                sig[k].append(s[k])
        kt = tab.take(pa.array(keep, pa.int64()))
        for name, vals in zip(["peer_sharpness", "peer_entropy", "peer_border"], sig):
            kt = kt.append_column(name, pa.array(vals, pa.float32()))
        kept_tables.append(kt)
    out = pa.concat_tables(kept_tables) if kept_tables else None
    if out is not None:
        pq.write_table(out, dst, compression="zstd")
    dt, dc = time.perf_counter() - t, time.process_time() - c
    kept = out.num_rows if out is not None else 0
    print(json.dumps({"mode": mode, "images": n, "kept": kept, "dropped": dict(dropped), "seconds": dt, "cpu_seconds": dc}))


main()
