"""The hard planted near-duplicate set of the dedup benchmark (issue 15).

Pages are built from several real sources (Tang and Song shi and Song ci from
chinese-poetry, debian-handbook paragraphs in zh-CN and zh-TW), each page from one
source, 300-1200 characters in sections. Copies are made at page level the way web
copies happen; hard negatives share real text with a page but are not copies of it:

copies      half               the first or second half of the sections
            reordered          sections shuffled
            boilerplate_heavy  wrapped in a site template + a "related articles" sidebar
                               of real lines from elsewhere, 60-100 % of the page's length
            mixed_edits        ~5 % substitutions/insertions/deletions, punctuation to ASCII,
                               line breaks dropped, traditional folded to simplified
            truncated          the first 55-75 % of the characters
            combo              truncated to 80 % + 2 % edits + light boilerplate
            reformatted        spacing, full-width and script changes only
negatives   shared_passage     one section of a page (25-35 % of the new page) + other text
            shared_boilerplate two different pages in the same heavy site template and sidebar

Two splits built from disjoint text: `tune` (defaults are chosen on it) and `test`
(reported, never used to choose).
"""
import glob
import html
import json
import os
import random
import re

COPY_KINDS = ["half", "reordered", "boilerplate_heavy", "mixed_edits", "truncated", "combo", "reformatted"]
NEGATIVE_KINDS = ["shared_passage", "shared_boilerplate"]

SITES = [
    ("首页 | 古诗文网 | 诗文 | 名句 | 作者 | 古籍 | 登录\n当前位置：首页 > 诗文 > 正文", "本站内容来自网络，版权归原作者所有。如有侵权请联系删除。\n关于我们 | 联系方式 | 网站地图 | 免责声明 | 京ICP备00000000号"),
    ("【中文百科】 搜索 | 分类浏览 | 热门词条 | 排行榜\n您现在的位置：百科 > 文学 > 详情", "Copyright © 2009-2024 中文百科 All Rights Reserved\n本页面最后修改于 2024年3月5日 星期二 | 意见反馈 | 帮助中心"),
    ("论坛首页 › 技术交流 › Linux 系统管理 › 查看主题\n发表于 2023-11-12 20:31 | 只看该作者 | 楼主", "回复 | 引用 | 举报 | 收藏本帖\n快速回复 你需要登录后才可以回帖 登录 | 注册\n手机版 | 小黑屋 | 技术论坛 ( 粤ICP备12345678号 )"),
    ("文章来源：网络转载 阅读次数：1024 发布时间：2022-06-18\n分享到：微信 微博 QQ空间", "上一篇：没有了 下一篇：没有了\n【打印本页】【关闭窗口】\n扫一扫关注我们的公众号，获取更多精彩内容"),
    ("博客园 首页 新随笔 联系 订阅 管理\n随笔 - 312 文章 - 0 评论 - 87 阅读 - 45万", "posted @ 2021-04-09 10:12 阅读(356) 评论(2) 编辑 收藏 举报\n刷新评论 刷新页面 返回顶部\n登录后才能查看或发表评论，立即 登录 或者 逛逛 博客园首页"),
]


def _natural(path):
    m = re.search(r"\.(\d+)\.json$", path)
    return int(m.group(1)) if m else -1


def _shi(data, pattern, max_files):
    out = []
    files = sorted(glob.glob(os.path.join(data, "chinese-poetry/dist/quantangshi", pattern)), key=_natural)[:max_files]
    for f in files:
        for p in json.load(open(f, encoding="utf-8")):
            t = "\n".join(p.get("paragraphs") or [])
            if len(t) >= 24:
                out.append(t)
    return out


def _ci(data, max_files):
    out = []
    for f in sorted(glob.glob(os.path.join(data, "chinese-poetry/dist/songci/ci.song.*.json")), key=_natural)[:max_files]:
        for p in json.load(open(f, encoding="utf-8")):
            t = "\n".join(p.get("paragraphs") or [])
            if len(t) >= 24:
                out.append(t)
    return out


def _handbook(data, lang, parity):
    """Paragraphs of every other chapter file (zh-CN and zh-TW are translations of one
    book: taking different chapters from each keeps unplanted cross-language copies out)."""
    out = []
    files = sorted(glob.glob(os.path.join(data, "debian-handbook", lang, "*.html")))
    for i, f in enumerate(files):
        if i % 2 != parity:
            continue
        s = open(f, encoding="utf-8").read()
        for p in re.findall(r'<div class="para"[^>]*>(.*?)</div>', s, flags=re.S):
            t = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", p))).strip()
            if len(t) >= 60 and sum(1 for c in t if "\u4e00" <= c <= "\u9fff") >= 20:
                out.append(t)
    return out


