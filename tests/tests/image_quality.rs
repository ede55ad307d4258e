//! Per-image quality signals through the real binary (issue 16): the filter records
//! sharpness, entropy and border share as columns of image and pair datasets; a
//! blurred copy of a real photo scores lower sharpness and a letterboxed copy a higher
//! border share; rules on them drop what they should; `stats` and `report` show their
//! distributions; version-1 image datasets (before the columns) still read; dedup keeps
//! the largest, sharpest copy of a cluster.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use ::image::DynamicImage;
use m6_pipeline::Dataset;
use m6_schemas::*;
use m6_tests::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn photo(name: &str) -> DynamicImage {
    ::image::open(data_dir().join("photos").join(name)).unwrap()
}

fn jpeg(img: &DynamicImage) -> Vec<u8> {
    let mut buf = Cursor::new(vec![]);
    img.to_rgb8().write_with_encoder(::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 92)).unwrap();
    buf.into_inner()
}

/// 16:9 letterbox of a photo: black bars above and below, as a video frame grab has.
fn letterbox(img: &DynamicImage) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    let canvas_h = h * 2;
    let mut c = ::image::RgbImage::from_pixel(w, canvas_h, ::image::Rgb([0, 0, 0]));
    ::image::imageops::overlay(&mut c, &img.to_rgb8(), 0, (canvas_h - h) as i64 / 2);
    DynamicImage::ImageRgb8(c)
}

const PHOTOS: &[&str] = &["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png"];

/// Writes, per photo, the original (JPEG), a blurred copy and a letterboxed copy.
fn variants(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for name in PHOTOS {
        let img = photo(name);
        let stem = name.split('.').next().unwrap();
        std::fs::write(dir.join(format!("{stem}.jpg")), jpeg(&img)).unwrap();
        std::fs::write(dir.join(format!("{stem}-blur.jpg")), jpeg(&img.blur(3.0))).unwrap();
        std::fs::write(dir.join(format!("{stem}-letterbox.jpg")), jpeg(&letterbox(&img))).unwrap();
    }
}

fn by_name(rows: &[Image]) -> HashMap<String, ImageSignals> {
    rows.iter().map(|r| (r.source_id.clone().unwrap().rsplit('/').next().unwrap().trim_end_matches(".jpg").to_string(), r.signals)).collect()
}

