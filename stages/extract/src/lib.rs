//! The `extract` stage: `page` rows (from crawl or ingest) become `document` rows (title
//! and main-content text, charset-correct UTF-8) and, as the `pairs` side output, image–
//! caption pairs whose image bytes come from the image rows of the same task: page rows
//! with an image body (an ingested WARC), or, for a crawl, which stores an image's bytes
//! once, in its `images` side dataset, the `images` shards the page shard's crawl round
//! wrote and those of the earlier rounds that stored images its pages show (the page
//! shard's `refers_to`); each task reads them with its page shard.

pub mod charset;
pub mod html;
/// The crawler's choice of the URL an `<img>` shows (srcset, `<picture>`, lazy-loading
/// attributes, src), compiled in here from the one source file so that a pair's
/// image URL is the URL the crawler downloaded, without depending on its HTTP stack.
#[path = "../../crawl/src/srcset.rs"]
pub mod srcset;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Cursor;

use arrow::array::{Array, RecordBatch};
use m6_pipeline::{plan_shards, BoxError, Dataset, Flag, OutputSpec, RunContext, Stage, StageFactory, StageRun, Task, TaskInput, TaskOutput};
use m6_schemas::{column, image as image_col, page, Bin, Document, Image, Kind, Map, Pair, Str, U16};
use serde::{Deserialize, Serialize};

pub use html::{links, Extracted, ImageRef, Params};

/// The side output holding image–caption pairs.
pub const PAIRS: &str = "pairs";

/// The crawl's side dataset of image rows (`m6_stage_crawl::IMAGES`; named here so
/// extract does not depend on the crawler's HTTP stack).
pub const CRAWL_IMAGES: &str = "images";

/// Pairs are written in chunks of about this many image bytes, so memory stays bounded
/// by the chunk, not by how many images a shard holds.
const PAIR_CHUNK_BYTES: usize = 32 << 20;

/// `[extract]` in pipeline.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractConfig {
    /// Page rows read per batch (default 64). Pages carry whole bodies, so this bounds
    /// memory per thread: about `batch_rows` × the largest body.
    pub batch_rows: usize,
    /// A text block with at least this many non-space characters and little link text
    /// counts as content (default 20; Chinese characters each count one).
    pub min_block_chars: usize,
    /// A block or a list whose share of link text is above this is navigation (default 0.5).
    pub max_link_density: f64,
    /// Short blocks (list items, short lines) are kept when a content block is at most
    /// this many blocks away (default 3).
    pub neighbour_window: usize,
    /// Documents with fewer non-space characters than this are not written (default 1:
    /// only pages with no main text at all are dropped; the filter stage judges quality).
    pub min_doc_chars: usize,
    /// Write the `pairs` side output (default true).
    pub pairs: bool,
    /// Images smaller than this many pixels on either side, declared in `width`/`height`
    /// or decoded, are tracking pixels and icons and make no pair (default 32).
    pub min_image_side: u32,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        let p = Params::default();
        ExtractConfig {
            batch_rows: 64,
            min_block_chars: p.min_block_chars,
            max_link_density: p.max_link_density,
            neighbour_window: p.neighbour_window,
            min_doc_chars: 1,
            pairs: true,
            min_image_side: p.min_image_side,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("extract: `{field}` {problem}")]
    Config { field: &'static str, problem: String },
    #[error("extract reads page datasets, but an input is a {0} dataset")]
    InputKind(Kind),
}

pub struct ExtractFactory;

impl StageFactory for ExtractFactory {
    const NAME: &'static str = "extract";
    type Config = ExtractConfig;
    const FLAGS: &'static [Flag] = &[
        Flag::switch("no-pairs", "pairs", false, "Do not write the `pairs` side output."),
        Flag::int("min-image-side", "min_image_side", "Smallest image side (pixels) that can make a pair."),
        Flag::int("min-block-chars", "min_block_chars", "Smallest content block, in non-space characters."),
    ];
    fn build(cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        let bad = |field, problem: &str| Err(Box::new(ExtractError::Config { field, problem: problem.to_string() }) as BoxError);
        if cfg.batch_rows == 0 {
            return bad("batch_rows", "must be at least 1");
        }
        if !(cfg.max_link_density > 0.0 && cfg.max_link_density <= 1.0) {
            return bad("max_link_density", &format!("must be in (0, 1], got {}", cfg.max_link_density));
        }
        if cfg.min_block_chars == 0 {
            return bad("min_block_chars", "must be at least 1");
        }
        Ok(Box::new(ExtractStage { cfg }))
    }
}