def load_sources(data):
    """Unit texts per source, deduplicated across all sources."""
    raw = {
        "tang": _shi(data, "poet.tang.*.json", 58),
        "song": _shi(data, "poet.song.*.json", 30),
        "ci": _ci(data, 25),
        "handbook_zh_cn": _handbook(data, "zh-CN", 0),
        "handbook_zh_tw": _handbook(data, "zh-TW", 1),
        # Lines of "related articles" sidebars: Song shi never used for pages.
        "sidebar": _shi(data, "poet.song.*.json", 45)[-30000:],
    }
    seen, out = set(), {}
    for k, units in raw.items():
        keep = []
        for u in units:
            if u not in seen:
                seen.add(u)
                keep.append(u)
        out[k] = keep
    return out


class Pool:
    """Draws units of one source without replacement."""

    def __init__(self, units, rng):
        self.units = list(units)
        rng.shuffle(self.units)
        self.i = 0

    def left(self):
        return len(self.units) - self.i

    def take(self):
        u = self.units[self.i]
        self.i += 1
        return u


def _page(pool, rng, lo=300, hi=1200):
    target = rng.randint(lo, hi)
    secs, n = [], 0
    while (n < target or len(secs) < 3) and pool.left() > 0:
        u = pool.take()
        secs.append(u)
        n += len(u)
    return secs if len(secs) >= 3 else None


def _join(secs):
    return "\n\n".join(secs)


def _cjk(rng):
    return chr(0x4E00 + rng.randrange(0x9FA5 - 0x4E00))


def _edit(text, rate, rng):
    out = []
    for ch in text:
        r = rng.random()
        if r < rate * 0.6:
            out.append(_cjk(rng))
        elif r < rate * 0.8:
            continue
        elif r < rate:
            out.append(ch)
            out.append(_cjk(rng))
        else:
            out.append(ch)
    return "".join(out)


def _boilerplate(rng, sidebar_pool, length, site=None, lines=None):
    head, foot = SITES[site if site is not None else rng.randrange(len(SITES))]
    if lines is None:
        lines, n = [], len(head) + len(foot)
        while n < length and sidebar_pool.left() > 0:
            line = sidebar_pool.take().split("\n")[0].split("。")[0][:40]
            lines.append(line)
            n += len(line) + 4
    side = "相关文章：\n" + "\n".join(f"· {l}" for l in lines)
    return head, side, foot, lines


def _wrap(text, head, side, foot):
    return f"{head}\n{text}\n{side}\n{foot}"


def _ascii_punct(text):
    table = str.maketrans({"，": ",", "。": ".", "：": ":", "；": ";", "！": "!", "？": "?", "（": "(", "）": ")", "“": '"', "”": '"'})
    return text.translate(table)


def copy_page(kind, secs, rng, sidebar_pool, t2s):
    text = _join(secs)
    if kind == "half":
        # Cut at the section where half the characters are reached.
        n, h = 0, 1
        for i, sec in enumerate(secs):
            n += len(sec)
            if n >= len(text) / 2:
                h = max(1, min(len(secs) - 1, i + (rng.random() < 0.5)))
                break
        return _join(secs[:h] if rng.random() < 0.5 else secs[h:])
    if kind == "reordered":
        s = secs[:]
        while s == secs:
            rng.shuffle(s)
        return _join(s)
    if kind == "boilerplate_heavy":
        head, side, foot, _ = _boilerplate(rng, sidebar_pool, int(len(text) * rng.uniform(0.6, 1.0)))
        return _wrap(text, head, side, foot)
    if kind == "mixed_edits":
        return t2s(_ascii_punct(_edit(text, 0.05, rng))).replace("\n", "")
    if kind == "truncated":
        return text[: int(len(text) * rng.uniform(0.55, 0.75))]
    if kind == "combo":
        head, side, foot, _ = _boilerplate(rng, sidebar_pool, int(len(text) * 0.3))
        return _wrap(_edit(text[: int(len(text) * 0.8)], 0.02, rng), head, side, foot)
    if kind == "reformatted":
        t = t2s(text).replace("\n\n", "\n").replace("，", ", ")
        return "".join(chr(ord(c) + 0xFEE0) if "0" <= c <= "9" or "a" <= c <= "z" else c for c in t)
    raise ValueError(kind)


