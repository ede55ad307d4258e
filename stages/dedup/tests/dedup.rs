//! Dedup on real data: exact and planted near duplicates across shards, invariance to
//! sharding and threads, audit rows for every removal, images, pairs, and a rerun after
//! the real binary is killed with SIGKILL mid-run.

mod common;

use std::collections::HashSet;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use common::*;
use m6_schemas::{Document, Image, Pair};
use m6_text::t2s_char;
use m6_stage_dedup::{DedupConfig, KeepRule, PairPolicy};

/// A tiny deterministic PRNG for planting edits.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// The planted near-duplicate kinds, each a function of an article (and a donor text).
fn variants(text: &str, donor: &str, rng: &mut Lcg) -> Vec<(&'static str, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut edited = chars.clone();
    for _ in 0..chars.len() / 40 {
        let i = rng.next() as usize % edited.len();
        edited[i] = char::from_u32(0x4e00 + (rng.next() % 2000) as u32).unwrap();
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut inserted = lines.clone();
    inserted.insert(lines.len() / 2, donor.lines().next().unwrap());
    let mut removed = lines.clone();
    removed.remove(lines.len() / 3);
    let truncated: String = chars[..chars.len() * 4 / 5].iter().collect();
    let mut paras: Vec<&str> = text.split("\n\n").collect();
    paras.reverse();
    vec![
        ("char_edits", edited.into_iter().collect()),
        ("inserted_sentence", inserted.join("\n")),
        ("removed_sentence", removed.join("\n")),
        ("truncated", truncated),
        ("reordered", paras.join("\n\n")),
        ("boilerplate", format!("首页 > 古诗文 > 唐诗三百首 > 正文\n{text}\n本站内容来自网络，版权归原作者所有。联系我们 | 关于本站 | 网站地图")),
        ("simplified", text.chars().map(t2s_char).collect()),
    ]
}

#[test]
fn exact_duplicates_across_shards_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = articles(120, 3);
    let mut rows: Vec<Document> = texts.iter().enumerate().map(|(i, t)| doc("a", &format!("a{i}"), t)).collect();
    // Copies land at the end, i.e. in other shards than their originals; punctuation
    // and full-width changes must not hide them.
    for (i, t) in texts.iter().take(30).enumerate() {
        let copy = if i % 2 == 0 { t.clone() } else { t.replace('，', ", ").replace('。', ".  ") };
        rows.push(doc("b", &format!("b{i}"), &copy));
    }
    let input = write_dataset(&tmp.path().join("in"), &rows, 5);
    let out = tmp.path().join("out");
    dedup(&input, &out, DedupConfig { near: false, ..Default::default() }, 2).unwrap();
    let kept = kept_ids::<Document>(&out, |d| d.id.clone());
    let dups = duplicates(&out);
    let all: Vec<String> = rows.iter().map(|d| d.id.clone()).collect();
    let removed = check_audit(&all, &kept, &dups);
    assert_eq!(removed.len(), 30);
    for (_, (_, reason)) in &removed {
        assert_eq!(reason, "exact_text");
    }
    for d in &dups {
        assert_eq!(d.similarity, 1.0);
    }
    // The pairs are split across shards: each removed row's kept row came from the other source.
    let src: std::collections::HashMap<&str, &str> = rows.iter().map(|d| (d.id.as_str(), d.source.as_str())).collect();
    for d in &dups {
        assert_ne!(src[d.id.as_str()], src[d.kept_id.as_str()]);
    }
}

#[test]
fn texts_without_words_are_not_all_exact_duplicates_of_each_other() {
    // Emoji, symbols and punctuation normalise to nothing; keyed by that, every such
    // text (and every empty one) was one "exact duplicate" and all but one were removed.
    let tmp = tempfile::tempdir().unwrap();
    let texts = ["😀😀😀", "🎉🎉", "★☆★☆", "！？！？", "→ ← ↑ ↓", "😀 😀😀", "", " \n "];
    let rows: Vec<Document> = texts.iter().enumerate().map(|(i, t)| doc("a", &format!("s{i}"), t)).collect();
    let input = write_dataset(&tmp.path().join("in"), &rows, 2);
    let out = tmp.path().join("out");
    dedup(&input, &out, DedupConfig::default(), 2).unwrap();
    let kept = kept_ids::<Document>(&out, |d| d.id.clone());
    let all: Vec<String> = rows.iter().map(|d| d.id.clone()).collect();
    let removed = check_audit(&all, &kept, &duplicates(&out));
    // Only the true copies go: "😀 😀😀" is "😀😀😀" with a space, and the two texts
    // with nothing but whitespace are each other's copies.
    let gone: HashSet<&str> = removed.keys().map(|id| rows.iter().find(|d| &d.id == id).unwrap().text.as_str()).collect();
    assert_eq!(removed.len(), 2, "{gone:?}");
    assert!(gone.contains("😀 😀😀") || gone.contains("😀😀😀"), "{gone:?}");
    assert!(gone.contains("") || gone.contains(" \n "), "{gone:?}");
}

