//! Benchmark driver for `bench/dedup.sh`: turns the benchmark's JSONL / image lists into
//! datasets (so the bench does not depend on other stages) and runs the dedup stage
//! exactly as `m6corpus dedup` does (same `run_stage`, same config struct).
//!
//! m6-dedup-bench docs IN.jsonl OUT SHARDS        JSONL {id, source, text} -> document dataset
//! m6-dedup-bench images LIST.tsv OUT SHARDS      lines `key<TAB>path` -> image dataset
//! m6-dedup-bench dedup IN OUT THREADS [k=v ...]  run dedup (k=v are [dedup] config fields, TOML values)
//! m6-dedup-bench image-pairs LIST.tsv [k=v ...]   every pair of the listed images that passes the
//!     verifier's quick checks, as `keyA<TAB>keyB<TAB>hamming<TAB>diff` lines (all pairs, one
//!     thread: a tool for choosing the image defaults on the benchmark, not a dedup run)
//! m6-dedup-bench image-blocks LIST.tsv PAIRS.tsv [k=v ...]  the listed pairs' verdicts and the
//!     layout check's per-block measures (choosing its rules on pairs a dedup run merged)

use std::io::BufRead;
use std::path::{Path, PathBuf};

use m6_pipeline::{run_stage, BoxError, OutputSpec, RunOptions, Stage, StageFactory, Task, TaskOutput};
use m6_schemas::{Document, Image, Kind, Record};
use m6_stage_dedup::{DedupConfig, DedupFactory};

struct Writer<R> {
    chunks: Vec<Vec<R>>,
}

impl<R: Record + Send + Sync> Stage for Writer<R> {
    fn name(&self) -> &'static str {
        "bench-writer"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl<R: Record + Send + Sync> m6_pipeline::StageRun for &Writer<R> {
    fn outputs(&self, _k: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(R::KIND))
    }
    fn plan(&mut self, _i: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok((0..self.chunks.len()).map(|i| Task { id: format!("{i:016}"), inputs: vec![] }).collect())
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let i: usize = task.id.parse()?;
        for c in self.chunks[i].chunks(4096) {
            out.write_rows(c)?;
        }
        Ok(())
    }
}

fn write<R: Record + Send + Sync>(rows: Vec<R>, out: &Path, shards: usize) -> Result<(), BoxError> {
    let per = rows.len().div_ceil(shards.max(1)).max(1);
    let mut chunks = vec![];
    let mut it = rows.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per).collect::<Vec<_>>());
    }
    run_stage(&Writer { chunks }, &[], out, &RunOptions { progress: false, ..Default::default() })?;
    Ok(())
}

fn config(kvs: &[String]) -> Result<DedupConfig, BoxError> {
    let mut table = toml::Table::new();
    for kv in kvs {
        let (k, v) = kv.split_once('=').ok_or("overrides are key=value")?;
        let val: toml::Value = toml::from_str::<toml::Table>(&format!("v = {v}")).map(|mut t| t.remove("v").unwrap()).unwrap_or(toml::Value::String(v.to_string()));
        table.insert(k.to_string(), val);
    }
    Ok(toml::Value::Table(table).try_into()?)
}

/// The image payloads of a `key<TAB>path` list (only the keys in `wanted`, when given),
/// in list order; each payload's exact key is its place in the result.
fn signed_list(list: &Path, wanted: Option<&std::collections::HashSet<String>>) -> Result<(Vec<String>, Vec<Vec<u8>>), BoxError> {
    use m6_stage_dedup::{image_hash, image_verify};
    let (mut keys, mut bodies) = (vec![], vec![]);
    for line in std::io::BufReader::new(std::fs::File::open(list)?).lines() {
        let line = line?;
        let (key, path) = line.split_once('\t').ok_or("image list lines are key<TAB>path")?;
        if wanted.is_some_and(|w| !w.contains(key)) {
            continue;
        }
        let sig = image_hash::sign(&std::fs::read(path)?).ok();
        let mut body = vec![];
        image_verify::encode_payload(keys.len() as u64, sig.as_ref(), false, 0, &mut body);
        keys.push(key.to_string());
        bodies.push(body);
    }
    Ok((keys, bodies))
}

fn image_pairs(list: &Path, kvs: &[String]) -> Result<(), BoxError> {
    use m6_stage_dedup::image_verify;
    let cfg = config(kvs)?;
    let p = cfg.image_verify_params();
    let t = std::time::Instant::now();
    let (keys, bodies) = signed_list(list, None)?;
    let sign_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let mut aligned = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    use std::io::Write;
    for i in 0..bodies.len() {
        for j in i + 1..bodies.len() {
            if let Some(m) = image_verify::compare(&p, &bodies[i], &bodies[j]) {
                aligned += 1;
                // Columns: keys, closest window hashes, pixel score, the verdict, the pixel
                // rule's verdict alone, and the layout check's measures (to choose its
                // tolerances: bench/dedup_images.py and bench/scale_run.py make the sets).
                let ok = image_verify::verify(&p, &bodies[i], &bodies[j]);
                let (ta, tb) = (image_verify::thumb(&bodies[i]), image_verify::thumb(&bodies[j]));
                let l = image_verify::layout(ta, tb, &m);
                let acc = image_verify::accept(&p, &m, ta, tb);
                writeln!(out, "{}\t{}\t{}\t{:.4}\t{}\t{}\t{:.3}\t{:.3}\t{:.3}\t{:.3}", keys[i], keys[j], m.hamming, m.diff, ok as u8, acc as u8, l.mean, l.texture, l.correlation, l.textured_correlation)?;
            }
        }
    }
    eprintln!("signed {} images in {sign_s:.2} s; {aligned} pairs aligned in {:.2} s", keys.len(), t.elapsed().as_secs_f64());
    Ok(())
}

