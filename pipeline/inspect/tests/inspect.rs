//! stats / sql / report over real datasets: small test-only stages turn the sample
//! data (chinese-poetry, the Debian Handbook, the photos) into document, page, pair
//! and sample datasets through the real runner, with rejects and duplicates sides;
//! every number stats reports is then recomputed here from the rows themselves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use m6_inspect::{report, sql, stats, to_json, to_table};
use m6_pipeline::{run_stage, BoxError, OutputSpec, RunOptions, Stage, Task, TaskInput, TaskOutput};
use m6_schemas::{content_id, Document, Duplicate, Kind, Page, Pair, Record, Reject, Sample, SampleProperties};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data_dir() -> PathBuf {
    let d = std::env::var_os("M6_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("data"));
    assert!(d.join("chinese-poetry").is_dir(), "{} has no sample data: run `make data`", d.display());
    d
}

/// One task per raw input file, or one task for all of them.
fn raw_tasks(inputs: &[PathBuf], one_task: bool) -> Vec<Task> {
    let ti = |p: &PathBuf| TaskInput { path: p.clone(), kind: None, label: p.file_name().unwrap().to_string_lossy().into_owned() };
    if one_task {
        let id = content_id(&inputs.iter().map(|p| p.as_os_str().as_encoded_bytes()).collect::<Vec<_>>());
        vec![Task { id, inputs: inputs.iter().map(ti).collect() }]
    } else {
        inputs.iter().map(|p| Task { id: content_id(&[p.as_os_str().as_encoded_bytes()]), inputs: vec![ti(p)] }).collect()
    }
}

const MIN_CHARS: usize = 24;
const MAX_CHARS: usize = 160;
const POEMS_PER_FILE: usize = 400;

/// chinese-poetry JSON files -> documents; short and long poems go to `rejects`,
/// a poem whose title was already seen in the same file goes to `duplicates`.
struct PoemStage;

impl Stage for PoemStage {
    fn name(&self) -> &'static str {
        "poems"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl m6_pipeline::StageRun for &PoemStage {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(Kind::Document).with_side("rejects", Kind::Reject).with_side("duplicates", Kind::Duplicate))
    }
    fn plan(&mut self, inputs: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok(raw_tasks(inputs, false))
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let path = &task.inputs[0].path;
        let source = path.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let poems: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(path)?)?;
        let (mut docs, mut rejects, mut dups) = (vec![], vec![], vec![]);
        let mut titles: HashMap<String, String> = HashMap::new();
        for p in poems.iter().take(POEMS_PER_FILE) {
            let text = p["paragraphs"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect::<Vec<_>>().join("\n");
            let title = p["title"].as_str().or(p["rhythmic"].as_str()).unwrap_or("").to_string();
            let d = Document::new(&source, p["id"].as_str().map(String::from), None, Some(title.clone()), text, None);
            out.count_in(1, d.text.len() as u64);
            let n = d.char_count as usize;
            let rule = if n < MIN_CHARS {
                Some(("min_chars", MIN_CHARS))
            } else if n > MAX_CHARS {
                Some(("max_chars", MAX_CHARS))
            } else {
                None
            };
            if let Some((rule, thr)) = rule {
                rejects.push(Reject {
                    id: d.id.clone(),
                    source_id: d.source_id.clone(),
                    source: source.clone(),
                    rule: rule.into(),
                    value: n as f64,
                    threshold: thr as f64,
                    snippet: Some(d.text.clone()),
                });
            } else if let Some(kept) = titles.get(&title) {
                dups.push(Duplicate {
                    id: d.id.clone(),
                    source_id: d.source_id.clone(),
                    source: source.clone(),
                    cluster_id: content_id(&[title.as_bytes()]),
                    kept_id: kept.clone(),
                    similarity: 1.0,
                    reason: if title.is_empty() { "empty_title".into() } else { "same_title".into() },
                });
            } else {
                titles.insert(title, d.id.clone());
                docs.push(d);
            }
        }
        out.write_rows(&docs)?;
        out.write_side_rows("rejects", &rejects)?;
        out.write_side_rows("duplicates", &dups)?;
        Ok(())
    }
}