#[test]
fn filter_records_signals_and_rules_stats_report_use_them() {
    let t = tempfile::tempdir().unwrap();
    variants(&t.path().join("album/set"));
    let ingested = t.path().join("images");
    m6_ok(&["ingest", "--input", s(&t.path().join("album")), "--output", s(&ingested), "--quiet"]);
    assert_eq!(Dataset::open(&ingested).unwrap().kind(), Kind::Image);
    let before: Vec<Image> = Dataset::open(&ingested).unwrap().read_all().unwrap();
    assert!(before.iter().all(|r| r.signals == ImageSignals::default()), "ingest measures nothing");

    // Default rules: every copy is kept (a blurred or letterboxed photo is still a photo),
    // and every kept row carries its signals.
    let filtered = t.path().join("filtered");
    m6_ok(&["filter", "--input", s(&ingested), "--output", s(&filtered), "--quiet"]);
    let rows: Vec<Image> = Dataset::open(&filtered).unwrap().read_all().unwrap();
    assert_eq!(rows.len(), PHOTOS.len() * 3, "the default quality rules drop none of these photos");
    let sig = by_name(&rows);
    let mut table: Vec<_> = sig.iter().collect();
    table.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in table {
        eprintln!("{k:24} sharpness {:>9.1} entropy {:.3} border {:.3}", v.sharpness.unwrap(), v.entropy.unwrap(), v.border.unwrap());
    }
    for name in PHOTOS {
        let stem = name.split('.').next().unwrap();
        let (o, b, l) = (sig[stem], sig[&format!("{stem}-blur")], sig[&format!("{stem}-letterbox")]);
        let (os, bs) = (o.sharpness.unwrap(), b.sharpness.unwrap());
        assert!(bs * 3.0 < os, "{stem}: blurred copy sharpness {bs} vs original {os}");
        let (ob, lb) = (o.border.unwrap(), l.border.unwrap());
        assert!(ob < 0.1 && lb > 0.4, "{stem}: border share original {ob}, letterboxed {lb}");
        assert!(o.entropy.unwrap() > 5.0 && o.entropy.unwrap() <= 8.0, "{stem}: entropy {:?}", o.entropy);
    }

    // Rules on the signals: the blurred copies fail image.sharpness, the letterboxed
    // ones image.border; each reject names its rule. (Blurred copies measure 10–145
    // here, the originals and letterboxed copies 290–2900: 200 lies between.)
    let strict = t.path().join("strict");
    m6_ok(&["filter", "--input", s(&ingested), "--output", s(&strict), "--set", "image.min_sharpness=200", "--set", "image.max_border=0.4", "--quiet"]);
    let ds = Dataset::open(&strict).unwrap();
    let kept = by_name(&ds.read_all::<Image>().unwrap());
    let mut kept_names: Vec<&str> = kept.keys().map(String::as_str).collect();
    kept_names.sort();
    let mut want: Vec<&str> = PHOTOS.iter().map(|n| n.split('.').next().unwrap()).collect();
    want.sort();
    assert_eq!(kept_names, want);
    let rejects: Vec<Reject> = ds.side("rejects").unwrap().read_all().unwrap();
    assert_eq!(rejects.len(), PHOTOS.len() * 2);
    for r in &rejects {
        let label = r.source_id.as_deref().unwrap();
        let want = if label.contains("-blur") { "image.sharpness" } else { "image.border" };
        assert_eq!(r.rule, want, "{label}");
    }
    // Image rejects carry no text snippet: stats' examples name the dropped files.
    let st: serde_json::Value = serde_json::from_str(&m6_ok(&["stats", s(&strict), "--json"])).unwrap();
    let rules = st["rejects"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{st}");
    for rule in rules {
        let examples = rule["snippets"].as_array().unwrap();
        assert_eq!(examples.len(), PHOTOS.len().min(3), "{rule}");
        let mark = if rule["rule"] == "image.sharpness" { "-blur" } else { "-letterbox" };
        for e in examples {
            let e = e.as_str().unwrap();
            assert!(e.contains(mark) && rejects.iter().any(|r| r.source_id.as_deref() == Some(e)), "{} example {e:?}", rule["rule"]);
        }
    }

    // stats and report show the three distributions, one value per kept row.
    let st: serde_json::Value = serde_json::from_str(&m6_ok(&["stats", s(&filtered), "--json"])).unwrap();
    for col in [image_signals::SHARPNESS, image_signals::ENTROPY, image_signals::BORDER] {
        let d = st["distributions"].as_array().unwrap().iter().find(|d| d["name"] == col).unwrap_or_else(|| panic!("no {col} distribution: {st}"));
        assert_eq!(d["count"], rows.len());
    }
    let html = t.path().join("r.html");
    m6_ok(&["report", s(&filtered), "-o", s(&html)]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Score distribution: sharpness") && page.contains("Score distribution: border"));

    // Pairs get the same columns.
    let cap = t.path().join("captioned");
    std::fs::create_dir_all(&cap).unwrap();
    std::fs::write(cap.join("chelsea.jpg"), jpeg(&photo("chelsea.png"))).unwrap();
    std::fs::write(cap.join("captions.jsonl"), "{\"file\": \"chelsea.jpg\", \"caption\": \"一只猫坐在地上看着镜头\"}\n").unwrap();
    let pairs = t.path().join("pairs");
    m6_ok(&["ingest", "--input", s(&cap), "--output", s(&pairs), "--quiet"]);
    let pf = t.path().join("pairs-f");
    m6_ok(&["filter", "--input", s(&pairs), "--output", s(&pf), "--quiet"]);
    let p: Vec<Pair> = Dataset::open(&pf).unwrap().read_all().unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].signals, sig["chelsea"], "a pair's image measures as the same image does");
}