/// `image-blocks LIST.tsv PAIRS.tsv`: for each listed pair of keys (`keyA<TAB>keyB`), the
/// verdict and the layout check's per-block measures (`image_verify::layout_blocks`),
/// to study pairs a dedup run merged (true or false) without comparing all pairs.
fn image_blocks(list: &Path, pairs: &Path, kvs: &[String]) -> Result<(), BoxError> {
    use m6_stage_dedup::image_verify;
    use std::io::Write;
    let cfg = config(kvs)?;
    let p = cfg.image_verify_params();
    let mut wanted = std::collections::HashSet::new();
    let mut pair_list = vec![];
    for line in std::io::BufReader::new(std::fs::File::open(pairs)?).lines() {
        let line = line?;
        let (a, b) = line.split_once('\t').ok_or("pair lines are keyA<TAB>keyB")?;
        wanted.insert(a.to_string());
        wanted.insert(b.to_string());
        pair_list.push((a.to_string(), b.to_string()));
    }
    let (keys, signed) = signed_list(list, Some(&wanted))?;
    let bodies: std::collections::HashMap<String, Vec<u8>> = keys.into_iter().zip(signed).collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let relaxed = image_verify::VerifyParams { max_hamming: 64, ..p };
    for (a, b) in &pair_list {
        let (Some(ba), Some(bb)) = (bodies.get(a), bodies.get(b)) else { continue };
        // The alignment the verdict rests on (the thorough one for a pair the quick one
        // rejected close to the threshold).
        let (_, Some(m)) = image_verify::judged(&relaxed, ba, bb) else { continue };
        let ok = image_verify::verify(&p, ba, bb);
        let blocks = image_verify::layout_blocks(image_verify::thumb(ba), image_verify::thumb(bb), &m);
        write!(out, "{a}\t{b}\t{}\t{:.4}\t{}", m.hamming, m.diff, ok as u8)?;
        for [sa, sb, dm, c, ga, gb] in blocks {
            write!(out, "\t{sa:.3},{sb:.3},{dm:.3},{c:.3},{ga:.2},{gb:.2}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: m6-dedup-bench docs IN.jsonl OUT SHARDS | images LIST.tsv OUT SHARDS | dedup IN OUT THREADS [key=value ...] | image-pairs LIST.tsv [key=value ...] | image-blocks LIST.tsv PAIRS.tsv [key=value ...]";
    match args.first().map(String::as_str) {
        Some("docs") if args.len() == 4 => {
            let mut rows = vec![];
            for line in std::io::BufReader::new(std::fs::File::open(&args[1])?).lines() {
                let v: serde_json::Value = serde_json::from_str(&line?)?;
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                rows.push(Document::new(&s("source"), Some(s("id")), None, None, s("text"), None));
            }
            write(rows, Path::new(&args[2]), args[3].parse()?)
        }
        Some("images") if args.len() == 4 => {
            let mut rows = vec![];
            for line in std::io::BufReader::new(std::fs::File::open(&args[1])?).lines() {
                let line = line?;
                let (key, path) = line.split_once('\t').ok_or("image list lines are key<TAB>path")?;
                let bytes = std::fs::read(path)?;
                let (w, h) = image::ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format()?.into_dimensions()?;
                let format = Path::new(path).extension().and_then(|e| e.to_str()).unwrap_or("png").to_lowercase();
                rows.push(Image { id: Image::make_id(&bytes), url: None, page_url: None, source: "bench".into(), source_id: Some(key.to_string()), bytes, width: w, height: h, format, signals: Default::default() });
            }
            write(rows, Path::new(&args[2]), args[3].parse()?)
        }
        Some("image-pairs") if args.len() >= 2 => image_pairs(Path::new(&args[1]), &args[2..]),
        Some("image-blocks") if args.len() >= 3 => image_blocks(Path::new(&args[1]), Path::new(&args[2]), &args[3..]),
        Some("dedup") if args.len() >= 4 => {
            let cfg = config(&args[4..])?;
            let stage = DedupFactory::build(cfg)?;
            let opts = RunOptions { threads: args[3].parse()?, progress: false, ..Default::default() };
            let s = run_stage(stage.as_ref(), &[PathBuf::from(&args[1])], Path::new(&args[2]), &opts)?;
            println!("{}", serde_json::to_string(&s)?);
            Ok(())
        }
        _ => Err(usage.into()),
    }
}