pub struct ExtractStage {
    cfg: ExtractConfig,
}

/// An image reference waiting for its bytes (pass 2 of a task).
struct PendingPair {
    caption: String,
    origin: &'static str,
    page_url: String,
    source: String,
    page_id: String,
}

/// Columns of a page batch, looked up once per batch.
struct PageCols<'a> {
    id: &'a Str,
    url: &'a Str,
    final_url: &'a Str,
    status: &'a U16,
    headers: &'a Map,
    content_type: &'a Str,
    body: &'a Bin,
    source: &'a Str,
    error_kind: &'a Str,
}

impl<'a> PageCols<'a> {
    fn new(b: &'a RecordBatch) -> Result<Self, BoxError> {
        Ok(PageCols {
            id: column(b, page::ID)?,
            url: column(b, page::URL)?,
            final_url: column(b, page::FINAL_URL)?,
            status: column(b, page::STATUS)?,
            headers: column(b, page::HEADERS)?,
            content_type: column(b, page::CONTENT_TYPE)?,
            body: column(b, page::BODY)?,
            source: column(b, page::SOURCE)?,
            error_kind: column(b, page::ERROR_KIND)?,
        })
    }

    fn opt<'s>(a: &'s Str, i: usize) -> Option<&'s str> {
        a.is_valid(i).then(|| a.value(i))
    }

    /// The content type: the column, else the `Content-Type` header.
    fn content_type(&self, i: usize) -> Option<String> {
        if let Some(ct) = Self::opt(self.content_type, i).filter(|s| !s.trim().is_empty()) {
            return Some(ct.to_string());
        }
        let keys = self.headers.keys().as_any().downcast_ref::<Str>()?;
        let values = self.headers.values().as_any().downcast_ref::<Str>()?;
        let offsets = self.headers.value_offsets();
        (offsets[i] as usize..offsets[i + 1] as usize)
            .find(|j| keys.value(*j).eq_ignore_ascii_case("content-type") && values.is_valid(*j))
            .map(|j| values.value(j).to_string())
    }

    fn body(&self, i: usize) -> Option<&'a [u8]> {
        (self.body.is_valid(i) && !self.body.value(i).is_empty()).then(|| self.body.value(i))
    }

    fn failed(&self, i: usize) -> bool {
        self.error_kind.is_valid(i)
    }
}

