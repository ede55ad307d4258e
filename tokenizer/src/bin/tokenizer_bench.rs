//! Benchmark driver for bench/tokenize.sh: builds a corpus from the real sample data
//! (Tang poems + Debian Handbook pages), trains a 21128-token vocabulary on it, and
//! times jieba-rs segmentation, full encoding (one thread and all threads) and image
//! preprocessing. Writes the corpus, vocab.txt and `rust.json` for the Python peers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use m6_tokenizer::{ImageConfig, Tokenizer, TokenizerConfig, TrainerConfig, WordCounter};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

fn poems(data: &Path, files: usize) -> Vec<String> {
    let dir = data.join("chinese-poetry/dist/quantangshi");
    let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            let n = p.file_name()?.to_str()?.strip_prefix("poet.tang.")?.strip_suffix(".json")?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    names.sort();
    let mut out = vec![];
    for (_, p) in names.into_iter().take(files) {
        let v: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        for p in v {
            let lines: Vec<&str> = p["paragraphs"].as_array().map(|a| a.iter().filter_map(|l| l.as_str()).collect()).unwrap_or_default();
            out.push(format!("{}\n{}", p["title"].as_str().unwrap_or(""), lines.join("\n")));
        }
    }
    out
}

fn handbook(data: &Path) -> Vec<String> {
    let mut out = vec![];
    for lang in ["zh-CN", "zh-TW"] {
        let dir = data.join("debian-handbook").join(lang);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "html")).collect();
        files.sort();
        for f in files {
            let html = std::fs::read_to_string(&f).unwrap();
            let mut text = String::new();
            let mut in_tag = false;
            for c in html.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    _ if !in_tag => text.push(c),
                    _ => {}
                }
            }
            // Collapse the blank lines the markup leaves, as extraction would.
            let text: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            out.push(text.join("\n"));
        }
    }
    out
}

/// Best of `reps` runs, in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let data = PathBuf::from(arg("--data", "data"));
    let out = PathBuf::from(arg("--out", "bench/out/tokenize"));
    let files: usize = arg("--poem-files", "15").parse().unwrap();
    let reps: usize = arg("--reps", "3").parse().unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let mut docs = poems(&data, files);
    let hb = handbook(&data);
    let pages = hb.len();
    docs.extend(hb);
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    std::fs::write(out.join("corpus.json"), serde_json::to_vec(&docs).unwrap()).unwrap();

    let counting = Tokenizer::new(TokenizerConfig::default(), m6_tokenizer::WordPiece::new(m6_tokenizer::trainer::reserved_tokens(), "[UNK]").unwrap()).unwrap();
    let t = Instant::now();
    let mut counter = WordCounter::default();
    counter.add_texts(&counting, &docs);
    let tok = Tokenizer::new(TokenizerConfig::default(), counter.train(&TrainerConfig::default()).unwrap()).unwrap();
    let train_s = t.elapsed().as_secs_f64();
    tok.save(&out.join("vocab.txt")).unwrap();

    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let jieba = m6_text::jieba();
    let mut words = 0usize;
    let seg_s = best(reps, || words = docs.iter().map(|d| jieba.cut(d, true).len()).sum());
    let mut tokens = 0usize;
    let mut unk = 0usize;
    let enc1_s = best(reps, || {
        let e = one.install(|| tok.encode_batch(&docs, false));
        tokens = e.iter().map(|e| e.ids.len()).sum();
        unk = e.iter().map(|e| e.unk).sum();
    });
    let threads = rayon::current_num_threads();
    let encn_s = best(reps, || {
        std::hint::black_box(tok.encode_batch(&docs, false));
    });

    let mut photos: Vec<PathBuf> = std::fs::read_dir(data.join("photos")).unwrap().map(|e| e.unwrap().path()).collect();
    photos.sort();
    let images: Vec<Vec<u8>> = photos.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let image_bytes: usize = images.iter().map(Vec::len).sum();
    let cfg = ImageConfig::default();
    let img1_s = best(reps, || {
        for b in &images {
            std::hint::black_box(cfg.preprocess(b).unwrap());
        }
    });
    let imgn_s = best(reps, || {
        use rayon::prelude::*;
        let v: Vec<_> = images.par_iter().map(|b| cfg.preprocess(b).unwrap()).collect();
        std::hint::black_box(v);
    });
    // The stage's default sample (`image_encoding = "jpeg"`): decoded at the smallest
    // scale that keeps 224 px, resized, centre-cropped and stored as JPEG q90, on the
    // photos above, on camera photos (1280-5312 px), where the decode dominates, and on
    // web-sized JPEGs made from them (OUT/web_photos, written by bench/lib/web_photos.py:
    // 480-768 px on the shorter side, read at 1/2).
    let mut samples = serde_json::Map::new();
    let read_set = |dir: PathBuf| -> Option<Vec<Vec<u8>>> {
        std::fs::read_dir(dir).ok().map(|rd| {
            let mut paths: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
            paths.sort();
            paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
        })
    };
    let camera = read_set(data.join("photos-wallpapers"));
    let web = read_set(out.join("web_photos"));
    for (set, files) in [("photos", Some(&images)), ("camera_photos", camera.as_ref()), ("web_photos", web.as_ref())] {
        let Some(files) = files else { continue };
        let s = best(reps, || {
            for b in files {
                std::hint::black_box(cfg.encode_sample(b, m6_tokenizer::image::ImageEncoding::Jpeg, 90, true).unwrap());
            }
        });
        samples.insert(set.into(), serde_json::json!({ "images": files.len(), "seconds": s, "images_per_s": files.len() as f64 / s }));
    }
    let mb = bytes as f64 / 1e6;
    let r = serde_json::json!({
        "input": { "documents": docs.len(), "bytes": bytes, "chars": docs.iter().map(|d| d.chars().count()).sum::<usize>(),
                   "poem_files": files, "handbook_pages": pages, "images": images.len(), "image_bytes": image_bytes },
        "vocab": { "size": tok.vocab_size(), "train_seconds": train_s },
        "jieba_rs_segment_1thread": { "seconds": seg_s, "mb_per_s": mb / seg_s, "words": words },
        "encode_1thread": { "seconds": enc1_s, "mb_per_s": mb / enc1_s, "tokens": tokens, "unk": unk },
        "encode_all_threads": { "threads": threads, "seconds": encn_s, "mb_per_s": mb / encn_s },
        "images_1thread": { "seconds": img1_s, "images_per_s": images.len() as f64 / img1_s, "image_size": cfg.image_size, "patch_size": cfg.patch_size },
        "images_all_threads": { "threads": threads, "seconds": imgn_s, "images_per_s": images.len() as f64 / imgn_s },
        "jpeg_samples_1thread": samples,
    });
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
}
