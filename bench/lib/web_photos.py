"""Web-sized JPEGs for bench/tokenize.sh: the camera photos of bench/lib/wallpapers.py
(1,280-5,312 px, in DATA/photos-wallpapers) scaled down so that their shorter side is
480, 600 or 768 px (in turn), saved by Pillow (libjpeg-turbo) as q85 4:2:0, every
third one progressive. Photos of this size are most of the web's; for a 224 px sample
they are read at 1/2 scale. Writes nothing when the camera photos are not there.

Usage: web_photos.py DATA OUT_DIR
"""
import glob
import os
import sys

from PIL import Image

data, out = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(os.path.join(data, "photos-wallpapers", "*")))
if files:
    os.makedirs(out, exist_ok=True)
for i, p in enumerate(files):
    im = Image.open(p).convert("RGB")
    short = (480, 600, 768)[i % 3]
    w, h = im.size
    k = short / min(w, h)
    if k < 1:
        im = im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.LANCZOS)
    name = os.path.splitext(os.path.basename(p))[0] + ".jpg"
    im.save(os.path.join(out, name), "JPEG", quality=85, subsampling=2, progressive=i % 3 == 2)