#[test]
fn quality_keep_rule_keeps_the_best_scored_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = articles(40, 3);
    let with_meta = |key: &str, text: &str, meta: Option<&str>| {
        Document::new("q", Some(key.to_string()), None, None, text.to_string(), meta.map(str::to_string))
    };
    let mut rows = vec![];
    let mut want_quality = vec![];
    let mut want_longest = vec![];
    for (i, t) in texts.iter().enumerate() {
        let chars: Vec<char> = t.chars().collect();
        let short: String = chars[..chars.len() * 9 / 10].iter().collect(); // 90%: still a near copy
        let long = format!("{t}{}", &texts[(i + 1) % texts.len()].chars().take(20).collect::<String>());
        // The best score sits on the shortest copy; the longest copy has no usable score.
        rows.push(with_meta(&format!("{i}-short"), &short, Some(r#"{"quality": 0.9, "lang": "zh"}"#)));
        rows.push(with_meta(&format!("{i}-orig"), t, Some(r#"{"quality": 0.2}"#)));
        rows.push(with_meta(&format!("{i}-long"), &long, if i % 2 == 0 { None } else { Some("not json") }));
        want_quality.push(rows[rows.len() - 3].id.clone());
        want_longest.push(rows[rows.len() - 1].id.clone());
    }
    let input = write_dataset(&tmp.path().join("in"), &rows, 3);
    let run = |name: &str, keep: KeepRule| {
        let out = tmp.path().join(name);
        dedup(&input, &out, DedupConfig { keep, ..Default::default() }, 2).unwrap();
        let mut k = kept_ids::<Document>(&out, |d| d.id.clone());
        k.sort();
        k
    };
    want_quality.sort();
    want_longest.sort();
    assert_eq!(run("quality", KeepRule::Quality), want_quality);
    assert_eq!(run("longest", KeepRule::Longest), want_longest);
    // Another field name: nobody has it, so every cluster falls back to the longest copy.
    let out = tmp.path().join("other_field");
    dedup(&input, &out, DedupConfig { keep: KeepRule::Quality, quality_field: "score".into(), ..Default::default() }, 1).unwrap();
    let mut k = kept_ids::<Document>(&out, |d| d.id.clone());
    k.sort();
    assert_eq!(k, want_longest);
}

fn planted_corpus() -> (Vec<Document>, Vec<(String, String, &'static str)>, Vec<String>) {
    let texts = articles(260, 4);
    let (planted_src, rest) = texts.split_at(60);
    let mut rng = Lcg(7);
    let mut rows = vec![];
    let mut groups = vec![];
    for (i, t) in planted_src.iter().enumerate() {
        let orig = doc("orig", &format!("o{i}"), t);
        let vs = variants(t, &rest[i], &mut rng);
        let (kind, v) = &vs[i % vs.len()];
        let dup = doc("copy", &format!("c{i}"), v);
        groups.push((orig.id.clone(), dup.id.clone(), *kind));
        rows.push(orig);
        rows.push(dup);
    }
    let unrelated: Vec<Document> = rest[60..].iter().enumerate().map(|(i, t)| doc("other", &format!("u{i}"), t)).collect();
    let unrelated_ids = unrelated.iter().map(|d| d.id.clone()).collect();
    rows.extend(unrelated);
    // Spread planted copies away from their originals.
    let mut rng = Lcg(11);
    for i in (1..rows.len()).rev() {
        let j = rng.next() as usize % (i + 1);
        rows.swap(i, j);
    }
    (rows, groups, unrelated_ids)
}

#[test]
fn planted_near_duplicates_found_and_unrelated_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, groups, unrelated) = planted_corpus();
    let input = write_dataset(&tmp.path().join("in"), &rows, 4);
    let out = tmp.path().join("out");
    dedup(&input, &out, DedupConfig::default(), 2).unwrap();
    let kept: HashSet<String> = kept_ids::<Document>(&out, |d| d.id.clone()).into_iter().collect();
    let all: Vec<String> = rows.iter().map(|d| d.id.clone()).collect();
    let kv: Vec<String> = kept.iter().cloned().collect();
    let removed = check_audit(&all, &kv, &duplicates(&out));
    let mut missed = vec![];
    for (o, c, kind) in &groups {
        let n = kept.contains(o) as u32 + kept.contains(c) as u32;
        if n != 1 {
            missed.push(*kind);
        }
    }
    assert!(missed.is_empty(), "planted near duplicates not found: {missed:?}");
    for u in &unrelated {
        assert!(kept.contains(u), "unrelated document {u} was removed as {:?}", removed.get(u));
    }
    assert_eq!(removed.len(), groups.len());
    // The default keep rule keeps the longer of each pair.
    let len: std::collections::HashMap<&str, u32> = rows.iter().map(|d| (d.id.as_str(), d.char_count)).collect();
    for (id, (k, _)) in &removed {
        assert!(len[k.as_str()] >= len[id.as_str()]);
    }
}

#[test]
fn same_output_whatever_shards_and_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, _, _) = planted_corpus();
    let mut results = vec![];
    for (shards, threads) in [(1, 1), (7, 2), (3, 3)] {
        let input = write_dataset(&tmp.path().join(format!("in{shards}")), &rows, shards);
        let out = tmp.path().join(format!("out{shards}-{threads}"));
        dedup(&input, &out, DedupConfig::default(), threads).unwrap();
        let kept = kept_ids::<Document>(&out, |d| format!("{}:{}", d.id, d.text));
        let dups: Vec<String> = duplicates(&out).iter().map(|d| format!("{:?}", d)).collect();
        results.push((kept, dups));
    }
    assert!(!results[0].1.is_empty());
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

#[test]
fn rerun_reuses_global_phase_and_changed_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, _, _) = planted_corpus();
    let input = write_dataset(&tmp.path().join("in"), &rows, 3);
    let out = tmp.path().join("out");
    dedup(&input, &out, DedupConfig::default(), 2).unwrap();
    let first = (kept_ids::<Document>(&out, |d| d.id.clone()), duplicates(&out).len());
    dedup(&input, &out, DedupConfig::default(), 1).unwrap();
    assert_eq!(first, (kept_ids::<Document>(&out, |d| d.id.clone()), duplicates(&out).len()));
    let err = dedup(&input, &out, DedupConfig { threshold: 0.9, ..Default::default() }, 1).unwrap_err();
    assert!(err.to_string().contains("another config"), "{err}");
}

#[test]
fn word_shingles_find_planted_duplicates_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, groups, unrelated) = planted_corpus();
    let input = write_dataset(&tmp.path().join("in"), &rows, 2);
    let out = tmp.path().join("out");
    dedup(&input, &out, DedupConfig { shingle: m6_stage_dedup::Shingle::Word, ..Default::default() }, 2).unwrap();
    let kept: HashSet<String> = kept_ids::<Document>(&out, |d| d.id.clone()).into_iter().collect();
    let found = groups.iter().filter(|(o, c, _)| kept.contains(o) != kept.contains(c)).count();
    assert!(found * 10 >= groups.len() * 9, "word shingles found only {found} of {}", groups.len());
    assert!(unrelated.iter().all(|u| kept.contains(u)));
}

