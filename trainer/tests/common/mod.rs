//! Test fixtures: `sample` datasets made from the real data under data/ (poems and
//! photos), written shard by shard with a manifest exactly as the pipeline does, plus
//! helpers to run the `m6-train` binary.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::RecordBatch;
use m6_pipeline::manifest::{Manifest, ShardEntry};
use m6_schemas::{Kind, Record, Sample};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

pub const IMAGE_SIZE: u32 = 32;
pub const PATCH: u32 = 8;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn data_dir() -> PathBuf {
    std::env::var_os("M6_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("data"))
}

pub fn bin() -> PathBuf {
    // Set for integration tests; examples sharing this module run the built binary.
    option_env!("CARGO_BIN_EXE_m6-train").map(PathBuf::from).unwrap_or_else(|| repo().join("trainer/target/release/m6-train"))
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

/// Real poems from data/chinese-poetry (poet.tang.0.json, .1000.json, ...), as plain
/// text (title + body).
pub fn poems(n: usize) -> Vec<String> {
    let mut out = vec![];
    let mut file = 0;
    while out.len() < n {
        let path = data_dir().join(format!("chinese-poetry/dist/quantangshi/poet.tang.{file}.json"));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch_data.sh)", path.display()));
        let v: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        out.extend(v.iter().filter_map(|p| {
            let paras: Vec<&str> = p["paragraphs"].as_array()?.iter().filter_map(|x| x.as_str()).collect();
            let body = paras.join("");
            (!body.is_empty()).then(|| format!("{}：{}", p["title"].as_str().unwrap_or(""), body))
        }));
        file += 1000;
    }
    out.truncate(n);
    out
}

/// Chinese captions for real photos in data/photos.
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

/// A character-level vocabulary over the texts (special ids 0..=6, reserved to 99,
/// characters from 100 in order of first appearance).
pub struct Vocab(pub HashMap<char, i32>);

impl Vocab {
    pub fn build<'a>(texts: impl Iterator<Item = &'a str>) -> Self {
        let mut m = HashMap::new();
        for t in texts {
            for c in t.chars() {
                let next = 100 + m.len() as i32;
                m.entry(c).or_insert(next);
            }
        }
        Vocab(m)
    }
    pub fn size(&self) -> i64 {
        100 + self.0.len() as i64
    }
    pub fn encode(&self, t: &str) -> Vec<i32> {
        t.chars().map(|c| *self.0.get(&c).unwrap_or(&1)).collect()
    }
}

/// Row-major patches, each patch row-major pixels, RGB interleaved, uint8.
pub fn patches(path: &Path) -> Vec<u8> {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let img = img.resize_exact(IMAGE_SIZE, IMAGE_SIZE, image::imageops::FilterType::Triangle).to_rgb8();
    let grid = IMAGE_SIZE / PATCH;
    let mut out = Vec::with_capacity((IMAGE_SIZE * IMAGE_SIZE * 3) as usize);
    for py in 0..grid {
        for px in 0..grid {
            for y in 0..PATCH {
                for x in 0..PATCH {
                    out.extend_from_slice(&img.get_pixel(px * PATCH + x, py * PATCH + y).0);
                }
            }
        }
    }
    out
}

/// Text samples ([CLS] poem [SEP]) from `n_poems` real poems and image–caption samples
/// from the captioned photos repeated `image_repeats` times.
pub fn make_samples(n_poems: usize, image_repeats: usize) -> (Vec<Sample>, i64) {
    let poems = poems(n_poems);
    let vocab = Vocab::build(poems.iter().map(|s| s.as_str()).chain(CAPTIONS.iter().map(|c| c.1)));
    let mut rows = vec![];
    for p in &poems {
        let mut ids = vec![2];
        ids.extend(vocab.encode(p));
        ids.truncate(95);
        ids.push(3);
        rows.push(Sample {
            id: m6_schemas::content_id(&[p.as_bytes()]),
            task: "text".into(),
            length: ids.len() as u32,
            input_ids: ids,
            image_patches: None,
            source_ids: vec![m6_schemas::content_id(&[b"poem", p.as_bytes()])],
        });
    }
    let photos: Vec<(Vec<u8>, &str)> = CAPTIONS.iter().map(|(f, c)| (patches(&data_dir().join("photos").join(f)), *c)).collect();
    for r in 0..image_repeats {
        for (px, cap) in &photos {
            let mut ids = vec![2];
            ids.extend(vocab.encode(cap));
            ids.push(3);
            rows.push(Sample {
                id: m6_schemas::content_id(&[cap.as_bytes(), &(r as u64).to_le_bytes()]),
                task: "image_text".into(),
                length: ids.len() as u32,
                input_ids: ids,
                image_patches: Some(px.clone()),
                source_ids: vec![m6_schemas::content_id(&[cap.as_bytes()])],
            });
        }
    }
    (rows, vocab.size())
}

