//! Helpers for dedup's integration tests: real poems and photos from `data/`, written
//! as datasets through the pipeline's own runner, and a runner for the dedup stage.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use m6_pipeline::{run_stage, BoxError, Dataset, OutputSpec, RunOptions, Stage, StageFactory, Task, TaskOutput};
use m6_schemas::{Document, Duplicate, Image, Kind, Pair, Record};
use m6_stage_dedup::{DedupConfig, DedupFactory};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap().to_path_buf()
}

pub fn data_dir() -> PathBuf {
    let d = std::env::var_os("M6_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("data"));
    assert!(d.join("chinese-poetry").is_dir(), "{} has no sample data: run `make data`", d.display());
    d
}

/// Real Tang poems (traditional characters), one string per poem, in collection order.
pub fn poems(n: usize) -> Vec<String> {
    let dir = data_dir().join("chinese-poetry/dist/quantangshi");
    let mut out = vec![];
    for i in (0..58000).step_by(1000) {
        let f = dir.join(format!("poet.tang.{i}.json"));
        let Ok(bytes) = std::fs::read(&f) else { continue };
        let arr: Vec<serde_json::Value> = serde_json::from_slice(&bytes).unwrap();
        for p in arr {
            let paras: Vec<String> = p["paragraphs"].as_array().map(|a| a.iter().filter_map(|l| l.as_str().map(String::from)).collect()).unwrap_or_default();
            let text = paras.join("\n");
            if text.chars().count() < 20 {
                continue;
            }
            out.push(text);
            if out.len() == n {
                return out;
            }
        }
    }
    out
}

/// Web-page-sized documents: each joins `per` consecutive distinct poems.
pub fn articles(n: usize, per: usize) -> Vec<String> {
    let ps = poems(n * per);
    let mut seen = std::collections::HashSet::new();
    let uniq: Vec<String> = ps.into_iter().filter(|p| seen.insert(p.clone())).collect();
    uniq.chunks(per).filter(|c| c.len() == per).map(|c| c.join("\n\n")).take(n).collect()
}

pub fn doc(source: &str, key: &str, text: &str) -> Document {
    Document::new(source, Some(key.to_string()), None, None, text.to_string(), None)
}

/// Writes rows as a dataset with one shard per chunk, through `run_stage`.
struct Writer<R> {
    kind: Kind,
    chunks: Vec<Vec<R>>,
}

impl<R: Record + Clone + Send + Sync> Stage for Writer<R> {
    fn name(&self) -> &'static str {
        "test-writer"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl<R: Record + Clone + Send + Sync> m6_pipeline::StageRun for &Writer<R> {
    fn outputs(&self, _k: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(self.kind))
    }
    fn plan(&mut self, _inputs: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok((0..self.chunks.len()).map(|i| Task { id: format!("{i:016}"), inputs: vec![] }).collect())
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let i: usize = task.id.parse()?;
        out.write_rows(&self.chunks[i])?;
        Ok(())
    }
}

pub fn write_dataset<R: Record + Clone + Send + Sync>(dir: &Path, rows: &[R], shards: usize) -> PathBuf {
    let per = rows.len().div_ceil(shards.max(1)).max(1);
    let chunks: Vec<Vec<R>> = rows.chunks(per).map(|c| c.to_vec()).collect();
    let w = Writer { kind: R::KIND, chunks };
    run_stage(&w, &[], dir, &RunOptions { progress: false, ..Default::default() }).unwrap();
    dir.to_path_buf()
}

pub fn dedup(input: &Path, output: &Path, cfg: DedupConfig, threads: usize) -> m6_pipeline::Result<()> {
    let stage = DedupFactory::build(cfg).unwrap();
    let opts = RunOptions { threads, progress: false, ..Default::default() };
    run_stage(stage.as_ref(), &[input.to_path_buf()], output, &opts).map(|_| ())
}

pub fn kept_ids<R: Record>(out: &Path, id: impl Fn(&R) -> String) -> Vec<String> {
    let mut v: Vec<String> = Dataset::open(out).unwrap().read_all::<R>().unwrap().iter().map(id).collect();
    v.sort();
    v
}

pub fn duplicates(out: &Path) -> Vec<Duplicate> {
    let mut v = Dataset::open(out).unwrap().side(m6_stage_dedup::DUPLICATES).unwrap().read_all::<Duplicate>().unwrap();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// Checks that every input row is either kept or explained by exactly one duplicates
/// row whose kept id is a kept row; returns removed id -> (kept id, reason).
pub fn check_audit(all_ids: &[String], kept: &[String], dups: &[Duplicate]) -> BTreeMap<String, (String, String)> {
    let kept_set: std::collections::HashSet<&String> = kept.iter().collect();
    let mut removed = BTreeMap::new();
    for d in dups {
        assert!(!kept_set.contains(&d.id), "{} is both kept and removed", d.id);
        assert!(kept_set.contains(&d.kept_id), "{} was removed for {}, which is not kept", d.id, d.kept_id);
        assert!(removed.insert(d.id.clone(), (d.kept_id.clone(), d.reason.clone())).is_none(), "{} removed twice", d.id);
    }
    assert_eq!(kept.len() + removed.len(), all_ids.len(), "kept + removed must account for every input row");
    for id in all_ids {
        assert!(kept_set.contains(id) || removed.contains_key(id), "{id} vanished without an audit row");
    }
    removed
}

pub fn image_row(source: &str, key: &str, bytes: Vec<u8>) -> Image {
    let img = image::load_from_memory(&bytes).unwrap();
    Image {
        id: Image::make_id(&bytes),
        url: None,
        page_url: None,
        source: source.to_string(),
        source_id: Some(key.to_string()),
        width: img.width(),
        height: img.height(),
        format: "png".into(),
        bytes,
        signals: Default::default(),
    }
}

pub fn pair_row(source: &str, bytes: Vec<u8>, caption: &str) -> Pair {
    let img = image::load_from_memory(&bytes).unwrap();
    let image_id = Image::make_id(&bytes);
    Pair {
        id: Pair::make_id(&image_id, caption, None),
        image_id,
        width: img.width(),
        height: img.height(),
        format: "png".into(),
        image_bytes: bytes,
        caption: caption.to_string(),
        caption_origin: "alt".into(),
        url: None,
        image_url: None,
        source: source.to_string(),
        source_id: None,
        signals: Default::default(),
    }
}

/// Every level through `f` (a tone curve applied alike to the three channels).
pub fn curve(img: &image::DynamicImage, f: impl Fn(f32) -> f32) -> image::DynamicImage {
    let mut rgb = img.to_rgb8();
    for v in rgb.iter_mut() {
        *v = f(*v as f32).round().clamp(0.0, 255.0) as u8;
    }
    image::DynamicImage::ImageRgb8(rgb)
}

/// Every pixel's hue turned by `degrees` in HSV (saturation and value kept), as an
/// editor's hue slider does; Pillow's HSV conversion gives the same picture up to
/// rounding.
pub fn hue_turn(img: &image::DynamicImage, degrees: f32) -> image::DynamicImage {
    let mut rgb = img.to_rgb8();
    for px in rgb.pixels_mut() {
        let [r, g, b] = px.0.map(|v| v as f32 / 255.0);
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        let c = max - min;
        if c == 0.0 {
            continue;
        }
        let h = if max == r {
            ((g - b) / c).rem_euclid(6.0)
        } else if max == g {
            (b - r) / c + 2.0
        } else {
            (r - g) / c + 4.0
        };
        let h = (h + degrees / 60.0).rem_euclid(6.0);
        let x = c * (1.0 - (h % 2.0 - 1.0).abs());
        let (r1, g1, b1) = match h as u32 {
            0 => (c, x, 0.0),
            1 => (x, c, 0.0),
            2 => (0.0, c, x),
            3 => (0.0, x, c),
            4 => (x, 0.0, c),
            _ => (c, 0.0, x),
        };
        let m = max - c;
        px.0 = [r1, g1, b1].map(|v| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8);
    }
    image::DynamicImage::ImageRgb8(rgb)
}