const VOCAB: i32 = 3000;

/// Documents -> samples with a toy character vocabulary: ids are code points modulo
/// the vocabulary, and every 17th code point is unknown (id 1).
struct SampleStage;

impl Stage for SampleStage {
    fn name(&self) -> &'static str {
        "samples"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl m6_pipeline::StageRun for &SampleStage {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(Kind::Sample))
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        for b in task.batches(500) {
            let docs = Document::from_batch(&b?)?;
            out.count_in(docs.len() as u64, 0);
            let samples: Vec<Sample> = docs
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let ids: Vec<i32> = d.text.chars().map(|c| if c as u32 % 17 == 0 { 1 } else { 2 + (c as u32 % (VOCAB as u32 - 2)) as i32 }).collect();
                    Sample {
                        id: content_id(&[d.id.as_bytes()]),
                        task: if i % 5 == 0 { "image_text".into() } else { "text".into() },
                        length: ids.len() as u32,
                        input_ids: ids,
                        image_patches: None,
                        source_ids: vec![d.id.clone()],
                    }
                })
                .collect();
            out.write_rows(&samples)?;
        }
        Ok(())
    }
    fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        SampleProperties {
            tokenizer: "tokenizer.json".into(),
            tokenizer_blake3: String::new(),
            vocab_size: VOCAB as u64,
            pad_id: 0,
            unk_id: 1,
            cls_id: 2,
            sep_id: 3,
            mask_id: 4,
            img_id: Some(5),
            img_end_id: Some(6),
            max_len: 64,
            add_cls: true,
            pack: false,
            image_size: 32,
            patch_size: 16,
            grid: 2,
            patch_bytes: 3072,
            patch_layout: "patch-major RGB".into(),
            image_encoding: "raw".into(),
            image_quality: None,
            text_layout: String::new(),
            image_text_layout: String::new(),
        }
        .to_map()
    }
}

/// Debian Handbook HTML files -> pages, as if fetched: each page (200), each image it
/// references (200 when the file exists, 404 otherwise) and its first external links
/// (failed: no network).
struct PageStage;

impl Stage for PageStage {
    fn name(&self) -> &'static str {
        "pages"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl m6_pipeline::StageRun for &PageStage {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(Kind::Page))
    }
    fn plan(&mut self, inputs: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok(raw_tasks(inputs, true))
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let mut rows = vec![];
        for i in &task.inputs {
            let body = std::fs::read(&i.path)?;
            let html = String::from_utf8_lossy(&body).into_owned();
            let url = format!("file:///handbook/{}", i.label);
            let page = |url: String, status: Option<u16>, body: Option<Vec<u8>>, ek: Option<&str>| Page {
                id: Page::make_id(&url, body.as_deref()),
                url,
                final_url: None,
                status,
                headers: vec![],
                content_type: Some("text/html".into()),
                body,
                fetch_time: 0,
                source: "debian-handbook".into(),
                depth: 0,
                error_kind: ek.map(String::from),
                error: ek.map(|e| format!("{e} (test)")),
                caption: None,
            };
            rows.push(page(url, Some(200), Some(body.clone()), None));
            for src in html.split("src=\"").skip(1).filter_map(|s| s.split('"').next()) {
                let exists = i.path.parent().unwrap().join(src).is_file();
                let u = format!("file:///handbook/{src}");
                rows.push(if exists { page(u, Some(200), None, None) } else { page(u, Some(404), None, Some("http_404")) });
            }
            for href in html.split("href=\"http").skip(1).filter_map(|s| s.split('"').next()).take(2) {
                rows.push(page(format!("http{href}"), None, None, Some("network_disabled")));
            }
        }
        out.count_in(rows.len() as u64, 0);
        out.write_rows(&rows)?;
        Ok(())
    }
}

/// Photos -> image-caption pairs captioned with the file name.
struct PairStage;