pub fn properties(vocab_size: i64) -> BTreeMap<String, serde_json::Value> {
    let mut p = BTreeMap::new();
    for (k, v) in [
        ("vocab_size", vocab_size),
        ("pad_id", 0),
        ("unk_id", 1),
        ("cls_id", 2),
        ("sep_id", 3),
        ("mask_id", 4),
        ("img_id", 5),
        ("img_end_id", 6),
        ("image_size", IMAGE_SIZE as i64),
        ("patch_size", PATCH as i64),
        ("grid", (IMAGE_SIZE / PATCH) as i64),
    ] {
        p.insert(k.to_string(), serde_json::json!(v));
    }
    p.insert("patch_layout".into(), "row-major patches, each patch row-major pixels, RGB interleaved, uint8".into());
    p
}

pub fn write_shard(path: &Path, batch: &RecordBatch) {
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap())).build();
    let mut w = ArrowWriter::try_new(fs::File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    // Small row groups so a shard streams in several batches.
    for start in (0..batch.num_rows()).step_by(64) {
        w.write(&batch.slice(start, 64.min(batch.num_rows() - start))).unwrap();
    }
    w.close().unwrap();
}

/// Writes `rows` as a sample dataset of `shards` Parquet files (rows dealt round-robin
/// after a fixed interleave, so every shard mixes both tasks).
pub fn write_dataset(dir: &Path, rows: &[Sample], shards: usize, vocab_size: i64) {
    fs::create_dir_all(dir).unwrap();
    let mut m = Manifest::new(Kind::Sample);
    for s in 0..shards {
        let part: Vec<Sample> = rows.iter().enumerate().filter(|(i, _)| i % shards == s).map(|(_, r)| r.clone()).collect();
        let file = format!("part-{s:016x}-00000.parquet");
        let path = dir.join(&file);
        write_shard(&path, &Sample::to_batch(&part).unwrap());
        let bytes = fs::read(&path).unwrap();
        m.shards.push(ShardEntry {
            file,
            rows: part.len() as u64,
            bytes: bytes.len() as u64,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
            inputs: vec![],
            task: format!("{s:016x}"),
        });
    }
    m.properties = properties(vocab_size);
    m.save(dir).unwrap();
}

