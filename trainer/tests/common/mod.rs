//! Test fixtures: `sample` datasets made by the real pipeline from the real data under
//! data/ — `m6corpus ingest` (poems as JSONL, Debian Handbook pages and their figures as
//! a WARC, captioned photos as an image folder), `m6corpus extract` (the handbook's
//! figure/caption pairs), `m6corpus tokenizer train` and `m6corpus tokenize` — plus
//! helpers to run the `m6-train` binary.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use m6_pipeline::Dataset;
use m6_schemas::{Kind, Sample};

/// Image geometry the tests tokenize with (small, so the tiny models stay fast).
pub const IMAGE_SIZE: u32 = 32;
pub const PATCH: u32 = 8;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Where `make data` put the real sample data; `M6_DATA_DIR` overrides.
pub fn data_dir() -> PathBuf {
    let d = std::env::var_os("M6_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("data"));
    assert!(d.join("chinese-poetry").is_dir() && d.join("photos").is_dir() && d.join("debian-handbook").is_dir(), "{} has no sample data: run `make data`", d.display());
    d
}

pub fn bin() -> PathBuf {
    // Set for integration tests; examples sharing this module run the built binary.
    option_env!("CARGO_BIN_EXE_m6-train").map(PathBuf::from).unwrap_or_else(|| repo().join("target/release/m6-train"))
}

/// Runs m6-train with `args`; returns the output whatever the exit code.
pub fn m6_train(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env("RUST_LOG", "warn").output().expect("run m6-train")
}

pub fn m6_train_ok(args: &[&str]) -> serde_json::Value {
    let out = m6_train(args);
    assert!(out.status.success(), "m6-train {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

pub fn log_lines(run: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(run.join("log.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every tensor of a safetensors file (as f32 vectors), by name.
pub fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    tch::Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).flatten(0, -1)).unwrap()))
        .collect()
}

/// The data pipeline's binary (`make build` / `cargo build --release --bins` at the repo root).
pub fn m6corpus() -> PathBuf {
    let p = std::env::var_os("M6CORPUS_BIN").map(PathBuf::from).unwrap_or_else(|| repo().join("target/release/m6corpus"));
    assert!(p.is_file(), "{} not found: build it with `cargo build --release --bins` in {}", p.display(), repo().display());
    p
}

pub fn m6corpus_ok(args: &[&str]) {
    let out = Command::new(m6corpus()).args(args).env("RUST_LOG", "warn").output().expect("run m6corpus");
    assert!(out.status.success(), "m6corpus {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Real poems from data/chinese-poetry (poet.tang.0.json, .1000.json, ...): (title, body).
pub fn poems(n: usize) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut file = 0;
    while out.len() < n {
        let path = data_dir().join(format!("chinese-poetry/dist/quantangshi/poet.tang.{file}.json"));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch_data.sh)", path.display()));
        let v: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        out.extend(v.iter().filter_map(|p| {
            let paras: Vec<&str> = p["paragraphs"].as_array()?.iter().filter_map(|x| x.as_str()).collect();
            let body = paras.join("\n");
            (!body.is_empty()).then(|| (p["title"].as_str().unwrap_or("").to_string(), body))
        }));
        file += 1000;
    }
    out.truncate(n);
    out
}

/// Chinese captions for real photos in data/photos (the scikit-image photos ship
/// without captions, so these are written by hand, one per photo).
pub const CAPTIONS: &[(&str, &str)] = &[
    ("astronaut.png", "一位穿着宇航服的宇航员站在美国国旗前"),
    ("coffee.png", "白色杯子里的一杯咖啡放在桌上"),
    ("chelsea.png", "一只橘色的猫在看着镜头"),
    ("rocket.jpg", "一枚火箭停在发射台上准备升空"),
    ("camera.png", "一个人拿着相机在草地上拍照"),
    ("horse.png", "一匹马的黑白剪影"),
    ("moon.png", "月球表面的灰色环形山"),
    ("coins.png", "桌上排列着许多旧硬币"),
    ("motorcycle_left.png", "一辆红色摩托车停在房间里"),
    ("hubble_deep_field.jpg", "哈勃望远镜拍到的深空星系"),
    ("page.png", "一页印着文字的旧书"),
    ("text.png", "黑色背景上的白色手写文字"),
];

/// What to feed the pipeline.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Training poems, spread over `text_files` JSONL files (one document shard each).
    pub n_poems: usize,
    pub text_files: usize,
    /// Further poems, tokenized with the same vocabulary into the eval dataset.
    pub eval_poems: usize,
    /// Each handbook figure page (under its own URL) and each photo (under its own
    /// name) goes in this many times; 1 for the tests, more for the benchmark.
    pub copies: usize,
    pub image_size: u32,
    pub patch_size: u32,
    /// `tokenize --max-len`.
    pub max_len: usize,
    pub vocab_size: usize,
}