impl Stage for PairStage {
    fn name(&self) -> &'static str {
        "pairs"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl m6_pipeline::StageRun for &PairStage {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(Kind::Pair))
    }
    fn plan(&mut self, inputs: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok(raw_tasks(inputs, true))
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let mut rows = vec![];
        for i in &task.inputs {
            let (w, h) = image::image_dimensions(&i.path)?;
            let bytes = std::fs::read(&i.path)?;
            let image_id = content_id(&[&bytes]);
            let caption = format!("一张照片：{}", i.path.file_stem().unwrap().to_string_lossy().replace('_', " "));
            rows.push(Pair {
                id: content_id(&[image_id.as_bytes(), caption.as_bytes()]),
                image_id,
                image_bytes: bytes,
                width: w,
                height: h,
                format: i.path.extension().unwrap().to_string_lossy().into_owned(),
                caption,
                caption_origin: "filename".into(),
                url: None,
                image_url: None,
                source: if i.label.ends_with(".jpg") { "photos-jpg".into() } else { "photos-png".into() },
                source_id: Some(i.label.clone()),
                signals: Default::default(),
            });
        }
        out.count_in(rows.len() as u64, 0);
        out.write_rows(&rows)?;
        Ok(())
    }
}

struct Fixture {
    root: PathBuf,
    docs: PathBuf,
    samples: PathBuf,
    pages: PathBuf,
    pairs: PathBuf,
}

fn opts() -> RunOptions {
    RunOptions { threads: 2, progress: false, ..RunOptions::default() }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let data = data_dir();
        let cp = data.join("chinese-poetry/dist");
        let inputs = vec![
            cp.join("quantangshi/poet.tang.0.json"),
            cp.join("quantangshi/poet.tang.1000.json"),
            cp.join("quantangshi/poet.song.0.json"),
            cp.join("songci/ci.song.0.json"),
        ];
        let docs = root.join("docs");
        run_stage(&PoemStage, &inputs, &docs, &opts()).unwrap();
        let samples = root.join("samples");
        run_stage(&SampleStage, std::slice::from_ref(&docs), &samples, &opts()).unwrap();
        let mut html: Vec<PathBuf> = std::fs::read_dir(data.join("debian-handbook/zh-CN"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "html"))
            .collect();
        html.sort();
        html.truncate(20);
        let pages = root.join("pages");
        run_stage(&PageStage, &html, &pages, &opts()).unwrap();
        let mut photos: Vec<PathBuf> = std::fs::read_dir(data.join("photos")).unwrap().map(|e| e.unwrap().path()).collect();
        photos.sort();
        let pairs = root.join("pairs");
        run_stage(&PairStage, &photos, &pairs, &opts()).unwrap();
        Fixture { root, docs, samples, pages, pairs }
    })
}

fn read<R: Record>(dir: &Path) -> Vec<R> {
    m6_pipeline::Dataset::open(dir).unwrap().read_all::<R>().unwrap()
}

fn nearest_rank(v: &mut [u64], q: f64) -> u64 {
    v.sort();
    v[((q * v.len() as f64).ceil() as usize).max(1) - 1]
}

fn check_dist(d: &m6_inspect::stats::Distribution, mut vals: Vec<u64>) {
    assert_eq!(d.count, vals.len() as u64, "{}", d.name);
    assert_eq!(d.sum, vals.iter().map(|&v| v as u128).sum::<u128>(), "{}", d.name);
    for (q, got) in [(0.0, d.p0), (0.1, d.p10), (0.5, d.p50), (0.9, d.p90), (0.99, d.p99), (1.0, d.max)] {
        assert_eq!(got, Some(nearest_rank(&mut vals, q)), "{} q={q}", d.name);
    }
    assert!(d.exact);
    assert_eq!(d.histogram.iter().map(|b| b.count).sum::<u64>(), vals.len() as u64);
}

fn tally<'a>(it: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for s in it {
        *m.entry(s.to_string()).or_default() += 1;
    }
    m
}

fn as_map(v: &[m6_inspect::stats::Count]) -> BTreeMap<String, u64> {
    v.iter().map(|c| (c.name.clone(), c.count)).collect()
}