fn encode_png(img: &image::DynamicImage) -> Vec<u8> {
    let mut buf = Cursor::new(vec![]);
    img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
    buf.into_inner()
}

fn encode_jpeg(img: &image::DynamicImage, q: u8) -> Vec<u8> {
    let mut buf = Cursor::new(vec![]);
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, q);
    img.to_rgb8().write_with_encoder(enc).unwrap();
    buf.into_inner()
}

/// Near copies of one photo: resized, recompressed, cropped, watermarked.
fn photo_variants(img: &image::DynamicImage) -> Vec<(&'static str, Vec<u8>)> {
    let (w, h) = (img.width(), img.height());
    let mut marked = img.to_rgb8();
    for y in h * 90 / 100..h * 96 / 100 {
        for x in w * 70 / 100..w * 95 / 100 {
            marked.put_pixel(x, y, image::Rgb([255, 255, 255]));
        }
    }
    vec![
        ("resized", encode_png(&img.resize(w / 2, h / 2, image::imageops::FilterType::Triangle))),
        ("recompressed", encode_jpeg(img, 40)),
        ("cropped", encode_png(&img.crop_imm(w / 50, h / 50, w - w / 25, h - h / 25))),
        ("watermarked", encode_png(&image::DynamicImage::ImageRgb8(marked))),
    ]
}

