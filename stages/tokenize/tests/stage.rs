//! The tokenize stage on real data: Tang poems as documents, real photos as pairs,
//! written by a fixture stage through the real runner, then tokenized and read back.

use std::path::{Path, PathBuf};

use m6_pipeline::{run_stage, BoxError, Dataset, OutputSpec, RunOptions, Stage, Task, TaskOutput};
use m6_schemas::{Document, InputError, Kind, Pair, Sample};
use m6_stage_tokenize::{TokenizeConfig, TokenizeStage};
use m6_tokenizer::{ImageConfig, Tokenizer, TokenizerConfig, TrainerConfig, WordCounter};

fn data() -> PathBuf {
    let d = std::env::var_os("M6_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data"));
    assert!(d.join("chinese-poetry").is_dir(), "{} has no sample data: run `make data`", d.display());
    d
}

fn poems(file: &str) -> Vec<Document> {
    let p = data().join("chinese-poetry/dist/quantangshi").join(file);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v.iter()
        .enumerate()
        .map(|(i, p)| {
            let lines: Vec<&str> = p["paragraphs"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect();
            let text = lines.join("\n");
            Document {
                // The collection repeats some poems: the row index keeps ids unique.
                id: m6_schemas::content_id(&[file.as_bytes(), &i.to_le_bytes(), text.as_bytes()]),
                source: "chinese-poetry".into(),
                char_count: text.chars().count() as u32,
                title: p["title"].as_str().map(String::from),
                text,
                ..Default::default()
            }
        })
        .collect()
}

/// Writes fixed rows as a dataset, in tasks of `per_task` rows, through the runner.
struct Fixture<R> {
    rows: Vec<R>,
    per_task: usize,
}

impl<R: m6_schemas::Record + Sync + Clone> Stage for Fixture<R> {
    fn name(&self) -> &'static str {
        "fixture"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl<R: m6_schemas::Record + Sync + Clone> m6_pipeline::StageRun for &Fixture<R> {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(R::KIND))
    }
    fn plan(&mut self, _: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok((0..self.rows.len().div_ceil(self.per_task)).map(|i| Task { id: format!("{i:016}"), inputs: vec![] }).collect())
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let i: usize = task.id.parse()?;
        let end = ((i + 1) * self.per_task).min(self.rows.len());
        out.write_rows(&self.rows[i * self.per_task..end])?;
        Ok(())
    }
}

fn write_dataset<R: m6_schemas::Record + Sync + Clone>(dir: &Path, rows: Vec<R>, per_task: usize) {
    let opts = RunOptions { progress: false, ..Default::default() };
    run_stage(&Fixture { rows, per_task }, &[], dir, &opts).unwrap();
}

fn trained(docs: &[Document], dir: &Path, vocab_size: usize) -> PathBuf {
    let counting = Tokenizer::new(TokenizerConfig::default(), m6_tokenizer::WordPiece::new(m6_tokenizer::trainer::reserved_tokens(), "[UNK]").unwrap()).unwrap();
    let mut c = WordCounter::default();
    c.add_texts(&counting, &docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>());
    let tok = Tokenizer::new(TokenizerConfig::default(), c.train(&TrainerConfig { vocab_size, ..Default::default() }).unwrap()).unwrap();
    let p = dir.join("vocab.txt");
    tok.save(&p).unwrap();
    p
}

/// Image–caption pairs of the real photos `(file, caption)`, as extract would make them.
fn photo_pairs(photos: &[(&str, &str)]) -> Vec<Pair> {
    let mut pairs = vec![];
    for &(name, caption) in photos {
        let bytes = std::fs::read(data().join("photos").join(name)).unwrap();
        let (w, h) = image::load_from_memory(&bytes).unwrap().to_rgb8().dimensions();
        pairs.push(Pair {
            id: name.into(),
            image_id: m6_schemas::content_id(&[&bytes]),
            image_bytes: bytes,
            width: w,
            height: h,
            format: name.rsplit('.').next().unwrap().into(),
            caption: caption.into(),
            caption_origin: "alt".into(),
            image_url: Some(format!("http://127.0.0.1/{name}")),
            source: "test".into(),
            ..Default::default()
        });
    }
    pairs
}