#[test]
fn document_stats_match_the_rows() {
    let f = fixture();
    let s = stats(&f.docs).unwrap();
    let docs: Vec<Document> = read(&f.docs);
    let m = m6_pipeline::Dataset::open(&f.docs).unwrap();
    assert_eq!(s.kind, Kind::Document);
    assert_eq!(s.rows, docs.len() as u64);
    assert!(s.rows > 500, "fixture too small: {}", s.rows);
    assert_eq!(s.shards, 4);
    let on_disk: u64 = m.shards().iter().map(|sh| std::fs::metadata(m.shard_path(sh)).unwrap().len()).sum();
    assert_eq!(s.bytes, on_disk);
    let chars = s.distributions.iter().find(|d| d.name == "chars").unwrap();
    check_dist(chars, docs.iter().map(|d| d.text.chars().count() as u64).collect());
    assert_eq!(as_map(&s.sources), tally(docs.iter().map(|d| d.source.as_str())));
    assert_eq!(s.sources.len(), 2);
    assert_eq!(s.runs.len(), 1);
    assert_eq!(s.runs[0].stage, "poems");
    assert_eq!(s.runs[0].rows_out, s.rows);

    // Rejects: per-rule counts, rates and real snippets.
    let rejects: Vec<Reject> = read(&f.docs.join("rejects"));
    let r = s.rejects.as_ref().unwrap();
    assert_eq!(r.rows, rejects.len() as u64);
    let rule_counts: BTreeMap<String, u64> = r.rules.iter().map(|x| (x.rule.clone(), x.count)).collect();
    assert_eq!(rule_counts, tally(rejects.iter().map(|x| x.rule.as_str())));
    assert_eq!(rule_counts.len(), 2, "both rules fire on real poems: {rule_counts:?}");
    assert_eq!(r.rate, Some(rejects.len() as f64 / (rejects.len() + docs.len()) as f64));
    for rule in &r.rules {
        let texts: Vec<&Reject> = rejects.iter().filter(|x| x.rule == rule.rule).collect();
        assert_eq!(rule.snippets.len(), texts.len().min(3));
        for (snip, x) in rule.snippets.iter().zip(&texts) {
            let prefix: String = snip.trim_end_matches('…').chars().collect();
            let orig: String = x.snippet.as_ref().unwrap().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            assert!(orig.starts_with(&prefix), "snippet {snip:?} is not from {orig:?}");
        }
        let mean = texts.iter().map(|x| x.value).sum::<f64>() / texts.len() as f64;
        assert!((rule.mean_value - mean).abs() < 1e-9);
    }

    // Duplicates: per-source counts and rates against the kept rows of that source.
    let dups: Vec<Duplicate> = read(&f.docs.join("duplicates"));
    let d = s.duplicates.as_ref().unwrap();
    assert_eq!(d.rows, dups.len() as u64);
    assert!(d.rows > 0);
    let kept = tally(docs.iter().map(|d| d.source.as_str()));
    let per_src = tally(dups.iter().map(|d| d.source.as_str()));
    assert_eq!(d.by_source.len(), per_src.len());
    for x in &d.by_source {
        assert_eq!(x.duplicates, per_src[&x.name]);
        let total = per_src[&x.name] + kept.get(&x.name).copied().unwrap_or(0);
        assert_eq!(x.total, Some(total));
        assert_eq!(x.rate, Some(per_src[&x.name] as f64 / total as f64));
    }
    let per_reason = tally(dups.iter().map(|d| d.reason.as_str()));
    assert_eq!(d.by_reason.iter().map(|x| (x.name.clone(), x.duplicates)).collect::<BTreeMap<_, _>>(), per_reason);
    assert_eq!(s.sides.len(), 2);

    // The text form carries the same numbers.
    let text = s.to_string();
    assert!(text.contains(&format!("rows {}", s.rows)), "{text}");
    assert!(text.contains("min_chars") && text.contains("same_title") && text.contains("quantangshi"), "{text}");
}

#[test]
fn side_dataset_on_its_own() {
    let f = fixture();
    let s = stats(&f.docs.join("rejects")).unwrap();
    let rejects: Vec<Reject> = read(&f.docs.join("rejects"));
    assert_eq!(s.kind, Kind::Reject);
    let r = s.rejects.unwrap();
    assert_eq!(r.dataset, ".");
    assert_eq!(r.rate, None);
    assert_eq!(r.rows, rejects.len() as u64);
    assert_eq!(as_map(&s.sources), tally(rejects.iter().map(|x| x.source.as_str())));
}