def build(data, t2s, per_source=(260, 260, 260, 120, 60), seed=1234):
    """Returns {split: (docs, group, expected, meta)}. `group` maps a doc id to its
    planted group (copies share their original's group; negatives have their own)."""
    sources = load_sources(data)
    if len(sources["sidebar"]) < 10000:
        raise SystemExit("dedup bench: too few Song poems for sidebars; is data/ complete?")
    names = [k for k in sources if k != "sidebar"]
    rng = random.Random(seed)
    pools = {}
    for k in names + ["sidebar"]:
        units = sources[k][:]
        rng.shuffle(units)
        half = len(units) // 2
        pools[("tune", k)] = Pool(units[:half], rng)
        pools[("test", k)] = Pool(units[half:], rng)
    out = {}
    for split in ("tune", "test"):
        srng = random.Random(f"{seed}-{split}")
        docs, group, expected = [], {}, 0
        counts = {"originals": {}, "copies": {}, "negatives": {}}
        gid = 0
        copy_i = 0
        for k, n in zip(names, per_source):
            pool = pools[(split, k)]
            # Lines for sidebars come from this split's own text, never from its pages.
            side_pool = pools[(split, "sidebar")]
            made = 0
            while made < n:
                secs = _page(pool, srng)
                if secs is None:
                    break
                made += 1
                gid += 1
                oid = f"{split}:{k}:o{gid}"
                docs.append({"id": oid, "source": k, "text": _join(secs), "kind": "original"})
                group[oid] = gid
                counts["originals"][k] = counts["originals"].get(k, 0) + 1
                r = made % 6
                if r in (1, 2, 3, 4):  # two thirds get one copy each, kinds in turn
                    kind = COPY_KINDS[copy_i % len(COPY_KINDS)]
                    copy_i += 1
                    cid = f"{split}:{k}:c{gid}:{kind}"
                    docs.append({"id": cid, "source": k, "text": copy_page(kind, secs, srng, side_pool, t2s), "kind": kind, "of": oid})
                    group[cid] = gid
                    expected += 1
                    counts["copies"][kind] = counts["copies"].get(kind, 0) + 1
                elif r == 5:  # a page quoting a third or more of this one, among other text
                    quoted = sorted(secs, key=len, reverse=True)[:2]
                    q = sum(len(x) for x in quoted)
                    extra = _page(pool, srng, int(q * 1.2), int(q * 1.8))
                    if extra:
                        mixed = extra[:]
                        for sec in quoted:
                            mixed.insert(srng.randrange(len(mixed) + 1), sec)
                        gid += 1
                        nid = f"{split}:{k}:n{gid}:shared_passage"
                        docs.append({"id": nid, "source": k, "text": _join(mixed), "kind": "shared_passage", "of": oid})
                        group[nid] = gid
                        counts["negatives"]["shared_passage"] = counts["negatives"].get("shared_passage", 0) + 1
                else:  # two other pages in one site's template and sidebar
                    a, b = _page(pool, srng), _page(pool, srng)
                    if a and b:
                        length = int(max(len(_join(a)), len(_join(b))) * srng.uniform(0.6, 1.0))
                        head, side, foot, _ = _boilerplate(srng, side_pool, length)
                        for secs2 in (a, b):
                            gid += 1
                            nid = f"{split}:{k}:n{gid}:shared_boilerplate"
                            docs.append({"id": nid, "source": k, "text": _wrap(_join(secs2), head, side, foot), "kind": "shared_boilerplate"})
                            group[nid] = gid
                            counts["negatives"]["shared_boilerplate"] = counts["negatives"].get("shared_boilerplate", 0) + 1
        srng.shuffle(docs)
        out[split] = (docs, group, expected, counts)
    return out


def clusters(removals):
    """removed -> kept map, followed to the end."""
    kept = dict(removals)

    def root(x):
        seen = 0
        while x in kept and seen < 100:
            x = kept[x]
            seen += 1
        return x

    return root


def evaluate(removals, docs, group, expected):
    """Precision/recall/F1 of removals, recall per copy kind, false merges per negative kind."""
    tp = sum(1 for a, b in removals if group.get(a) is not None and group.get(a) == group.get(b))
    fp = len(removals) - tp
    p = tp / len(removals) if removals else 1.0
    r = tp / expected if expected else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    root = clusters(removals)
    members = {}
    for d in docs:
        members.setdefault(root(d["id"]), []).append(d["id"])
    rec, neg = {}, {}
    for d in docs:
        k = d["kind"]
        if k in COPY_KINDS:
            s = rec.setdefault(k, [0, 0])
            s[0] += root(d["id"]) == root(d["of"])
            s[1] += 1
        elif k in NEGATIVE_KINDS:
            s = neg.setdefault(k, [0, 0])
            s[0] += any(group[m] != group[d["id"]] for m in members[root(d["id"])])
            s[1] += 1
    return {
        "precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4),
        "true_removals": tp, "false_removals": fp, "expected_removals": expected,
        "recall_by_kind": {k: round(v[0] / v[1], 4) for k, v in sorted(rec.items())},
        "false_merge_rate_by_negative": {k: round(v[0] / v[1], 4) for k, v in sorted(neg.items())},
    }