/// Image schema v2 appended the signal columns; a v1 image dataset (nine columns,
/// manifest `schema_version` 1) is still verified, read, inspected and filtered.
#[test]
fn version_1_image_datasets_still_read() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("album/x");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["coffee.png", "rocket.jpg"] {
        std::fs::copy(data_dir().join("photos").join(name), dir.join(name)).unwrap();
    }
    let imgs = t.path().join("imgs");
    m6_ok(&["ingest", "--input", s(&t.path().join("album")), "--output", s(&imgs), "--quiet"]);
    let script = r#"
import sys, glob, pyarrow.parquet as pq
for f in glob.glob(sys.argv[1] + "/*.parquet"):
    t = pq.read_table(f)
    t = t.select(t.column_names[:9])
    meta = dict(t.schema.metadata or {})
    meta[b"m6corpus.version"] = b"1"
    pq.write_table(t.replace_schema_metadata(meta), f, compression="zstd")
"#;
    let out = std::process::Command::new(venv_python()).args(["-c", script, s(&imgs)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mpath = imgs.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["schema_version"] = 1.into();
    for sh in m["shards"].as_array_mut().unwrap() {
        let bytes = std::fs::read(imgs.join(sh["file"].as_str().unwrap())).unwrap();
        sh["bytes"] = bytes.len().into();
        sh["blake3"] = blake3::hash(&bytes).to_hex().to_string().into();
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    assert!(m6_ok(&["verify", s(&imgs)]).contains(": ok"));
    let old: Vec<Image> = Dataset::open(&imgs).unwrap().read_all().unwrap();
    assert_eq!(old.len(), 2);
    assert!(old.iter().all(|r| r.signals == ImageSignals::default()));
    let st: serde_json::Value = serde_json::from_str(&m6_ok(&["stats", s(&imgs), "--json"])).unwrap();
    assert_eq!(st["rows"], 2);
    assert!(!st["distributions"].as_array().unwrap().iter().any(|d| d["name"] == "sharpness"), "no signals before the filter ran");
    let f = t.path().join("f");
    m6_ok(&["filter", "--input", s(&imgs), "--output", s(&f), "--quiet"]);
    let ds = Dataset::open(&f).unwrap();
    assert_eq!(ds.manifest().schema_version, 2);
    let kept: Vec<Image> = ds.read_all().unwrap();
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|r| r.signals.sharpness.is_some() && r.signals.entropy.is_some() && r.signals.border.is_some()));
}

/// Ingests `ROOT/album` (caption-less images), dedups it with the defaults, and returns
/// the kept rows' source ids, sorted.
fn kept_after_ingest_and_dedup(root: &Path) -> Vec<String> {
    let imgs = root.join("imgs");
    m6_ok(&["ingest", "--input", s(&root.join("album")), "--output", s(&imgs), "--quiet"]);
    let dd = root.join("dd");
    m6_ok(&["dedup", "--input", s(&imgs), "--output", s(&dd), "--quiet"]);
    let mut kept: Vec<String> = Dataset::open(&dd).unwrap().read_all::<Image>().unwrap().into_iter().map(|r| r.source_id.unwrap()).collect();
    kept.sort();
    kept
}

/// A copy with a dark text banner across the bottom ninth, as a site stamps its name on
/// pictures it republishes: a row of white letter-sized marks on near-black.
fn banner(img: &DynamicImage) -> DynamicImage {
    let mut c = img.to_rgb8();
    let (w, h) = (c.width(), c.height());
    let bh = (h / 9).max(8);
    for y in h - bh..h {
        for x in 0..w {
            c.put_pixel(x, y, ::image::Rgb([20, 20, 20]));
        }
    }
    let (lw, gap) = ((bh / 4).max(2), (bh / 2).max(3));
    let mut x = w / 20;
    let mut i = 0u32;
    while x + lw < w * 3 / 4 {
        let lh = bh / 3 + (i * 7 % 5) * bh / 15;
        for y in h - bh / 2 - lh / 2..h - bh / 2 + lh / 2 {
            for dx in 0..lw {
                c.put_pixel(x + dx, y, ::image::Rgb([255, 255, 255]));
            }
        }
        x += lw + gap + if i % 5 == 4 { gap } else { 0 };
        i += 1;
    }
    DynamicImage::ImageRgb8(c)
}