#[test]
fn sample_stats_match_the_rows() {
    let f = fixture();
    let s = stats(&f.samples).unwrap();
    let samples: Vec<Sample> = read(&f.samples);
    assert_eq!(s.rows, samples.len() as u64);
    check_dist(s.distributions.iter().find(|d| d.name == "tokens").unwrap(), samples.iter().map(|x| x.length as u64).collect());
    let x = s.samples.unwrap();
    let all: Vec<i32> = samples.iter().flat_map(|x| x.input_ids.iter().copied()).collect();
    let unk = all.iter().filter(|&&i| i == 1).count() as u64;
    assert!(unk > 0);
    assert_eq!(x.tokens, all.len() as u64);
    assert_eq!(x.unk_tokens, unk);
    assert_eq!(x.unk_rate, unk as f64 / all.len() as f64);
    let distinct: HashSet<i32> = all.iter().copied().collect();
    assert_eq!(x.distinct_ids, distinct.len() as u64);
    assert_eq!(x.vocab_size, Some(VOCAB as u64));
    assert_eq!(x.vocab_coverage, Some(distinct.len() as f64 / VOCAB as f64));
    assert_eq!(as_map(&x.tasks), tally(samples.iter().map(|x| x.task.as_str())));
    assert!(s.sources.is_empty());
}

#[test]
fn page_stats_match_the_rows() {
    let f = fixture();
    let s = stats(&f.pages).unwrap();
    let pages: Vec<Page> = read(&f.pages);
    assert_eq!(s.rows, pages.len() as u64);
    let p = s.pages.unwrap();
    let status: Vec<String> = pages.iter().map(|p| p.status.map(|s| s.to_string()).unwrap_or("none".into())).collect();
    assert_eq!(as_map(&p.status), tally(status.iter().map(|s| s.as_str())));
    let ek = tally(pages.iter().filter_map(|p| p.error_kind.as_deref()));
    assert!(ek.contains_key("network_disabled"), "{ek:?}");
    assert_eq!(as_map(&p.error_kinds), ek);
    assert_eq!(p.failed, ek.values().sum::<u64>());
}

#[test]
fn pair_stats_match_the_rows() {
    let f = fixture();
    let s = stats(&f.pairs).unwrap();
    let pairs: Vec<Pair> = read(&f.pairs);
    assert_eq!(s.rows, pairs.len() as u64);
    let d = |n: &str| s.distributions.iter().find(|d| d.name == n).unwrap();
    check_dist(d("caption_chars"), pairs.iter().map(|p| p.caption.chars().count() as u64).collect());
    check_dist(d("width"), pairs.iter().map(|p| p.width as u64).collect());
    check_dist(d("height"), pairs.iter().map(|p| p.height as u64).collect());
    check_dist(d("pixels"), pairs.iter().map(|p| p.width as u64 * p.height as u64).collect());
    assert_eq!(as_map(&s.sources), tally(pairs.iter().map(|p| p.source.as_str())));
    assert_eq!(as_map(&s.formats), tally(pairs.iter().map(|p| p.format.as_str())));
    assert!(s.formats.len() >= 2, "the photos fixture has PNGs and JPEGs: {:?}", s.formats);
}

fn json_rows(batches: &[arrow::array::RecordBatch]) -> Vec<serde_json::Value> {
    serde_json::from_str::<Vec<serde_json::Value>>(&to_json(batches).unwrap()).unwrap()
}