fn tokenize(inputs: &[PathBuf], out: &Path, cfg: TokenizeConfig, threads: usize) -> m6_pipeline::RunSummary {
    let stage = TokenizeStage::new(cfg).unwrap();
    let opts = RunOptions { progress: false, threads, batch_rows: 50, ..Default::default() };
    run_stage(&stage, inputs, out, &opts).unwrap()
}

#[test]
fn documents_pack_losslessly_within_max_len() {
    let tmp = tempfile::tempdir().unwrap();
    let mut docs = poems("poet.tang.0.json");
    docs.truncate(600);
    // One long document (many poems joined) so that splitting happens.
    let long: String = docs[..80].iter().map(|d| d.text.as_str()).collect::<Vec<_>>().join("\n");
    docs.push(Document { id: "long".into(), source: "test".into(), char_count: long.chars().count() as u32, text: long, ..Default::default() });
    docs.push(Document { id: "empty".into(), source: "test".into(), text: String::new(), ..Default::default() });
    let vocab = trained(&docs, tmp.path(), 12000);
    let input = tmp.path().join("docs");
    write_dataset(&input, docs.clone(), 250);
    let out = tmp.path().join("samples");
    let max_len = 128;
    let summary = tokenize(&[input.clone()], &out, TokenizeConfig { tokenizer: Some(vocab.clone()), max_len, ..Default::default() }, 2);
    assert_eq!(summary.rows_in, docs.len() as u64);
    assert!(summary.counts["documents.split"] >= 1);
    assert_eq!(summary.counts["documents.empty"], 1);
    assert_eq!(summary.counts["tokens.unk"], 0);

    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.kind(), Kind::Sample);
    let props = &ds.manifest().properties;
    assert_eq!(props["tokenizer"], "tokenizer.json");
    for (k, v) in [("pad_id", 0), ("unk_id", 1), ("cls_id", 2), ("sep_id", 3), ("mask_id", 4), ("img_id", 5), ("img_end_id", 6), ("max_len", 128), ("image_size", 224), ("patch_size", 16), ("grid", 14)] {
        assert_eq!(props[k], v, "{k}");
    }
    assert!(props["patch_layout"].as_str().unwrap().contains("row-major"));
    let tok = Tokenizer::load(&out.join("tokenizer.json")).unwrap();
    assert_eq!(tok.model().tokens(), Tokenizer::load(&vocab).unwrap().model().tokens());
    assert_eq!(props["vocab_size"], tok.vocab_size());

    let samples: Vec<Sample> = ds.read_all().unwrap();
    assert!(samples.iter().all(|s| s.task == "text" && s.image_patches.is_none()));
    assert!(samples.iter().all(|s| s.input_ids.len() <= max_len && s.length as usize == s.input_ids.len() && s.input_ids[0] == 2));
    // Shards are per input shard (task); within one, samples follow document order.
    // Unpacking every task's samples gives back each document's encoding exactly.
    let mut by_source: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    let mut order = vec![];
    for s in &samples {
        let body = &s.input_ids[1..];
        let mut parts = body.split(|&i| i == 3).peekable();
        let mut k = 0;
        while let Some(part) = parts.next() {
            if parts.peek().is_none() && part.is_empty() {
                break; // after the final [SEP]
            }
            let src = &s.source_ids[k];
            by_source.entry(src.clone()).or_default().extend_from_slice(part);
            if order.last() != Some(src) {
                order.push(src.clone());
            }
            k += 1;
        }
        assert_eq!(k, s.source_ids.len());
    }
    for d in &docs {
        let want: Vec<i32> = tok.encode(&d.text, false).ids.iter().map(|&i| i as i32).collect();
        if want.is_empty() {
            assert!(!by_source.contains_key(&d.id));
            continue;
        }
        assert_eq!(by_source[&d.id], want, "document {}", d.id);
        assert_eq!(tok.decode(&by_source[&d.id].iter().map(|&i| i as u32).collect::<Vec<_>>(), false), tok.normalize(&d.text));
    }
    assert_eq!(order.len(), docs.len() - 1, "each document's pieces are contiguous");

    // Same input, one thread: byte-identical shards.
    let out1 = tmp.path().join("samples1");
    tokenize(&[input], &out1, TokenizeConfig { tokenizer: Some(vocab), max_len, ..Default::default() }, 1);
    let a: Vec<_> = ds.shards().iter().map(|s| (s.file.clone(), s.blake3.clone())).collect();
    let b: Vec<_> = Dataset::open(&out1).unwrap().shards().iter().map(|s| (s.file.clone(), s.blake3.clone())).collect();
    assert_eq!(a, b);
}