/// Photos that get near copies. pHash is fragile on pure textures (brick, grass,
/// gravel) and on crops beyond a few percent; the benchmark measures those.
const PHOTOS: [&str; 10] = [
    "astronaut.png", "coffee.png", "chelsea.png", "camera.png", "horse.png",
    "motorcycle_left.png", "page.png", "ihc.png", "logo.png", "coins.png",
];
/// Different photos added as they are: none may be merged with anything.
const OTHERS: [&str; 4] = ["moon.png", "hubble_deep_field.jpg", "retina.jpg", "rocket.jpg"];

#[test]
fn near_duplicate_images_found_and_different_photos_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = vec![];
    let mut originals = vec![];
    let mut copies = vec![];
    for (i, name) in PHOTOS.iter().enumerate() {
        let bytes = std::fs::read(data_dir().join("photos").join(name)).unwrap();
        let img = image::load_from_memory(&bytes).unwrap();
        let orig = image_row("photos", name, encode_png(&img));
        originals.push(orig.id.clone());
        rows.push(orig);
        // Half the photos get one variant each kind; all are checked.
        for (kind, b) in photo_variants(&img).into_iter().skip(i % 2) {
            let r = image_row("copies", &format!("{name}:{kind}"), b);
            copies.push((r.id.clone(), format!("{name}:{kind}")));
            rows.push(r);
        }
    }
    for name in OTHERS {
        let bytes = std::fs::read(data_dir().join("photos").join(name)).unwrap();
        rows.push(image_row("others", name, bytes));
    }
    let input = write_dataset(&tmp.path().join("in"), &rows, 3);
    let out = tmp.path().join("out");
    dedup(&input, &out, DedupConfig::default(), 2).unwrap();
    let kept = kept_ids::<Image>(&out, |d| d.id.clone());
    let all: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let removed = check_audit(&all, &kept, &duplicates(&out));
    // One image per photo survives: distinct photos are never merged.
    assert_eq!(kept.len(), PHOTOS.len() + OTHERS.len(), "kept {} images for {} photos", kept.len(), PHOTOS.len() + OTHERS.len());
    for (id, what) in &copies {
        assert!(removed.contains_key(id) || kept.contains(id), "{what} lost");
    }
    for (_, (_, reason)) in &removed {
        assert!(reason == "near_image" || reason == "exact_image", "{reason}");
    }
}

#[test]
fn pair_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let a = std::fs::read(data_dir().join("photos/astronaut.png")).unwrap();
    let c = std::fs::read(data_dir().join("photos/coffee.png")).unwrap();
    let a_small = encode_png(&image::load_from_memory(&a).unwrap().resize(256, 256, image::imageops::FilterType::Triangle));
    let rows = vec![
        pair_row("p", a.clone(), "宇航员在太空中"),
        pair_row("p", a_small.clone(), "宇航员在太空中。"), // near image, same caption
        pair_row("p", a.clone(), "一位穿着宇航服的女性"),  // same image, other caption
        pair_row("p", c.clone(), "宇航员在太空中"),          // same caption, other image
        pair_row("p", c.clone(), "一杯咖啡"),
    ];
    let input = write_dataset(&tmp.path().join("in"), &rows, 2);
    let count = |name: &str, cfg: DedupConfig| {
        let out = tmp.path().join(name);
        dedup(&input, &out, cfg, 1).unwrap();
        kept_ids::<Pair>(&out, |p| p.id.clone()).len()
    };
    assert_eq!(count("keep", DedupConfig::default()), 4);
    assert_eq!(count("img", DedupConfig { same_image_different_caption: PairPolicy::Drop, ..Default::default() }), 2);
    assert_eq!(count("cap", DedupConfig { same_caption_different_image: PairPolicy::Drop, ..Default::default() }), 3);
}