#[test]
fn sql_joins_two_datasets() {
    let f = fixture();
    let docs: Vec<Document> = read(&f.docs);
    let samples: Vec<Sample> = read(&f.samples);
    let tables = vec![("docs".to_string(), f.docs.clone()), ("samples".to_string(), f.samples.clone())];
    let out = sql(
        "SELECT d.source AS source, count(*) AS n, sum(s.length) AS tokens FROM samples s JOIN docs d ON s.source_ids[1] = d.id GROUP BY d.source ORDER BY d.source",
        &tables,
    )
    .unwrap();
    let rows = json_rows(&out);
    let by_id: HashMap<&str, &Document> = docs.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut expect: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in &samples {
        let d = by_id[s.source_ids[0].as_str()];
        let e = expect.entry(d.source.clone()).or_default();
        e.0 += 1;
        e.1 += s.length as u64;
    }
    assert_eq!(rows.len(), expect.len());
    for (row, (src, (n, tokens))) in rows.iter().zip(&expect) {
        assert_eq!(row["source"], serde_json::json!(src));
        assert_eq!(row["n"], serde_json::json!(n));
        assert_eq!(row["tokens"], serde_json::json!(tokens));
    }
    // Side datasets are registered as NAME_SIDE.
    let dups: Vec<Duplicate> = read(&f.docs.join("duplicates"));
    let out = sql("SELECT count(*) AS n FROM docs_duplicates x JOIN docs d ON x.kept_id = d.id", &tables).unwrap();
    assert_eq!(json_rows(&out)[0]["n"], serde_json::json!(dups.len()));
    let table = to_table(&out).unwrap();
    assert!(table.contains("| n ") && table.contains(&format!("| {} ", dups.len())), "{table}");
}

/// `octet_length` takes the binary image column (DataFusion's own takes strings only,
/// and `length` read image bytes as UTF-8 and failed), and strings as before.
#[test]
fn sql_octet_length_of_image_bytes_and_strings() {
    let f = fixture();
    let mut pairs: Vec<Pair> = read(&f.pairs);
    pairs.sort_by(|a, b| a.id.cmp(&b.id));
    let tables = vec![("p".to_string(), f.pairs.clone())];
    let out = sql("SELECT id, octet_length(image_bytes) AS n, octet_length(caption) AS c FROM p ORDER BY id", &tables).unwrap();
    let rows = json_rows(&out);
    assert_eq!(rows.len(), pairs.len());
    for (row, p) in rows.iter().zip(&pairs) {
        assert_eq!(row["id"], serde_json::json!(p.id));
        assert_eq!(row["n"], serde_json::json!(p.image_bytes.len()), "{}", p.id);
        assert_eq!(row["c"], serde_json::json!(p.caption.len()), "{}", p.id);
    }
    let out = sql("SELECT octet_length('Ångström') AS n", &tables).unwrap();
    assert_eq!(json_rows(&out)[0]["n"], serde_json::json!(10));
}

#[test]
fn sql_errors_name_the_table() {
    let f = fixture();
    let missing = f.root.join("nope");
    let e = sql("SELECT 1", &[("t".into(), missing.clone())]).unwrap_err().to_string();
    assert!(e.contains("`t`") && e.contains("nope"), "{e}");
    let e = sql("SELECT nosuch FROM docs", &[("docs".into(), f.docs.clone())]).unwrap_err().to_string();
    assert!(e.contains("nosuch"), "{e}");
}

#[test]
fn uncommitted_and_orphan_shards_are_never_read() {
    let f = fixture();
    // A private copy, so other tests keep seeing the clean dataset.
    let dir = f.root.join("docs-with-litter");
    copy_dir(&f.docs, &dir);
    let ds = m6_pipeline::Dataset::open(&dir).unwrap();
    let shard = ds.shard_path(&ds.shards()[0]);
    std::fs::copy(&shard, dir.join(".tmp-0123456789abcdef-00000.parquet")).unwrap();
    std::fs::copy(&shard, dir.join("part-0123456789abcdef-00000.parquet")).unwrap();
    std::fs::copy(&shard, dir.join("rejects/part-0123456789abcdef-00000.parquet")).unwrap();
    let clean = stats(&f.docs).unwrap();
    let s = stats(&dir).unwrap();
    assert_eq!(s.rows, clean.rows);
    assert_eq!(s.shards, clean.shards);
    assert_eq!(s.rejects.as_ref().unwrap().rows, clean.rejects.as_ref().unwrap().rows);
    let out = sql("SELECT count(*) AS n FROM docs", &[("docs".into(), dir.clone())]).unwrap();
    assert_eq!(json_rows(&out)[0]["n"], serde_json::json!(clean.rows));
    let out = sql("SELECT count(*) AS n FROM docs_rejects", &[("docs".into(), dir.clone())]).unwrap();
    assert_eq!(json_rows(&out)[0]["n"], serde_json::json!(clean.rejects.unwrap().rows));
}

