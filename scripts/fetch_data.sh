#!/usr/bin/env bash
# Downloads the real sample data used by tests, the demo and the benchmarks, from the
# package registries this project may reach, into data/ (git-ignored). Idempotent:
# what is already there is not fetched again.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${M6_DATA_DIR:-$root/data}"
mkdir -p "$data/cache"
cd "$data/cache"

# Chinese poetry (MIT): ~315k Tang/Song poems in traditional characters, with natural near-duplicates.
if [ ! -d "$data/chinese-poetry" ]; then
  [ -f chinese-poetry-2.0.1.tgz ] || npm pack --silent chinese-poetry@2.0.1 >/dev/null
  rm -rf "$data/chinese-poetry.tmp" && mkdir -p "$data/chinese-poetry.tmp"
  tar xzf chinese-poetry-2.0.1.tgz -C "$data/chinese-poetry.tmp"
  mv "$data/chinese-poetry.tmp/package" "$data/chinese-poetry" && rm -rf "$data/chinese-poetry.tmp"
fi

# Debian Administrator's Handbook: real zh-CN / zh-TW HTML pages with figures and captions.
if [ ! -d "$data/debian-handbook" ]; then
  if ! ls debian-handbook_*.deb >/dev/null 2>&1; then
    apt-get download debian-handbook >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get download debian-handbook >/dev/null; }
  fi
  rm -rf "$data/debian-handbook.tmp" && mkdir -p "$data/debian-handbook.tmp"
  dpkg -x debian-handbook_*.deb "$data/debian-handbook.tmp"
  mkdir -p "$data/debian-handbook"
  mv "$data/debian-handbook.tmp/usr/share/doc/debian-handbook/html/zh-CN" "$data/debian-handbook/zh-CN"
  mv "$data/debian-handbook.tmp/usr/share/doc/debian-handbook/html/zh-TW" "$data/debian-handbook/zh-TW"
  rm -rf "$data/debian-handbook.tmp"
fi

# The same handbook's Japanese and English pages (language-identification tests),
# kept apart so that the zh-* tree the crawl and extract tests serve is unchanged.
if [ ! -d "$data/debian-handbook-i18n" ]; then
  if ! ls debian-handbook_*.deb >/dev/null 2>&1; then
    apt-get download debian-handbook >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get download debian-handbook >/dev/null; }
  fi
  rm -rf "$data/debian-handbook-i18n.tmp" && mkdir -p "$data/debian-handbook-i18n.tmp/out"
  dpkg -x debian-handbook_*.deb "$data/debian-handbook-i18n.tmp"
  for lang in ja-JP en-US; do
    mv "$data/debian-handbook-i18n.tmp/usr/share/doc/debian-handbook/html/$lang" "$data/debian-handbook-i18n.tmp/out/$lang"
  done
  mv "$data/debian-handbook-i18n.tmp/out" "$data/debian-handbook-i18n" && rm -rf "$data/debian-handbook-i18n.tmp"
fi

# Real photographs shipped inside the scikit-image wheel (skimage/data/*.png).
if [ ! -d "$data/photos" ]; then
  if ! ls scikit_image-*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d . scikit-image >/dev/null
  fi
  rm -rf "$data/photos.tmp" && mkdir -p "$data/photos.tmp"
  python3 - "$data/photos.tmp" <<'PY'
import sys, zipfile, glob, os
whl = sorted(glob.glob("scikit_image-*.whl"))[-1]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("skimage/data/") and n.endswith((".png", ".jpg")):
            with open(os.path.join(sys.argv[1], os.path.basename(n)), "wb") as f:
                f.write(z.read(n))
PY
  mv "$data/photos.tmp" "$data/photos"
fi
# Camera photographs from two Debian wallpaper packages (62 MB of .deb): the image
# dedup tests' hue-turned copies and the benchmarks' `photo_wallpaper` family.
[ -d "$data/photos-wallpapers" ] || python3 "$root/bench/lib/wallpapers.py" "$data" >/dev/null
echo "data ready in $data: $(find "$data/chinese-poetry" -name '*.json' | wc -l) poetry files, $(ls "$data/debian-handbook/zh-CN" | wc -l) zh-CN pages, $(ls "$data/photos" | wc -l) photos, $(ls "$data/photos-wallpapers" | wc -l) camera photos"