#[test]
fn pairs_and_documents_into_one_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut docs = poems("poet.tang.1000.json");
    docs.truncate(100);
    let vocab = trained(&docs, tmp.path(), 5000);
    let mut pairs = photo_pairs(&[("coffee.png", "一杯咖啡"), ("rocket.jpg", "火箭发射"), ("chelsea.png", "一只猫")]);
    // A truncated image: reported in the errors side dataset, not fatal.
    let mut bad = pairs[0].clone();
    bad.id = "broken".into();
    bad.image_bytes.truncate(100);
    // Ingested from a folder: no URL, the file's path in source_id (named by the error).
    bad.image_url = None;
    bad.source_id = Some("相册/coffee cut.png".into());
    pairs.push(bad);
    let pin = tmp.path().join("pairs");
    write_dataset(&pin, pairs.clone(), 10);
    let din = tmp.path().join("docs");
    write_dataset(&din, docs, 100);
    let out = tmp.path().join("samples");
    // `raw` stays selectable (for readers that cannot decode JPEG): the patches are
    // exactly those of direct preprocessing.
    let cfg = TokenizeConfig { tokenizer: Some(vocab), max_len: 8, image_size: 64, patch_size: 16, image_encoding: m6_tokenizer::ImageEncoding::Raw, ..Default::default() };
    let summary = tokenize(&[din, pin], &out, cfg, 2);
    assert_eq!(summary.counts["pairs.bad_image"], 1);
    assert_eq!(summary.counts["samples.image_text"], 3);
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.manifest().properties["image_encoding"], "raw");
    let samples: Vec<Sample> = ds.read_all().unwrap();
    let tok = Tokenizer::load(&out.join("tokenizer.json")).unwrap();
    let img: Vec<&Sample> = samples.iter().filter(|s| s.task == "image_text").collect();
    assert_eq!(img.len(), 3);
    assert!(samples.iter().any(|s| s.task == "text"));
    for s in img {
        let p = pairs.iter().find(|p| p.id == s.source_ids[0]).unwrap();
        let want = ImageConfig { image_size: 64, patch_size: 16 }.preprocess(&p.image_bytes).unwrap();
        assert_eq!(s.image_patches.as_deref(), Some(&want[..]));
        assert_eq!(&s.input_ids[..3], &[2, 5, 6]);
        assert_eq!(*s.input_ids.last().unwrap(), 3);
        assert!(s.input_ids.len() <= 8);
        let caption: Vec<u32> = s.input_ids[3..s.input_ids.len() - 1].iter().map(|&i| i as u32).collect();
        let full = tok.encode(&p.caption, false).ids;
        assert!(full.starts_with(&caption), "caption cut at a token boundary");
    }
    let errors: Vec<InputError> = ds.side("errors").unwrap().read_all().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].location.contains("broken") && errors[0].kind == "image", "{:?}", errors[0]);
    assert!(errors[0].location.contains("(相册/coffee cut.png)"), "{:?}", errors[0]);
}