#[test]
fn a_shard_that_disagrees_with_its_manifest_is_named() {
    let f = fixture();
    let dir = f.root.join("docs-swapped");
    copy_dir(&f.docs, &dir);
    let ds = m6_pipeline::Dataset::open(&dir).unwrap();
    let sh = ds.shards();
    let other = sh.iter().find(|x| x.rows != sh[0].rows).expect("shards of different sizes");
    let (a, b) = (ds.shard_path(&sh[0]), ds.shard_path(other));
    std::fs::copy(&b, &a).unwrap();
    let e = stats(&dir).unwrap_err().to_string();
    assert!(e.contains(&a.file_name().unwrap().to_string_lossy().to_string()) && e.contains("manifest says"), "{e}");
}

#[test]
fn empty_dataset_is_an_empty_table() {
    let f = fixture();
    let dir = f.root.join("empty");
    run_stage(&PoemStage, &[], &dir, &opts()).unwrap();
    let s = stats(&dir).unwrap();
    assert_eq!((s.rows, s.shards), (0, 0));
    let out = sql("SELECT count(*) AS n FROM e", &[("e".into(), dir.clone())]).unwrap();
    assert_eq!(json_rows(&out)[0]["n"], serde_json::json!(0));
    let out = sql("SELECT id FROM e", &[("e".into(), dir)]).unwrap();
    assert_eq!(to_json(&out).unwrap(), "[]");
}

#[test]
fn report_has_a_chart_per_section_and_the_numbers() {
    let f = fixture();
    let out = f.root.join("report.html");
    report(&[f.docs.clone(), f.pages.clone(), f.pairs.clone(), f.samples.clone()], &out).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    let sections: Vec<&str> = html.split("<section class=\"chart\"").skip(1).collect();
    for s in &sections {
        assert!(s.contains("<svg"), "a chart section without a chart: {}", &s[..s.len().min(200)]);
    }
    let ids: Vec<&str> = sections.iter().map(|s| s.split('"').nth(1).unwrap()).collect();
    for want in [
        "overview", "d0-len-chars", "d0-sources", "d0-shards", "d0-rejects", "d0-dup-source", "d0-dup-reason", "d1-status", "d1-errors",
        "d2-len-width", "d2-len-caption_chars", "d2-formats", "d3-len-tokens", "d3-tasks",
    ] {
        assert!(ids.contains(&want), "no section {want}: {ids:?}");
    }
    let s = stats(&f.docs).unwrap();
    let chars = s.distributions.iter().find(|d| d.name == "chars").unwrap();
    assert!(html.contains(&format!("<div class=\"v\">{}</div><div class=\"k\">rows</div>", s.rows)));
    assert!(html.contains(&format!("<td>{}</td><td>{:.1}</td><td>{}</td>", chars.count, chars.mean, chars.p0.unwrap())));
    // Self-contained: no scripts, no external resources.
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));
    assert_eq!(html.matches("http").count(), html.matches("http://www.w3.org/2000/svg").count());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A sample dataset whose manifest lacks a property its readers need, or holds one of
/// the wrong type, is an error naming the dataset and the key, not statistics against
/// a guessed [UNK] id (stats used to fall back to 1).
#[test]
fn sample_stats_refuse_missing_or_mistyped_properties() {
    let f = fixture();
    for (key, value) in [("unk_id", None), ("vocab_size", Some(serde_json::json!("3000")))] {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("samples");
        copy_dir(&f.samples, &dir);
        let path = dir.join("manifest.json");
        let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let props = m["properties"].as_object_mut().unwrap();
        match value {
            None => drop(props.remove(key)),
            Some(v) => drop(props.insert(key.into(), v)),
        }
        std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        let e = stats(&dir).unwrap_err().to_string();
        assert!(e.contains(&dir.display().to_string()) && e.contains(&format!("`{key}`")), "{e}");
    }
}