impl Spec {
    /// The tests' dataset: a few hundred poems, the handbook's figures and the photos,
    /// 32×32 images in 8×8 patches, samples of at most 64 ids.
    pub fn tests() -> Self {
        Spec { n_poems: 400, text_files: 3, eval_poems: 100, copies: 1, image_size: IMAGE_SIZE, patch_size: PATCH, max_len: 64, vocab_size: 3000 }
    }
}

/// The datasets one pipeline run made.
#[derive(Debug, Clone)]
pub struct PipelineSamples {
    pub root: PathBuf,
    /// `sample`: the poems (text) + the handbook's figure pairs and the photos (image_text).
    pub train: PathBuf,
    /// `sample`: other poems, same tokenizer (for evaluation).
    pub eval: PathBuf,
    /// `sample`: the photo pairs alone, same geometry (an image-only evaluation set).
    pub photos: PathBuf,
    /// `sample`: the photo pairs tokenized at half the image size (a real shard of
    /// another geometry, for the mismatch tests).
    pub small_images: PathBuf,
    /// `document`: the training poems as ingested (a real dataset of another kind).
    pub docs: PathBuf,
    /// `pair`: the handbook figures from `extract`, and the photos from `ingest`.
    pub handbook_pairs: PathBuf,
    pub photo_pairs: PathBuf,
    /// Every training sample, as tokenize wrote them.
    pub rows: Vec<Sample>,
    pub text_samples: usize,
    pub image_samples: usize,
}

impl PipelineSamples {
    /// The training dataset's Parquet shards, in manifest order.
    pub fn train_shards(&self) -> Vec<PathBuf> {
        let ds = Dataset::open(&self.train).unwrap();
        ds.shards().iter().map(|s| ds.shard_path(s)).collect()
    }
}

fn write_poems(path: &Path, poems: &[(usize, (String, String))]) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    for (i, (title, body)) in poems {
        writeln!(f, "{}", serde_json::json!({"id": format!("poem-{i}"), "title": title, "text": body, "source": "poetry.tang"})).unwrap();
    }
}

fn warc_record(w: &mut impl Write, url: &str, content_type: &str, body: &[u8]) {
    let mut http = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    http.extend_from_slice(body);
    write!(
        w,
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2024-03-01T12:00:00Z\r\nContent-Type: application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n",
        http.len()
    )
    .unwrap();
    w.write_all(&http).unwrap();
    w.write_all(b"\r\n\r\n").unwrap();
}

/// The zh-CN Debian Handbook pages that have figures, each followed by the images it
/// references (as a crawler's WARC holds them), served from `http://handbook.test/`;
/// copy k > 0 lives under `/copy-k/`. Returns the number of figure pages.
pub fn write_handbook_warc(path: &Path, copies: usize) -> usize {
    let dir = data_dir().join("debian-handbook/zh-CN");
    let mut pages: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html") && fs::read_to_string(p).unwrap().contains("class=\"figure\""))
        .collect();
    pages.sort();
    let mut w = std::io::BufWriter::new(fs::File::create(path).unwrap());
    for k in 0..copies {
        let base = if k == 0 { "http://handbook.test/zh-CN".to_string() } else { format!("http://handbook.test/copy-{k}/zh-CN") };
        for page in &pages {
            let html = fs::read(page).unwrap();
            warc_record(&mut w, &format!("{base}/{}", page.file_name().unwrap().to_str().unwrap()), "text/html; charset=UTF-8", &html);
            let text = String::from_utf8_lossy(&html);
            let mut seen = BTreeSet::new();
            for src in text.split("src=\"").skip(1).map(|s| &s[..s.find('"').unwrap_or(0)]) {
                let ct = match src.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()) {
                    Some(e) if e == "png" => "image/png",
                    Some(e) if e == "jpg" || e == "jpeg" => "image/jpeg",
                    Some(e) if e == "gif" => "image/gif",
                    _ => continue,
                };
                let file = dir.join(src);
                if seen.insert(src.to_string()) && file.is_file() {
                    warc_record(&mut w, &format!("{base}/{src}"), ct, &fs::read(&file).unwrap());
                }
            }
        }
    }
    w.flush().unwrap();
    pages.len()
}