#[test]
fn bad_configs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(TokenizeStage::new(TokenizeConfig::default()).is_err(), "no tokenizer");
    let missing = TokenizeStage::new(TokenizeConfig { tokenizer: Some(tmp.path().join("nope.txt")), ..Default::default() }).err().unwrap().to_string();
    assert!(missing.contains("nope.txt"), "{missing}");
    let docs = poems("poet.tang.0.json")[..20].to_vec();
    let vocab = trained(&docs, tmp.path(), 3000);
    assert!(TokenizeStage::new(TokenizeConfig { tokenizer: Some(vocab.clone()), max_len: 3, ..Default::default() }).is_err());
    assert!(TokenizeStage::new(TokenizeConfig { tokenizer: Some(vocab.clone()), patch_size: 15, ..Default::default() }).is_err());
    // A second run into the same output with another tokenizer must not mix ids.
    let input = tmp.path().join("docs");
    write_dataset(&input, docs.clone(), 10);
    let out = tmp.path().join("samples");
    tokenize(&[input.clone()], &out, TokenizeConfig { tokenizer: Some(vocab.clone()), ..Default::default() }, 1);
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let vocab2 = trained(&docs[..10], &other, 3000);
    assert_ne!(std::fs::read(&vocab2).unwrap(), std::fs::read(&vocab).unwrap());
    let stage = TokenizeStage::new(TokenizeConfig { tokenizer: Some(vocab2), ..Default::default() }).unwrap();
    let e = run_stage(&stage, &[input.clone()], &out, &RunOptions { progress: false, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("different tokenizer"), "{e}");
    // Same vocabulary, other image settings: refused too.
    let stage = TokenizeStage::new(TokenizeConfig { tokenizer: Some(vocab), image_size: 256, ..Default::default() }).unwrap();
    let e = run_stage(&stage, &[input], &out, &RunOptions { progress: false, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("different tokenizer"), "{e}");
}

/// The default (`image_encoding = "jpeg"`, no setting given): each image sample stores
/// the 224 px training square as a JPEG of at most 40 KB (raw patches: 150,528 bytes),
/// and decoding it gives the same patches as direct preprocessing within JPEG tolerance.
#[test]
fn jpeg_image_samples_round_trip_to_the_same_patches() {
    let tmp = tempfile::tempdir().unwrap();
    let mut docs = poems("poet.tang.1000.json");
    docs.truncate(50);
    let vocab = trained(&docs, tmp.path(), 3000);
    let pairs = photo_pairs(&[("coffee.png", "一杯咖啡"), ("rocket.jpg", "火箭发射"), ("chelsea.png", "一只猫"), ("astronaut.png", "宇航员"), ("hubble_deep_field.jpg", "深空")]);
    let pin = tmp.path().join("pairs");
    write_dataset(&pin, pairs.clone(), 2);
    let out = tmp.path().join("samples");
    let cfg = TokenizeConfig { tokenizer: Some(vocab), ..Default::default() };
    let summary = tokenize(&[pin], &out, cfg, 2);
    assert_eq!(summary.counts["samples.image_text"], pairs.len() as u64);
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.manifest().properties["image_encoding"], "jpeg");
    assert_eq!(ds.manifest().properties["image_quality"], 90);
    let samples: Vec<Sample> = ds.read_all().unwrap();
    let geom = ImageConfig::default();
    let mut total = 0usize;
    for s in &samples {
        let p = pairs.iter().find(|p| p.id == s.source_ids[0]).unwrap();
        let stored = s.image_patches.as_deref().unwrap();
        total += stored.len();
        assert!(stored.len() <= 40 << 10, "{}: {} bytes stored", p.id, stored.len());
        let decoded = geom.patches_from_encoded(stored).unwrap();
        let direct = geom.preprocess(&p.image_bytes).unwrap();
        assert_eq!(decoded.len(), direct.len());
        let mean = decoded.iter().zip(&direct).map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs() as f64).sum::<f64>() / direct.len() as f64;
        assert!(mean < 4.0, "{}: decoded patches differ by {mean:.2} levels on average", p.id);
    }
    eprintln!("image sample bytes: raw {} per image, jpeg {} per image on average", geom.total_bytes(), total / samples.len());
    assert_eq!(summary.counts["image_bytes"], total as u64);
}

/// Issue 13 point 2: one stage object runs twice (other inputs, outputs, threads and
/// batch sizes); each run's shards and tokenizer.json are byte for byte those of a
/// fresh stage object, since batch rows and the output reach the run through its context.
#[test]
fn one_stage_object_runs_twice_like_two_fresh_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let mut docs = poems("poet.tang.0.json");
    docs.truncate(400);
    let vocab = trained(&docs, tmp.path(), 8000);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_dataset(&a, docs[..200].to_vec(), 70);
    write_dataset(&b, docs[150..].to_vec(), 40);
    let cfg = TokenizeConfig { tokenizer: Some(vocab), max_len: 96, ..Default::default() };
    let runs = [(&a, RunOptions { progress: false, threads: 2, batch_rows: 9, ..Default::default() }), (&b, RunOptions { progress: false, threads: 1, batch_rows: 64, ..Default::default() })];
    let shared = TokenizeStage::new(cfg.clone()).unwrap();
    for (i, (input, opts)) in runs.iter().enumerate() {
        let (out, fresh_out) = (tmp.path().join(format!("shared-{i}")), tmp.path().join(format!("fresh-{i}")));
        let s = run_stage(&shared, &[(*input).clone()], &out, opts).unwrap();
        assert_eq!(s.rows_in, Dataset::open(input).unwrap().rows());
        run_stage(&TokenizeStage::new(cfg.clone()).unwrap(), &[(*input).clone()], &fresh_out, opts).unwrap();
        let files = |d: &Path| {
            let m = Dataset::open(d).unwrap();
            let mut v: Vec<(String, Vec<u8>)> = m.shards().iter().map(|s| (s.file.clone(), std::fs::read(m.shard_path(s)).unwrap())).collect();
            v.push(("tokenizer.json".into(), std::fs::read(d.join("tokenizer.json")).unwrap()));
            v
        };
        let (got, want) = (files(&out), files(&fresh_out));
        assert!(got.len() > 1);
        assert!(got == want, "run {i} of the shared stage object differs from a fresh object's run");
    }
}