/// A small real dataset: `n_poems` poems + captioned photos, in `shards` shards.
pub fn fixture(dir: &Path, n_poems: usize, image_repeats: usize, shards: usize) -> Vec<Sample> {
    let (rows, vocab) = make_samples(n_poems, image_repeats);
    write_dataset(dir, &rows, shards, vocab);
    rows
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

/// The data pipeline's binary (`cargo build --release -p m6corpus` from the repo root).
pub fn m6corpus() -> PathBuf {
    let p = std::env::var_os("M6CORPUS_BIN").map(PathBuf::from).unwrap_or_else(|| repo().join("target/release/m6corpus"));
    assert!(p.is_file(), "{} not found: build it with `cargo build --release -p m6corpus` in {}", p.display(), repo().display());
    p
}

fn m6corpus_ok(args: &[&str]) {
    let out = Command::new(m6corpus()).args(args).output().expect("run m6corpus");
    assert!(out.status.success(), "m6corpus {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Sample datasets made by the real pipeline from real data.
pub struct PipelineSamples {
    /// Poems (3 JSONL files, so several shards) + the captioned photos.
    pub train: PathBuf,
    /// Other poems, tokenized with the same vocabulary (for evaluation).
    pub eval: PathBuf,
}

fn write_poems(path: &Path, poems: &[(usize, String)]) {
    let mut s = String::new();
    for (i, p) in poems {
        let (title, body) = p.split_once('：').unwrap_or(("", p));
        s.push_str(&serde_json::json!({"id": format!("poem-{i}"), "title": title, "text": body}).to_string());
        s.push('\n');
    }
    fs::write(path, s).unwrap();
}

/// `n_poems` real poems in `text_files` JSONL files → `m6corpus ingest` → documents;
/// the captioned photos (each `copies` times, under different names) → `m6corpus
/// ingest` → pairs; `m6corpus tokenizer train` on the documents; `m6corpus tokenize`
/// of both with 32×32 images in 8×8 patches. 100 further poems go the same way into
/// the eval dataset.
pub fn pipeline_samples(dir: &Path, n_poems: usize, text_files: usize, copies: usize, max_len: usize) -> PipelineSamples {
    let d = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let poems: Vec<(usize, String)> = poems(n_poems + 100).into_iter().enumerate().collect();
    fs::create_dir_all(dir.join("jsonl")).unwrap();
    fs::create_dir_all(dir.join("jsonl-eval")).unwrap();
    for f in 0..text_files {
        let part: Vec<(usize, String)> = poems[..n_poems].iter().filter(|(i, _)| i % text_files == f).cloned().collect();
        write_poems(&dir.join(format!("jsonl/poems-{f}.jsonl")), &part);
    }
    write_poems(&dir.join("jsonl-eval/poems.jsonl"), &poems[n_poems..]);
    let img = dir.join("images");
    fs::create_dir_all(&img).unwrap();
    let mut caps = String::new();
    for (file, caption) in CAPTIONS {
        let (stem, ext) = file.rsplit_once('.').unwrap();
        for k in 0..copies {
            let name = format!("{stem}-{k}.{ext}");
            fs::copy(data_dir().join("photos").join(file), img.join(&name)).unwrap();
            caps.push_str(&serde_json::json!({"file": name, "caption": caption}).to_string());
            caps.push('\n');
        }
    }
    fs::write(img.join("captions.jsonl"), caps).unwrap();
    m6corpus_ok(&["ingest", "--input", &d("jsonl"), "--output", &d("docs")]);
    m6corpus_ok(&["ingest", "--input", &d("jsonl-eval"), "--output", &d("docs-eval")]);
    m6corpus_ok(&["ingest", "--input", &d("images"), "--output", &d("pairs")]);
    m6corpus_ok(&["tokenizer", "train", "--input", &d("docs"), "--output", &d("vocab.txt"), "--vocab-size", "3000"]);
    let ml = max_len.to_string();
    let (is, ps) = (format!("image_size={IMAGE_SIZE}"), format!("patch_size={PATCH}"));
    let tok = |inputs: &[&str], out: &str| {
        let mut a = vec!["tokenize"];
        for i in inputs {
            a.extend(["--input", i]);
        }
        let o = d(out);
        let v = d("vocab.txt");
        a.extend(["--output", &o, "--tokenizer", &v, "--max-len", &ml, "--set", &is, "--set", &ps]);
        m6corpus_ok(&a);
    };
    tok(&[&d("docs"), &d("pairs")], "samples");
    tok(&[&d("docs-eval")], "samples-eval");
    PipelineSamples { train: dir.join("samples"), eval: dir.join("samples-eval") }
}

/// One pipeline-made dataset per test binary (the pipeline takes seconds), rebuilt
/// on first use in each process under cargo's test temp folder (`name` tells binaries
/// apart). Tests that modify it copy it first.
pub fn shared_samples(name: &str) -> &'static PipelineSamples {
    static S: std::sync::OnceLock<PipelineSamples> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let root = option_env!("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(format!("m6-train-{name}-pipeline"));
        let _ = fs::remove_dir_all(&root);
        pipeline_samples(&root, 400, 3, 4, 64)
    })
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}