/// Runs the pipeline on real data into `dir`:
/// * `spec.n_poems` poems in `text_files` JSONL files → `ingest` → `docs` (documents);
/// * the handbook's figure pages and images in a WARC → `ingest` → `pages` → `extract`
///   → `web` (documents) and `web/pairs` (figure images with their real captions);
/// * the captioned photos (`captions.jsonl`) → `ingest` → `photo-pairs`;
/// * `tokenizer train` on the poems and the handbook text;
/// * `tokenize` of the poems and both pair datasets → `samples`, of other poems →
///   `samples-eval`, of the photos alone → `samples-photos` and at half the image
///   size → `samples-small`.
pub fn pipeline_samples(dir: &Path, spec: &Spec) -> PipelineSamples {
    let d = |p: &str| dir.join(p).to_str().unwrap().to_string();
    fs::create_dir_all(dir).unwrap();
    let poems: Vec<(usize, (String, String))> = poems(spec.n_poems + spec.eval_poems).into_iter().enumerate().collect();
    fs::create_dir_all(dir.join("raw/poems")).unwrap();
    fs::create_dir_all(dir.join("raw/poems-eval")).unwrap();
    for f in 0..spec.text_files {
        let part: Vec<_> = poems[..spec.n_poems].iter().filter(|(i, _)| i % spec.text_files == f).cloned().collect();
        write_poems(&dir.join(format!("raw/poems/poems-{f}.jsonl")), &part);
    }
    write_poems(&dir.join("raw/poems-eval/poems.jsonl"), &poems[spec.n_poems..]);

    fs::create_dir_all(dir.join("raw/warc")).unwrap();
    let figure_pages = write_handbook_warc(&dir.join("raw/warc/handbook.warc"), spec.copies);

    let img = dir.join("raw/photos");
    fs::create_dir_all(&img).unwrap();
    let mut caps = String::new();
    for (file, caption) in CAPTIONS {
        let (stem, ext) = file.rsplit_once('.').unwrap();
        for k in 0..spec.copies {
            let name = if k == 0 { file.to_string() } else { format!("{stem}-{k}.{ext}") };
            let from = data_dir().join("photos").join(file);
            // Hard links: many copies cost no disk (fall back to copying across devices).
            if fs::hard_link(&from, img.join(&name)).is_err() {
                fs::copy(&from, img.join(&name)).unwrap();
            }
            caps.push_str(&serde_json::json!({"file": name, "caption": caption}).to_string());
            caps.push('\n');
        }
    }
    fs::write(img.join("captions.jsonl"), caps).unwrap();

    let q = ["--quiet", "--log", "warn"];
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(q);
        m6corpus_ok(&a)
    };
    run(&["ingest", "--input", &d("raw/poems"), "--output", &d("docs")]);
    run(&["ingest", "--input", &d("raw/poems-eval"), "--output", &d("docs-eval")]);
    run(&["ingest", "--input", &d("raw/warc"), "--output", &d("pages"), "--source", "debian-handbook"]);
    run(&["extract", "--input", &d("pages"), "--output", &d("web")]);
    run(&["ingest", "--input", &d("raw/photos"), "--output", &d("photo-pairs"), "--source", "photos"]);
    let vs = spec.vocab_size.to_string();
    m6corpus_ok(&["tokenizer", "train", "--input", &d("docs"), "--input", &d("web"), "--output", &d("vocab.txt"), "--vocab-size", &vs, "--log", "warn"]);

    let ml = spec.max_len.to_string();
    let tok = |inputs: &[&str], out: &str, image_size: u32| {
        let mut a = vec!["tokenize".to_string()];
        for i in inputs {
            a.extend(["--input".to_string(), d(i)]);
        }
        a.extend(["--output", &d(out), "--tokenizer", &d("vocab.txt"), "--max-len", &ml].map(String::from));
        a.extend(["--set".into(), format!("image_size={image_size}"), "--set".into(), format!("patch_size={}", spec.patch_size)]);
        run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    };
    tok(&["docs", "web/pairs", "photo-pairs"], "samples", spec.image_size);
    tok(&["docs-eval"], "samples-eval", spec.image_size);
    tok(&["photo-pairs"], "samples-photos", spec.image_size);
    tok(&["photo-pairs"], "samples-small", spec.image_size / 2);

    // What the pipeline made: both tasks, every pair turned into one image sample.
    let handbook_pairs = Dataset::open(&dir.join("web/pairs")).unwrap().rows() as usize;
    let photo_pairs = Dataset::open(&dir.join("photo-pairs")).unwrap().rows() as usize;
    assert_eq!(photo_pairs, CAPTIONS.len() * spec.copies, "every captioned photo became a pair");
    assert!(handbook_pairs >= 40 * spec.copies, "extract found only {handbook_pairs} figure pairs on {figure_pages} handbook pages");
    let ds = Dataset::open(&dir.join("samples")).unwrap();
    assert_eq!(ds.kind(), Kind::Sample);
    assert!(ds.manifest().properties.contains_key("tokenizer"), "samples come from `m6corpus tokenize`");
    let rows: Vec<Sample> = ds.read_all().unwrap();
    let text_samples = rows.iter().filter(|r| r.task == "text").count();
    let image_samples = rows.iter().filter(|r| r.task == "image_text").count();
    assert_eq!(text_samples + image_samples, rows.len());
    assert_eq!(image_samples, handbook_pairs + photo_pairs, "one image sample per pair");
    assert!(text_samples >= spec.n_poems / 2, "{text_samples} text samples from {} poems", spec.n_poems);
    // tokenize's default stores each image as a JPEG of the training square, which
    // decodes to the raw patch layout's length.
    assert_eq!(ds.manifest().properties["image_encoding"], "jpeg", "tokenize stores image samples as JPEG by default");
    let geom = m6_tokenizer::ImageConfig { image_size: spec.image_size, patch_size: spec.patch_size };
    let want_patches = (spec.image_size * spec.image_size * 3) as usize;
    for r in rows.iter().filter(|r| r.task == "image_text") {
        let stored = r.image_patches.as_deref().expect("an image sample holds its image");
        assert!(stored.starts_with(&[0xFF, 0xD8]) && stored.len() < want_patches, "{}: {} bytes, not a JPEG smaller than the raw patches", r.id, stored.len());
        assert_eq!(geom.patches_from_encoded(stored).unwrap().len(), want_patches);
    }
    PipelineSamples {
        root: dir.to_path_buf(),
        train: dir.join("samples"),
        eval: dir.join("samples-eval"),
        photos: dir.join("samples-photos"),
        small_images: dir.join("samples-small"),
        docs: dir.join("docs"),
        handbook_pairs: dir.join("web/pairs"),
        photo_pairs: dir.join("photo-pairs"),
        rows,
        text_samples,
        image_samples,
    }
}