fn mime(ct: &str) -> String {
    ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn is_image(ct: Option<&str>) -> bool {
    ct.is_some_and(|c| mime(c).starts_with("image/"))
}

/// HTML by content type, or by sniffing when the server gave none (or a generic one).
fn is_html(ct: Option<&str>, body: &[u8]) -> bool {
    let m = ct.map(mime).unwrap_or_default();
    match m.as_str() {
        "text/html" | "application/xhtml+xml" => true,
        "" | "application/octet-stream" | "unknown/unknown" | "application/unknown" => {
            let head = &body[..body.len().min(1024)];
            let lower = String::from_utf8_lossy(head).to_ascii_lowercase();
            let t = lower.trim_start_matches('\u{feff}').trim_start();
            t.starts_with("<!doctype html") || t.starts_with("<html") || t.starts_with("<head") || t.starts_with("<body") || (t.starts_with("<?xml") && lower.contains("<html"))
        }
        _ => false,
    }
}

/// The host's last label (`cn`, `tw`), which steers charset detection like a locale would.
fn tld(url: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_string();
    let last = host.rsplit('.').next()?;
    (last.chars().all(|c| c.is_ascii_alphabetic()) && !last.is_empty()).then(|| last.to_ascii_lowercase())
}

fn image_format(f: image::ImageFormat) -> String {
    match f {
        image::ImageFormat::Png => "png".into(),
        image::ImageFormat::Jpeg => "jpeg".into(),
        image::ImageFormat::Gif => "gif".into(),
        image::ImageFormat::WebP => "webp".into(),
        image::ImageFormat::Bmp => "bmp".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// Format and size from the image header, without decoding the pixels.
fn probe_image(bytes: &[u8]) -> Option<(String, u32, u32)> {
    let mut r = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    let format = r.format()?;
    // Header-sized limits: the PNG reader inflates the colour profile (see HEADER_ALLOC).
    r.limits(m6_imaging::header_limits());
    let (w, h) = r.into_dimensions().ok()?;
    Some((image_format(format), w, h))
}

impl ExtractStage {
    fn params(&self) -> Params {
        Params {
            min_block_chars: self.cfg.min_block_chars,
            max_link_density: self.cfg.max_link_density,
            min_image_side: self.cfg.min_image_side,
            neighbour_window: self.cfg.neighbour_window,
        }
    }

    /// Pass 1: every HTML row becomes a document; its content images are remembered by URL.
    fn documents(&self, task: &Task, out: &mut TaskOutput, pending: &mut HashMap<String, Vec<usize>>, refs: &mut Vec<PendingPair>) -> Result<bool, BoxError> {
        let params = self.params();
        let mut saw_images = false;
        for batch in page_inputs(task).flat_map(|input| reader(task, input, self.cfg.batch_rows)) {
            let batch = batch?;
            let cols = PageCols::new(&batch)?;
            let mut docs = Vec::new();
            let mut bytes = 0u64;
            for i in 0..batch.num_rows() {
                let body = cols.body(i);
                bytes += body.map_or(0, |b| b.len() as u64);
                if cols.failed(i) {
                    out.counters.bump("skipped.error", 1);
                    continue;
                }
                let ct = cols.content_type(i);
                // Before the empty check: a crawled image's page row has no body (its
                // bytes are in `images`).
                if is_image(ct.as_deref()) {
                    saw_images = true;
                    out.counters.bump("skipped.image", 1);
                    continue;
                }
                let Some(body) = body else {
                    out.counters.bump("skipped.empty", 1);
                    continue;
                };
                if !is_html(ct.as_deref(), body) {
                    out.counters.bump("skipped.non_html", 1);
                    continue;
                }
                let url = PageCols::opt(cols.final_url, i).unwrap_or(cols.url.value(i)).to_string();
                let source = cols.source.value(i);
                let page_id = cols.id.value(i);
                let dec = charset::decode(body, ct.as_deref(), tld(&url).as_deref());
                out.counters.bump(&format!("charset.{}", dec.charset.to_ascii_lowercase()), 1);
                let ex = html::extract(&dec.text, Some(&url), &params);
                for why in &ex.skipped_images {
                    out.counters.bump(&format!("pair.skipped.{why}"), 1);
                }
                if self.cfg.pairs {
                    let mut seen = HashSet::new();
                    for img in &ex.images {
                        if !seen.insert((img.url.as_str(), img.caption.as_str())) {
                            continue;
                        }
                        pending.entry(img.url.clone()).or_default().push(refs.len());
                        refs.push(PendingPair { caption: img.caption.clone(), origin: img.origin, page_url: url.clone(), source: source.to_string(), page_id: page_id.to_string() });
                    }
                }
                if ex.text.chars().filter(|c| !c.is_whitespace()).count() < self.cfg.min_doc_chars {
                    out.counters.bump("skipped.no_text", 1);
                    continue;
                }
                let mut meta = serde_json::json!({
                    "charset": dec.charset,
                    "charset_source": dec.source,
                    "decode_errors": dec.had_errors,
                    "content_type": ct,
                    "status": cols.status.is_valid(i).then(|| cols.status.value(i)),
                    "lang": ex.lang,
                    "blocks": ex.blocks_total,
                    "blocks_kept": ex.blocks_kept,
                    "images": ex.images.len(),
                });
                if !dec.rejected.is_empty() {
                    meta["charset_rejected"] = serde_json::json!(dec.rejected);
                }
                docs.push(Document::new(source, Some(page_id.to_string()), Some(url), ex.title, ex.text, Some(meta.to_string())));
            }
            out.count_in(batch.num_rows() as u64, bytes);
            out.write_rows(&docs)?;
        }
        Ok(saw_images)
    }

    /// Pass 2: image rows of the task whose URL a page referenced become pairs: page
    /// rows with an image body, then the task's crawl `images` rows.
    fn pairs(&self, task: &Task, out: &mut TaskOutput, pending: &mut HashMap<String, Vec<usize>>, refs: &[PendingPair]) -> Result<(), BoxError> {
        let mut chunk = PairChunk::default();
        let crawled = !image_inputs(task).is_empty();
        // Where a crawled image's fetch was redirected (page row url -> final_url): a
        // pair's image_url is the final URL, whichever row holds the bytes.
        let mut redirected: HashMap<String, String> = HashMap::new();
        for batch in page_inputs(task).flat_map(|input| reader(task, input, self.cfg.batch_rows)) {
            if pending.is_empty() {
                break;
            }
            let batch = batch?;
            let cols = PageCols::new(&batch)?;
            for i in 0..batch.num_rows() {
                let urls = [Some(cols.url.value(i)), PageCols::opt(cols.final_url, i)];
                let body = cols.body(i);
                let ct = cols.content_type(i);
                // A crawled image's page row: its bytes come from the `images` rows.
                if body.is_none() && !cols.failed(i) && is_image(ct.as_deref()) && crawled {
                    if let Some(f) = PageCols::opt(cols.final_url, i).filter(|f| *f != cols.url.value(i)) {
                        redirected.insert(cols.url.value(i).to_string(), f.to_string());
                    }
                    continue;
                }
                let mut idx: Vec<usize> = vec![];
                for u in urls.into_iter().flatten() {
                    if let Some(v) = pending.remove(u) {
                        idx.extend(v);
                    }
                }
                if idx.is_empty() {
                    continue;
                }
                let n = idx.len() as u64;
                let Some(body) = body.filter(|_| !cols.failed(i)) else {
                    out.counters.bump("pair.image_failed", n);
                    continue;
                };
                if !is_image(ct.as_deref()) && ct.is_some() {
                    out.counters.bump("pair.not_image", n);
                    continue;
                }
                let image_url = PageCols::opt(cols.final_url, i).unwrap_or(cols.url.value(i));
                self.pair_rows(body, image_url, idx, refs, out, &mut chunk)?;
            }
        }
        let failed_earlier = if pending.is_empty() { HashSet::new() } else { self.earlier_rows(task, pending, &mut redirected)? };
        for input in image_inputs(task) {
            for batch in task.reader(input, self.cfg.batch_rows)? {
                if pending.is_empty() {
                    break;
                }
                let batch = batch.map_err(|e| format!("{}: {e}", input.path.display()))?;
                let url: &Str = column(&batch, image_col::URL)?;
                let bytes: &Bin = column(&batch, image_col::BYTES)?;
                for i in 0..batch.num_rows() {
                    // An image row's url is its page row's (requested) url.
                    if !url.is_valid(i) {
                        continue;
                    }
                    let u = url.value(i);
                    let fin = redirected.get(u).map(String::as_str);
                    let idx: Vec<usize> = [Some(u), fin].into_iter().flatten().filter_map(|k| pending.remove(k)).flatten().collect();
                    if idx.is_empty() {
                        continue;
                    }
                    self.pair_rows(bytes.value(i), fin.unwrap_or(u), idx, refs, out, &mut chunk)?;
                }
            }
        }
        // Images an earlier round failed to fetch: counted as this round's would be.
        for u in failed_earlier {
            if let Some(v) = pending.remove(&u) {
                out.counters.bump("pair.image_failed", v.len() as u64);
            }
        }
        out.write_side_rows(PAIRS, &chunk.rows)?;
        Ok(())
    }

    /// What earlier rounds' page rows say of the images they fetched for this task's
    /// pages (only their URL, type and error columns are read): redirects, so the
    /// pair's image_url is the final URL whichever round fetched the image, and the
    /// URLs whose fetch failed (returned).
    fn earlier_rows(&self, task: &Task, pending: &HashMap<String, Vec<usize>>, redirected: &mut HashMap<String, String>) -> Result<HashSet<String>, BoxError> {
        let cols = [page::URL, page::FINAL_URL, page::CONTENT_TYPE, page::ERROR_KIND];
        let mut failed = HashSet::new();
        for input in referred_pages(task) {
            for batch in m6_pipeline::read_parquet_columns(&input.path, input.kind, self.cfg.batch_rows.max(1024), Some(&cols))? {
                let batch = batch.map_err(|e| format!("{}: {e}", input.path.display()))?;
                let (url, fin, ct, err): (&Str, &Str, &Str, &Str) = (column(&batch, page::URL)?, column(&batch, page::FINAL_URL)?, column(&batch, page::CONTENT_TYPE)?, column(&batch, page::ERROR_KIND)?);
                for i in 0..batch.num_rows() {
                    let u = url.value(i);
                    if !pending.contains_key(u) {
                        continue;
                    }
                    if err.is_valid(i) {
                        failed.insert(u.to_string());
                    } else if fin.is_valid(i) && fin.value(i) != u && is_image(PageCols::opt(ct, i)) {
                        redirected.insert(u.to_string(), fin.value(i).to_string());
                    }
                }
            }
        }
        Ok(failed)
    }

    /// The pairs of one image (its bytes) with the captions `idx` point at.
    fn pair_rows(&self, body: &[u8], image_url: &str, mut idx: Vec<usize>, refs: &[PendingPair], out: &mut TaskOutput, chunk: &mut PairChunk) -> Result<(), BoxError> {
        idx.sort_unstable();
        let n = idx.len() as u64;
        let Some((format, w, h)) = probe_image(body) else {
            out.counters.bump("pair.image_undecodable", n);
            return Ok(());
        };
        if w < self.cfg.min_image_side || h < self.cfg.min_image_side {
            out.counters.bump("pair.skipped.tiny_decoded", n);
            return Ok(());
        }
        let image_id = Image::make_id(body);
        for j in idx {
            let r = &refs[j];
            chunk.bytes += body.len();
            chunk.rows.push(Pair {
                id: Pair::make_id(&image_id, &r.caption, Some(&r.page_url)),
                image_id: image_id.clone(),
                image_bytes: body.to_vec(),
                width: w,
                height: h,
                format: format.clone(),
                caption: r.caption.clone(),
                caption_origin: r.origin.to_string(),
                url: Some(r.page_url.clone()),
                image_url: Some(image_url.to_string()),
                source: r.source.clone(),
                source_id: Some(r.page_id.clone()),
                signals: Default::default(),
            });
            out.counters.bump(&format!("pair.origin.{}", r.origin), 1);
        }
        if chunk.bytes >= PAIR_CHUNK_BYTES {
            out.write_side_rows(PAIRS, &chunk.rows)?;
            chunk.rows.clear();
            chunk.bytes = 0;
        }
        Ok(())
    }
}

/// Pairs waiting to be written, and their image bytes.
#[derive(Default)]
struct PairChunk {
    rows: Vec<Pair>,
    bytes: usize,
}

/// Label prefix of the page shards of earlier crawl rounds a task reads for the
/// redirects and failures of the images those rounds fetched (no documents are made
/// from them).
const REFERRED: &str = "refers_to/";

/// The task's page shards (its first input, and any other page inputs).
fn page_inputs(task: &Task) -> impl Iterator<Item = &TaskInput> {
    task.inputs.iter().filter(|i| i.kind == Some(Kind::Page) && !i.label.starts_with(REFERRED))
}

/// The page shards of the earlier rounds the task's page shard refers to.
fn referred_pages(task: &Task) -> impl Iterator<Item = &TaskInput> {
    task.inputs.iter().filter(|i| i.kind == Some(Kind::Page) && i.label.starts_with(REFERRED))
}

/// The crawl `images` shards planned with the task's page shard.
fn image_inputs(task: &Task) -> Vec<&TaskInput> {
    task.inputs.iter().filter(|i| i.kind == Some(Kind::Image)).collect()
}

/// One input's batches, the error naming the shard.
fn reader<'a>(task: &'a Task, input: &'a TaskInput, rows: usize) -> Box<dyn Iterator<Item = Result<RecordBatch, BoxError>> + 'a> {
    match task.reader(input, rows) {
        Ok(r) => Box::new(r.map(move |b| b.map_err(|e| format!("{}: {e}", input.path.display()).into()))),
        Err(e) => Box::new(std::iter::once(Err(format!("{}: {e}", input.path.display()).into()))),
    }
}

impl Stage for ExtractStage {
    fn name(&self) -> &'static str {
        ExtractFactory::NAME
    }

    fn settings(&self) -> String {
        m6_pipeline::settings_of(&self.cfg, &[])
    }

    /// Nothing of a run is kept: the run is the stage itself.
    fn start<'a>(&'a self, _ctx: &RunContext<'a>) -> Result<Box<dyn StageRun + 'a>, BoxError> {
        Ok(Box::new(self))
    }
}

impl StageRun for &ExtractStage {
    fn outputs(&self, input_kinds: &[Kind]) -> Result<OutputSpec, BoxError> {
        if let Some(k) = input_kinds.iter().find(|k| **k != Kind::Page) {
            return Err(Box::new(ExtractError::InputKind(*k)));
        }
        let spec = OutputSpec::new(Kind::Document);
        Ok(if self.cfg.pairs { spec.with_side(PAIRS, Kind::Pair) } else { spec })
    }

    fn plan(&mut self, inputs: &[std::path::PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        // One task per page shard (ids as plan_shards makes them). A crawl keeps image
        // bytes only in its `images` side dataset: each task also reads the image
        // shards of the crawl task that wrote its page shard (same `task` in the
        // manifests) and of the earlier rounds its shard `refers_to`, so the task key
        // covers them and pairs find their bytes.
        let mut tasks = plan_shards(inputs, &[Kind::Page])?;
        let mut next = tasks.iter_mut();
        for dir in inputs {
            let ds = Dataset::open(dir)?;
            let images = ds.manifest().sides.contains_key(CRAWL_IMAGES).then(|| ds.side(CRAWL_IMAGES)).transpose()?.filter(|d| d.kind() == Kind::Image);
            for s in ds.shards() {
                let Some(task) = next.next() else { break };
                let Some(images) = &images else { continue };
                // Its own round's image shards, then those of the earlier rounds whose
                // images its pages show (stored once, by the first round showing them).
                let own = images.shards().iter().filter(|i| i.task == s.task);
                let earlier = s.refers_to.iter().flat_map(|t| images.shards().iter().filter(move |i| &i.task == t));
                for i in own.chain(earlier) {
                    task.inputs.push(TaskInput { path: images.shard_path(i), kind: Some(Kind::Image), label: format!("{CRAWL_IMAGES}/{}", i.file) });
                }
                for p in s.refers_to.iter().flat_map(|t| ds.shards().iter().filter(move |p| &p.task == t)) {
                    task.inputs.push(TaskInput { path: ds.shard_path(p), kind: Some(Kind::Page), label: format!("{REFERRED}{}", p.file) });
                }
            }
        }
        Ok(tasks)
    }

    fn process(&self, _ctx: &RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        // Image URL -> indices into `refs`, in page order. Only captions and URLs are
        // held across the task; image bytes are streamed in pass 2.
        let mut pending: HashMap<String, Vec<usize>> = HashMap::new();
        let mut refs: Vec<PendingPair> = vec![];
        let saw_images = self.documents(task, out, &mut pending, &mut refs)?;
        if (saw_images || !image_inputs(task).is_empty()) && !pending.is_empty() {
            self.pairs(task, out, &mut pending, &refs)?;
        }
        let missing: usize = pending.values().map(Vec::len).sum();
        if missing > 0 {
            out.counters.bump("pair.image_missing", missing as u64);
        }
        Ok(())
    }

    fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([("extract".to_string(), serde_json::to_value(&self.cfg).unwrap_or_default())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_sniffing() {
        assert!(is_html(Some("text/html; charset=gbk"), b"x"));
        assert!(is_html(Some("application/xhtml+xml"), b"x"));
        assert!(is_html(None, b"  <!DOCTYPE html><html>"));
        assert!(is_html(Some("application/octet-stream"), b"<?xml version=\"1.0\"?><!DOCTYPE html PUBLIC><html>"));
        assert!(!is_html(Some("text/plain"), b"<html>"));
        assert!(!is_html(None, b"%PDF-1.4"));
        assert!(is_image(Some("image/PNG")));
    }

    #[test]
    fn tld_of_url() {
        assert_eq!(tld("https://www.example.com.cn/x").as_deref(), Some("cn"));
        assert_eq!(tld("http://127.0.0.1:8080/").as_deref(), None);
    }

    #[test]
    fn config_is_validated() {
        let e = ExtractFactory::build(ExtractConfig { max_link_density: 2.0, ..Default::default() }).err().unwrap();
        assert!(e.to_string().contains("max_link_density"), "{e}");
        assert!(ExtractFactory::build(ExtractConfig::default()).is_ok());
    }
}
