"""Peers for bench/tokenize.sh, on the same corpus, vocab and photos as the Rust run:
Python jieba segmentation, HuggingFace tokenizers (BertWordPieceTokenizer on raw text,
and jieba + the same WordPiece vocabulary = our pipeline in Python), and PIL+numpy
image preprocessing. All timed on one core. Merges everything into the results JSON."""
import glob
import json
import os
import sys
import time

# bench/ holds other scripts (e.g. inspect.py) that would shadow standard modules.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_RS_NUM_CPUS"] = "1"

import jieba  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import BertWordPieceTokenizer, Tokenizer  # noqa: E402
from tokenizers.models import WordPiece  # noqa: E402

out_dir, data_dir, result_path = sys.argv[1], sys.argv[2], sys.argv[3]
reps = int(os.environ.get("REPS", "3"))
rust = json.load(open(os.path.join(out_dir, "rust.json")))
docs = json.load(open(os.path.join(out_dir, "corpus.json"), encoding="utf-8"))
vocab = os.path.join(out_dir, "vocab.txt")
mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6


def best(f):
    t = float("inf")
    for _ in range(reps):
        s = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - s)
    return t


jieba.setLogLevel(60)
jieba.initialize()
seg_s = best(lambda: [jieba.lcut(d, HMM=True) for d in docs])

bert = BertWordPieceTokenizer(vocab, clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False)
hf_s = best(lambda: bert.encode_batch(docs, add_special_tokens=False))
hf_tokens = sum(len(e.ids) for e in bert.encode_batch(docs, add_special_tokens=False))

# Our pipeline in Python: jieba words, then the same WordPiece vocabulary.
wp = Tokenizer(WordPiece.from_file(vocab, unk_token="[UNK]"))
seg = [jieba.lcut(d, HMM=True) for d in docs]
wp_s = best(lambda: wp.encode_batch(seg, is_pretokenized=True, add_special_tokens=False))
pipeline_s = seg_s + wp_s


def centre_square(im, size):
    """The shorter side resized to `size` (bilinear), the centre square cut out."""
    w, h = im.size
    if w <= h:
        nw, nh = size, max(size, round(h * size / w))
    else:
        nw, nh = max(size, round(w * size / h)), size
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def patches(path, size=224, patch=16):
    a = np.asarray(centre_square(Image.open(path).convert("RGB"), size), dtype=np.uint8)
    g = size // patch
    return a.reshape(g, patch, g, patch, 3).transpose(0, 2, 1, 3, 4).tobytes()


photos = sorted(glob.glob(os.path.join(data_dir, "photos", "*")))
img_s = best(lambda: [patches(p) for p in photos])


def jpeg_sample(path, draft, size=224, quality=90):
    """The stage's default sample in Pillow: decode (with `draft`, libjpeg-turbo's
    DCT-domain scaling to the smallest scale that keeps `size` px on the shorter side),
    resize the shorter side to `size`, crop the centre square, save it as JPEG."""
    import io
    im = Image.open(path)
    if draft and im.format == "JPEG":
        w, h = im.size
        k = size / min(w, h)
        im.draft("RGB", (max(1, int(w * k)), max(1, int(h * k))))
    buf = io.BytesIO()
    centre_square(im.convert("RGB"), size).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


samples = {}
for name, m6 in rust.get("jpeg_samples_1thread", {}).items():
    where = {"photos": os.path.join(data_dir, "photos"), "camera_photos": os.path.join(data_dir, "photos-wallpapers"), "web_photos": os.path.join(out_dir, "web_photos")}[name]
    files = sorted(glob.glob(os.path.join(where, "*")))
    plain = len(files) / best(lambda: [jpeg_sample(p, False) for p in files])
    draft = len(files) / best(lambda: [jpeg_sample(p, True) for p in files])
    samples[name] = {"images": len(files), "m6_tokenizer": m6["images_per_s"], "pil_plain": plain, "pil_draft": draft,
                     "ratio_vs_faster_pil": m6["images_per_s"] / max(plain, draft)}

r = rust
res = {
    "nproc": os.cpu_count(),
    "input": r["input"],
    "vocab": r["vocab"],
    "segmentation": {
        "unit": "MB/s of UTF-8 text, one core",
        "jieba_rs": r["jieba_rs_segment_1thread"]["mb_per_s"],
        "python_jieba": mb / seg_s,
        "ratio": r["jieba_rs_segment_1thread"]["mb_per_s"] / (mb / seg_s),
    },
    "encoding": {
        "unit": "MB/s of UTF-8 text, one core (normalise + jieba + WordPiece)",
        "m6_tokenizer": r["encode_1thread"]["mb_per_s"],
        "python_jieba_plus_hf_wordpiece": mb / pipeline_s,
        "ratio_vs_jieba_plus_hf": r["encode_1thread"]["mb_per_s"] / (mb / pipeline_s),
        "hf_bert_wordpiece_no_jieba": mb / hf_s,
        "ratio_vs_hf_bert": r["encode_1thread"]["mb_per_s"] / (mb / hf_s),
        "tokens": {"m6_tokenizer": r["encode_1thread"]["tokens"], "hf_bert_wordpiece": hf_tokens},
        "m6_tokenizer_all_threads": r["encode_all_threads"],
    },
    "images": {
        "unit": "images/s, decode + resize shorter side + centre crop 224 + 16x16 patches, one core",
        "m6_tokenizer": r["images_1thread"]["images_per_s"],
        "pil_numpy": len(photos) / img_s,
        "ratio": r["images_1thread"]["images_per_s"] / (len(photos) / img_s),
        "m6_tokenizer_all_threads": r["images_all_threads"],
    },
    "jpeg_samples": dict(samples, unit="images/s, one core: the stage's default sample (decode at the smallest scale keeping 224 px, resize the shorter side to 224, centre crop, JPEG q90); Pillow plain and with draft (libjpeg-turbo's DCT-domain scaling)"),
    "target": "encoding >= 10x Python jieba per core",
}
os.makedirs(os.path.dirname(result_path), exist_ok=True)
with open(result_path, "w") as f:
    json.dump(res, f, indent=2)
    f.write("\n")
print(json.dumps(res, indent=2))
