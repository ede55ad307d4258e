"""Makes the demo's raw inputs from the real sample data: JSONL of Tang and Song poems
(the same poem often appears in several collections: natural near-duplicates)."""
import glob, json, os, sys

out = sys.argv[1]
data = os.environ.get("M6_DATA_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data"))
poems = os.path.join(out, "poems")
os.makedirs(poems, exist_ok=True)


def order(path):
    return int(os.path.basename(path).split(".")[2])


n = 0
for kind, files in (("tang", 4), ("song", 4)):
    paths = sorted(glob.glob(os.path.join(data, f"chinese-poetry/dist/quantangshi/poet.{kind}.*.json")), key=order)[:files]
    with open(os.path.join(poems, f"{kind}.jsonl"), "w", encoding="utf-8") as f:
        for p in paths:
            for poem in json.load(open(p, encoding="utf-8")):
                text = "\n".join(poem.get("paragraphs") or [])
                if text:
                    f.write(json.dumps({"id": poem.get("id"), "title": poem.get("title"), "author": poem.get("author"), "text": text, "source": f"poetry.{kind}"}, ensure_ascii=False) + "\n")
                    n += 1
print(f"{n} poems in {poems}")
