#!/usr/bin/env python3
"""Python baseline for bench/filter.sh: a straightforward pure-Python implementation
of the same default text rules m6corpus filter applies (length, Han ratio, script
language id, HTML/JS residue, punctuation runs, URL density, symbol/digit ratios,
duplicate lines/paragraphs, Gopher top/duplicate character n-grams, spam and block
lists) and of the image rules with Pillow. Word n-gram rules are left out (no jieba
in the peer), so the peer does less work than m6corpus's default set.

usage: filter_peer.py text DOCS.jsonl   -> JSON {"docs", "bytes", "kept", "seconds"}
       filter_peer.py images DIR        -> JSON {"images", "kept", "seconds"}
"""
import json, re, sys, time, unicodedata
from collections import Counter

MARKUP = re.compile(r"(?s)<!--.*?-->|</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]{0,500})?/?>|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,10});")
CONTACT = re.compile(r"(?i)(?:https?://|ftp://|www\.)[^\s<>\"'，。、；：！？（）【】《》]+|[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+|(?:\+?86[- ]?)?1[3-9][0-9]{9}|0[0-9]{2,3}-[0-9]{7,8}|[0-9]{3}-[0-9]{3,4}-[0-9]{4}")
JS = ["function(", "function (", "var ", "document.", "window.", "console.", "=>", "});", "javascript:", "getelementbyid", "addeventlistener", "$(", "jquery", "<script", ".prototype.", "typeof "]

def load_list(path):
    return [l.strip() for l in open(path, encoding="utf-8") if l.strip() and not l.startswith("#")]

BL = "stages/filter/data/blocklist/"
BLOCK = [w.lower() for f in ("profanity", "porn", "sensitive") for w in load_list(BL + f + ".txt")]
SPAM = [w.lower() for w in load_list(BL + "spam.txt")]

def is_han(c):
    o = ord(c)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2EBEF or 0xF900 <= o <= 0xFAFF

def is_punct(c):
    return unicodedata.category(c).startswith("P")

def top_share(toks, n):
    if len(toks) < n:
        return 0.0
    c = Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    g, k = c.most_common(1)[0]
    return k * n / len(toks) if k > 1 else 0.0

def dup_share(toks, n):
    if len(toks) < n:
        return 0.0
    seen, cov = set(), [False] * len(toks)
    for i in range(len(toks) - n + 1):
        g = tuple(toks[i:i + n])
        if g in seen:
            for j in range(i, i + n):
                cov[j] = True
        else:
            seen.add(g)
    return sum(cov) / len(toks)

def dup_stats(items):
    seen, n, c, tot = set(), 0, 0, 0
    for it in items:
        tot += len(it)
        if it in seen:
            n += 1; c += len(it)
        seen.add(it)
    return n / len(items), c / max(tot, 1)

def check(text):
    chars = len(text)
    if len(text.strip()) < 10 or chars > 1_000_000:
        return "len"
    non_ws = [c for c in text if not c.isspace()]
    nw = max(len(non_ws), 1)
    han = sum(1 for c in non_ws if is_han(c))
    if han / nw < 0.1:
        return "cjk"
    latin = sum(1 for c in non_ws if c.isascii() and c.isalpha())
    letters = sum(1 for c in non_ws if c.isalpha())
    if letters and max(han, latin) / letters < 0.5:
        return "lang"
    if sum(len(m) for m in MARKUP.findall(text)) / chars > 0.02:
        return "markup"
    lines = [l for l in text.split("\n") if l.strip()]
    low = text.lower()
    if lines and sum(1 for l in lines if any(j in l.lower() for j in JS)) / len(lines) > 0.1:
        return "js"
    run, prev, runc = 0, "", 0
    for c in text:
        if c.isspace():
            prev, run = c, 0; continue
        if c == prev and is_punct(c):
            run += 1
            runc += run if run == 4 else (1 if run > 4 else 0)
        else:
            run = 1
        prev = c
    if runc / nw > 0.05:
        return "punct"
    if sum(len(m) for m in CONTACT.findall(text)) / chars > 0.3:
        return "url"
    if sum(1 for c in non_ws if not (c.isalnum() or is_punct(c))) / nw > 0.05:
        return "symbol"
    if sum(1 for c in non_ws if c.isdigit()) / nw > 0.3:
        return "digit"
    tl = [l.strip() for l in lines]
    if len(tl) > 1:
        a, b = dup_stats(tl)
        if a > 0.3 or b > 0.2:
            return "dup_lines"
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paras) > 1:
        a, b = dup_stats(paras)
        if a > 0.3 or b > 0.2:
            return "dup_paras"
    if len(text.strip()) >= 50:
        toks = [c for c in non_ws if not is_punct(c)]
        for n, m in zip((2, 3, 4), (0.3, 0.25, 0.2)):
            if top_share(toks, n) > m:
                return "top_char"
        for n, m in zip(range(5, 11), (0.2, 0.18, 0.16, 0.15, 0.14, 0.13)):
            if dup_share(toks, n) > m:
                return "dup_char"
    hits = sum(low.count(w) for w in SPAM)
    if hits >= 2 and hits * 1000 / chars > 5:
        return "spam"
    if any(w in low for w in BLOCK):
        return "block"
    return None

def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "text":
        docs = [json.loads(l)["text"] for l in open(path, encoding="utf-8")]
        size = sum(len(d.encode()) for d in docs)
        t = time.perf_counter()
        kept = sum(1 for d in docs if check(d) is None)
        dt = time.perf_counter() - t
        print(json.dumps({"docs": len(docs), "bytes": size, "kept": kept, "seconds": dt}))
    else:
        import os
        from PIL import Image, ImageStat
        Image.MAX_IMAGE_PIXELS = 50_000_000
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if not f.endswith(".jsonl"))
        blobs = [open(f, "rb").read() for f in files]
        import io
        t = time.perf_counter()
        kept = 0
        for b in blobs:
            try:
                im = Image.open(io.BytesIO(b))
                w, h = im.size
                if w * h > 50_000_000 or w * h < 5000 or min(w, h) < 10 or max(w, h) > 16384 or max(w, h) / min(w, h) > 5:
                    continue
                if getattr(im, "is_animated", False):
                    continue
                im.load()
                th = im.convert("L"); th.thumbnail((64, 64))
                if ImageStat.Stat(th).stddev[0] < 2.0:
                    continue
                kept += 1
            except Exception:
                continue
        dt = time.perf_counter() - t
        print(json.dumps({"images": len(blobs), "kept": kept, "seconds": dt}))

main()
