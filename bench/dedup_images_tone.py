#!/usr/bin/env python3
"""Image near-duplicates under colour and tone edits: the set the tone-matched check was
built on.

The 31 real photos of bench/dedup_images_stress.py (data/photos, family `photo`, and the
five held-out photographs, `photo_heldout`), each with 18 colour and tone edits, all
saved as JPEG q90:

  in the issue's scope (colour-adjusted copies):
    warm, cool, tint_green (channel gains), swap_bgr (red and blue exchanged), hue15,
    hue35, hue60, hue120 (HSV hue turned by that many degrees), sat05, sat18
    (saturation x0.5, x1.8), equalize (ImageOps.equalize: each channel by its own
    histogram), autocontrast (2% cut-off), posterize3 (3 bits per channel), vintage
    (lifted blacks, lower contrast, warm tint), brighter (x1.4, highlights clip),
    gamma15 (gamma 1.5)
  beyond it, reported apart: solarize (levels over 200 inverted), invert

Hard negatives as in dedup_images.py (left 55%, right 55%, centre 40% of each picture;
the stereo pair). Unlike the stress set, this one is not held out: image_verify's
TONE_BELOW and the tone-matched check were chosen looking at it (the stress set, the
photo benchmark and the scale benchmark's mosaics checked them). imagehash pHash (all
pairs within Hamming 16) runs on the same files. Writes
bench/results/dedup_images_tone.json.

Usage: dedup_images_tone.py [--wallpapers]   (DEDUP_IMAGE_EXTRA="k=v ..." overrides [dedup] fields)
  --wallpapers: the 26 camera photos of bench/lib/wallpapers.py instead, as shipped
  (1280-5312 px); writes dedup_images_tone_wallpapers.json.
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The stress set's module first: importing dedup_images takes this folder off sys.path.
import dedup_images_stress as S  # noqa: E402
import dedup_images as D  # noqa: E402

IN_SCOPE = ["warm", "cool", "tint_green", "swap_bgr", "hue15", "hue35", "hue60", "hue120", "sat05", "sat18",
            "equalize", "autocontrast", "posterize3", "vintage", "brighter", "gamma15"]
BEYOND = ["solarize", "invert"]
OUT = os.path.join(D.ROOT, "bench", "out", "dedup_images_tone")


def variants(im):
    import numpy as np
    from PIL import Image, ImageEnhance, ImageOps
    a = np.asarray(im, dtype=np.float32)

    def gains(r, g, b):
        return Image.fromarray((a * [r, g, b]).clip(0, 255).astype(np.uint8))
    v = {"warm": gains(1.15, 1.0, 0.8), "cool": gains(0.8, 1.0, 1.2), "tint_green": gains(0.9, 1.12, 0.9),
         "swap_bgr": Image.fromarray(np.asarray(im)[..., ::-1].copy())}
    for deg in (15, 35, 60, 120):
        hsv = np.asarray(im.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(int) + int(deg * 256 / 360)) % 256
        v[f"hue{deg}"] = Image.fromarray(hsv, "HSV").convert("RGB")
    v["sat05"] = ImageEnhance.Color(im).enhance(0.5)
    v["sat18"] = ImageEnhance.Color(im).enhance(1.8)
    v["equalize"] = ImageOps.equalize(im)
    v["autocontrast"] = ImageOps.autocontrast(im, cutoff=2)
    v["posterize3"] = ImageOps.posterize(im, 3)
    v["vintage"] = Image.fromarray(((a * 0.8 + 30) * [1.08, 1.0, 0.85]).clip(0, 255).astype(np.uint8))
    v["brighter"] = ImageEnhance.Brightness(im).enhance(1.4)
    v["gamma15"] = im.point(lambda x: int(255 * (x / 255) ** 1.5))
    v["solarize"] = ImageOps.solarize(im, 200)
    v["invert"] = ImageOps.invert(im)
    assert sorted(v) == sorted(IN_SCOPE + BEYOND)
    return v


def build(base):
    from PIL import Image
    os.makedirs(os.path.join(base, "files"))
    entries, group, family = [], {}, {}
    for fam, name, p in D.sources(True):
        im = Image.open(p).convert("RGB")
        items = {"orig": im}
        items.update(variants(im))
        items.update(D.negatives(im))
        for k, v in items.items():
            path = os.path.join(base, "files", f"{name}_{k}.jpg")
            v.save(path, "JPEG", quality=90)
            key = f"{name}:{k}"
            entries.append((key, path))
            group[key] = f"{D.scene(name)}:{k}" if k in D.NEGATIVES else D.scene(name)
            family[key] = fam
    random.Random(3).shuffle(entries)
    return entries, group, family


def main():
    note = ("camera photos (bench/lib/wallpapers.py) that the tone-matched check was not chosen on; image_verify::recoloured was made after "
            "their hue-turned copies in the stress set; all files JPEG q90") if "--wallpapers" in sys.argv else \
        "not held out: the tone-matched check (image_verify::tone_matched) was chosen on this set; all files JPEG q90"
    S.run_set(build, OUT, "dedup_images_tone", IN_SCOPE, BEYOND, note)


if __name__ == "__main__":
    main()