/// `n` bytes of `jpg` from `at` on overwritten with xorshift bytes from `seed`.
fn overwritten(jpg: &[u8], at: usize, n: usize, seed: u32) -> Vec<u8> {
    let mut out = jpg.to_vec();
    let mut x = seed;
    for b in &mut out[at..at + n] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    out
}

/// A JPEG damaged in the middle of its data decodes without an error in most decoders,
/// with garbage from the damage on; tokenize refuses it by default, naming the file and
/// where the damage is, and keeps the undamaged file. With `check_damage = false`, a
/// copy that the sample's decoder fails on is still refused (the check confirms it
/// there, at no cost to undamaged files), and copies it reads through become samples.
#[test]
fn damaged_jpegs_are_refused_not_sampled() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = poems("poet.tang.0.json")[..20].to_vec();
    let vocab = trained(&docs, tmp.path(), 3000);
    let whole = photo_pairs(&[("rocket.jpg", "火箭发射")]).remove(0);
    let jpg = &whole.image_bytes;
    let (start, end) = (m6_imaging::jpeg_first_scan(jpg).unwrap(), jpg.len() - 2);
    // 200 bytes overwritten half way through the data (jpeg-decoder fails on this one:
    // it meets a code no table has), and 2/5 of the way through (it reads through).
    let fails = overwritten(jpg, start + (end - start) / 2, 200, 0x9E37_79B9u32.wrapping_mul(4));
    let read_through = overwritten(jpg, start + (end - start) * 2 / 5, 200, 0x9E37_79B9);
    // Bytes left over after the last block: every code still decodes.
    let mut trailing = jpg.clone();
    trailing.splice(end..end, [0x12, 0x34, 0x56]);
    let mut pairs = vec![whole.clone()];
    for (id, bytes) in [("fails", fails), ("read_through", read_through), ("trailing", trailing)] {
        pairs.push(Pair { id: id.into(), image_id: m6_schemas::content_id(&[&bytes]), image_bytes: bytes, image_url: None, source_id: Some(format!("相册/rocket {id}.jpg")), ..whole.clone() });
    }
    let pin = tmp.path().join("pairs");
    write_dataset(&pin, pairs, 10);
    for check in [true, false] {
        let out = tmp.path().join(format!("samples-{check}"));
        let summary = tokenize(&[pin.clone()], &out, TokenizeConfig { tokenizer: Some(vocab.clone()), check_damage: check, ..Default::default() }, 2);
        let ds = Dataset::open(&out).unwrap();
        let mut sampled: Vec<String> = ds.read_all::<Sample>().unwrap().into_iter().map(|s| s.source_ids[0].clone()).collect();
        sampled.sort();
        let errors: Vec<InputError> = ds.side("errors").unwrap().read_all().unwrap();
        let refused = |id: &str| errors.iter().find(|e| e.location.contains(&format!("(pair {id}) (相册/rocket {id}.jpg)")));
        let e = refused("fails").unwrap_or_else(|| panic!("check {check}: the copy the decoder fails on was sampled"));
        assert!(e.message.starts_with("JPEG data is damaged: MCU "), "{e:?}");
        if check {
            assert_eq!(sampled, ["rocket.jpg"]);
            assert!(refused("read_through").is_some_and(|e| e.message.contains("damaged")), "{errors:?}");
            assert!(refused("trailing").is_some_and(|e| e.message.contains("3 extraneous bytes after the last MCU")), "{errors:?}");
        } else {
            assert_eq!(sampled, ["read_through", "rocket.jpg", "trailing"]);
        }
        assert_eq!(summary.counts["pairs.bad_image"], errors.len() as u64);
    }
}