/// The tests' pipeline-made datasets ([`Spec::tests`]), built once per test process
/// under cargo's test temp folder (`name` tells test binaries apart; each rebuilds on
/// first use, so a rebuilt m6corpus is always what made them). Tests that modify a
/// dataset copy it first ([`copy_dataset`]).
pub fn shared_samples(name: &str) -> &'static PipelineSamples {
    static S: std::sync::OnceLock<PipelineSamples> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let root = option_env!("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(format!("m6-train-{name}-pipeline"));
        let _ = fs::remove_dir_all(&root);
        let t = std::time::Instant::now();
        let s = pipeline_samples(&root, &Spec::tests());
        eprintln!(
            "pipeline fixture: {} text + {} image samples ({} handbook figures, {} photos) in {:.1} s",
            s.text_samples,
            s.image_samples,
            Dataset::open(&s.handbook_pairs).unwrap().rows(),
            Dataset::open(&s.photo_pairs).unwrap().rows(),
            t.elapsed().as_secs_f64()
        );
        s
    })
}

/// Copies a dataset folder (manifest, shards, commit records; not side datasets).
pub fn copy_dataset(from: &Path, to: &Path) {
    for sub in ["", "_commits"] {
        let (f, t) = (from.join(sub), to.join(sub));
        if !f.is_dir() {
            continue;
        }
        fs::create_dir_all(&t).unwrap();
        for e in fs::read_dir(&f).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                fs::copy(&p, t.join(p.file_name().unwrap())).unwrap();
            }
        }
    }
}