/// Image–caption pairs use the images' keep rule: of a photo and its letterboxed and
/// white-padded copies under one caption, the pair with the original is kept (before,
/// the copies' larger canvases won).
#[test]
fn pairs_keep_the_original_over_padded_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = vec![];
    let mut want = vec![];
    for (name, caption) in [("coffee.png", "一杯咖啡"), ("chelsea.png", "一只猫"), ("astronaut.png", "宇航员在太空中")] {
        let img = image::open(data_dir().join("photos").join(name)).unwrap().to_rgb8();
        let (w, h) = (img.width(), img.height());
        let mut letterbox = image::RgbImage::from_pixel(w, h * 2, image::Rgb([0, 0, 0]));
        image::imageops::overlay(&mut letterbox, &img, 0, (h / 2) as i64);
        let m = w.max(h) / 12;
        let mut padded = image::RgbImage::from_pixel(w + 2 * m, h + 2 * m, image::Rgb([255, 255, 255]));
        image::imageops::overlay(&mut padded, &img, m as i64, m as i64);
        for copy in [letterbox, padded] {
            rows.push(pair_row("p", encode_jpeg(&image::DynamicImage::ImageRgb8(copy), 90), caption));
        }
        let orig = pair_row("p", encode_jpeg(&image::DynamicImage::ImageRgb8(img), 90), caption);
        want.push(orig.id.clone());
        rows.push(orig);
    }
    let input = write_dataset(&tmp.path().join("in"), &rows, 2);
    let out = tmp.path().join("out");
    dedup(&input, &out, DedupConfig::default(), 1).unwrap();
    want.sort();
    assert_eq!(kept_ids::<Pair>(&out, |p| p.id.clone()), want, "every copy found, and the original's pair kept");
}

fn m6corpus() -> std::path::PathBuf {
    let p = std::env::var_os("M6CORPUS_BIN").map(Into::into).unwrap_or_else(|| repo().join("target/release/m6corpus"));
    assert!(p.is_file(), "{} is missing: build it with `cargo build --release -p m6corpus`", p.display());
    p
}

fn run_bin(input: &Path, out: &Path) -> Command {
    let mut c = Command::new(m6corpus());
    c.args(["dedup", "--quiet", "--threads", "2", "--shard-mb", "1", "--input"]).arg(input).arg("--output").arg(out).env("RUST_LOG", "warn");
    c
}

#[test]
fn rerun_after_kill_9_gives_the_same_output() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = articles(4000, 3);
    let mut rows: Vec<Document> = texts.iter().enumerate().map(|(i, t)| doc("a", &format!("a{i}"), t)).collect();
    let mut rng = Lcg(3);
    for (i, t) in texts.iter().take(600).enumerate() {
        let vs = variants(t, &texts[texts.len() - 1 - i], &mut rng);
        rows.push(doc("b", &format!("b{i}"), &vs[i % vs.len()].1));
    }
    let input = write_dataset(&tmp.path().join("in"), &rows, 24);
    let clean = tmp.path().join("clean");
    let t0 = std::time::Instant::now();
    assert!(run_bin(&input, &clean).status().unwrap().success());
    let full = t0.elapsed();

    // Kill points spread over one clean run's duration, so they land in signing,
    // clustering and writing whatever the machine's speed.
    let killed = tmp.path().join("killed");
    let mut kills = 0;
    for frac in [0.1, 0.25, 0.4, 0.55, 0.7, 0.85] {
        let mut child = run_bin(&input, &killed).spawn().unwrap();
        std::thread::sleep(full.mul_f64(frac));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills > 0, "the run always finished before it could be killed");
    assert!(run_bin(&input, &killed).status().unwrap().success());

    let view = |out: &Path| {
        let kept = kept_ids::<Document>(out, |d| format!("{}:{}", d.id, d.text));
        let dups: Vec<String> = duplicates(out).iter().map(|d| format!("{d:?}")).collect();
        (kept, dups)
    };
    let (a, b) = (view(&clean), view(&killed));
    assert!(!a.1.is_empty());
    assert_eq!(a, b);
    let out = Command::new(m6corpus()).arg("verify").arg(&killed).output().unwrap();
    assert!(out.status.success(), "verify: {}", String::from_utf8_lossy(&out.stdout));
}

