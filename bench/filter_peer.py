#!/usr/bin/env python3
"""Python baseline for bench/filter.sh: a straightforward pure-Python implementation
of the same default text rules m6corpus filter applies (length, Han ratio, script
language id, HTML/JS residue, punctuation runs, URL density, symbol/digit ratios,
duplicate lines/paragraphs, Gopher top/duplicate character n-grams, Gopher
top/duplicate word n-grams over jieba words, spam and block lists) and of the image
rules with Pillow.

The word n-gram rules cut with Python jieba exactly as m6corpus cuts with jieba-rs:
`jieba.lcut(text, HMM=False)` (precise mode, no HMM for unknown words) over the same
dictionary (jieba-rs ships Python jieba's dict.txt less one entry, `B超`, which is
deleted here), on the text as it came, only for texts of at least 50 characters.
`--no-jieba` leaves the two word rules out, to compare with m6corpus run with
`--disable text.top_word_ngram --disable text.dup_word_ngram`.

usage: filter_peer.py text DOCS.jsonl [--no-jieba]
           -> JSON {"docs", "bytes", "kept", "dropped": {rule: n}, "seconds", "cpu_seconds"}
       filter_peer.py images DIR
           -> JSON {"images", "kept", "seconds", "cpu_seconds"}
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
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2EBEF or 0xF900 <= o <= 0xFAFF or 0x30000 <= o <= 0x3134F or 0x2F800 <= o <= 0x2FA1F or o == 0x3007

# m6corpus's script::is_punct: ASCII punctuation and symbols, CJK and full-width forms.
PUNCT_RANGES = ((0x3000, 0x303F), (0xFF01, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65), (0x2010, 0x2027), (0x2030, 0x205E), (0x00B7, 0x00B7), (0xFE30, 0xFE4F))
ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

def is_punct(c):
    if c in ASCII_PUNCT:
        return True
    o = ord(c)
    return any(a <= o <= b for a, b in PUNCT_RANGES)

# Tokens are strings (a character or a jieba word); each weighs its length in
# characters, as Gopher's shares are shares of characters.
def top_share(toks, n):
    if len(toks) < n:
        return 0.0
    total = sum(len(t) for t in toks)
    c = Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    g, k = c.most_common(1)[0]  # ties: the n-gram seen first, as m6corpus
    return k * sum(len(t) for t in g) / total if k > 1 else 0.0

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
    return sum(len(t) for t, c in zip(toks, cov) if c) / sum(len(t) for t in toks)

WORDS = True  # the jieba word n-gram rules (off with --no-jieba)

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
    # Rust char::is_numeric (categories N*), on non-Han characters as m6corpus counts.
    if sum(1 for c in non_ws if not is_han(c) and unicodedata.category(c)[0] == "N") / nw > 0.3:
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
        if WORDS:
            # Words that are all whitespace/punctuation are skipped, as characters are.
            words = [w for w in jieba.lcut(text, HMM=False) if not all(c.isspace() or is_punct(c) for c in w)]
            for n, m in zip((2, 3, 4), (0.2, 0.18, 0.16)):
                if top_share(words, n) > m:
                    return "top_word"
            for n, m in zip(range(5, 11), (0.15, 0.14, 0.13, 0.12, 0.11, 0.10)):
                if dup_share(words, n) > m:
                    return "dup_word"
    hits = sum(low.count(w) for w in SPAM)
    if hits >= 2 and hits * 1000 / chars > 5:
        return "spam"
    if any(w in low for w in BLOCK):
        return "block"
    return None

def main():
    global WORDS, jieba
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "text":
        WORDS = "--no-jieba" not in sys.argv[3:]
        if WORDS:
            import logging
            import jieba
            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()  # dictionary load outside the timed loop
            jieba.del_word("B超")  # the one entry jieba-rs's copy of dict.txt lacks
        docs = [json.loads(l)["text"] for l in open(path, encoding="utf-8")]
        size = sum(len(d.encode()) for d in docs)
        t, c = time.perf_counter(), time.process_time()
        dropped = Counter(check(d) for d in docs)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        kept = dropped.pop(None, 0)
        print(json.dumps({"docs": len(docs), "bytes": size, "kept": kept, "dropped": dict(sorted(dropped.items())), "seconds": dt, "cpu_seconds": dc}))
    else:
        import os
        from PIL import Image, ImageStat
        Image.MAX_IMAGE_PIXELS = 50_000_000
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if not f.endswith(".jsonl"))
        blobs = [open(f, "rb").read() for f in files]
        import io
        t, c = time.perf_counter(), time.process_time()
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
        dt, dc = time.perf_counter() - t, time.process_time() - c
        print(json.dumps({"images": len(blobs), "kept": kept, "seconds": dt, "cpu_seconds": dc}))

main()