/// A copy with a logo laid over its lower right corner at 70% opacity.
fn logo_stamp(img: &DynamicImage) -> DynamicImage {
    let mut c = img.to_rgba8();
    let side = (img.width().min(img.height()) / 5).max(8);
    let mut logo = photo("logo.png").resize_exact(side, side, ::image::imageops::FilterType::Triangle).to_rgba8();
    for p in logo.pixels_mut() {
        p.0[3] = (p.0[3] as u32 * 7 / 10) as u8;
    }
    let (x, y) = (img.width() - side - img.width() / 40, img.height() - side - img.height() / 40);
    ::image::imageops::overlay(&mut c, &logo, x as i64, y as i64);
    DynamicImage::ImageRgba8(c)
}

/// A copy on a white canvas a twelfth of its longer side wider on every side.
fn padded_white(img: &DynamicImage) -> DynamicImage {
    let m = img.width().max(img.height()) / 12;
    let mut c = ::image::RgbImage::from_pixel(img.width() + 2 * m, img.height() + 2 * m, ::image::Rgb([255, 255, 255]));
    ::image::imageops::overlay(&mut c, &img.to_rgb8(), m as i64, m as i64);
    DynamicImage::ImageRgb8(c)
}

/// Of a photo and its copies with a text banner, a logo, white padding and letterbox
/// bars, all at the original's resolution, dedup keeps the original. Before, the
/// padded and letterboxed copies won on pixel count and the banner and logo copies on
/// the score (their marks add bytes and edges); on `bench/dedup_images.py` the kept
/// row was the original in 3 of 87 clusters.
#[test]
fn dedup_keeps_the_original_over_padded_and_stamped_copies() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("album/d");
    std::fs::create_dir_all(&dir).unwrap();
    let mut originals = vec![];
    for name in ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"] {
        let img = photo(name);
        let stem = name.split('.').next().unwrap();
        // The copies sort first by name, so input order does not pick the original.
        std::fs::write(dir.join(format!("a-{stem}-banner.jpg")), jpeg(&banner(&img))).unwrap();
        std::fs::write(dir.join(format!("b-{stem}-logo.jpg")), jpeg(&logo_stamp(&img))).unwrap();
        std::fs::write(dir.join(format!("c-{stem}-padded.jpg")), jpeg(&padded_white(&img))).unwrap();
        std::fs::write(dir.join(format!("d-{stem}-letterbox.jpg")), jpeg(&letterbox(&img))).unwrap();
        std::fs::write(dir.join(format!("e-{stem}.jpg")), jpeg(&img)).unwrap();
        originals.push(format!("d/e-{stem}.jpg"));
    }
    let kept = kept_after_ingest_and_dedup(t.path());
    originals.sort();
    assert_eq!(kept, originals, "every copy found, and the original kept");
}

/// Dedup's default keep rule for images: of a photo, a half-size thumbnail and a
/// slightly blurred copy at full size, the full-size sharp original is kept.
#[test]
fn dedup_keeps_the_largest_sharpest_copy() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("album/d");
    std::fs::create_dir_all(&dir).unwrap();
    let mut originals = vec![];
    for name in ["chelsea.png", "coffee.png", "astronaut.png"] {
        let img = photo(name);
        let stem = name.split('.').next().unwrap();
        // The copies sort first by name, so input order does not pick the original.
        std::fs::write(dir.join(format!("a-{stem}-thumb.jpg")), jpeg(&img.resize(img.width() / 2, img.height() / 2, ::image::imageops::FilterType::Triangle))).unwrap();
        std::fs::write(dir.join(format!("b-{stem}-blur.jpg")), jpeg(&img.blur(1.2))).unwrap();
        std::fs::write(dir.join(format!("c-{stem}.jpg")), jpeg(&img)).unwrap();
        originals.push(format!("d/c-{stem}.jpg"));
    }
    let kept = kept_after_ingest_and_dedup(t.path());
    originals.sort();
    assert_eq!(kept, originals);
}
