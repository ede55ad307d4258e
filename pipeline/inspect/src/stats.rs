//! `m6corpus stats`: one streaming pass over the shards a manifest lists (only the
//! columns a measure needs), folded into small accumulators: quantile sketches,
//! per-category counts, a few sample snippets. Memory is bounded by batch size ×
//! threads plus the number of distinct categories, never by the corpus size.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use m6_pipeline::{Dataset, ShardEntry};
use m6_schemas::{self as schemas, Kind, Str};
use rayon::prelude::*;
use serde::Serialize;

use crate::sketch::{Bin, Sketch};
use crate::Error;

const BATCH_ROWS: usize = 8192;
/// Example snippets kept per reject rule, and examples of malformed input.
const SNIPPETS: usize = 3;
const SNIPPET_CHARS: usize = 80;
/// Bars per length histogram.
const HIST_BINS: usize = 40;
/// Ids beyond this are not tracked for vocabulary coverage when the manifest does not
/// say the vocabulary size (keeps the id bitset at most 2 MiB).
const MAX_TRACKED_ID: usize = 1 << 24;

/// Everything `stats` reports about one dataset. `Display` is the table the CLI
/// prints; the serde form is `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub dir: PathBuf,
    pub kind: Kind,
    pub rows: u64,
    pub shards: u64,
    pub bytes: u64,
    /// Sizes of the shard files, in bytes.
    pub shard_bytes: Distribution,
    /// Length distributions: `chars` (documents), `caption_chars` (pairs),
    /// `tokens` (samples), `width`/`height`/`pixels` (images and pairs).
    pub distributions: Vec<Distribution>,
    /// Rows per `source`, most first (kinds with a source column).
    pub sources: Vec<Count>,
    /// Rows per image `format` (png, jpeg, ...), most first (images and pairs; empty
    /// for other kinds).
    pub formats: Vec<Count>,
    /// Documents per `lang` (the filter's language), most first; empty before the
    /// filter ran.
    pub languages: Vec<Count>,
    pub pages: Option<PageStats>,
    pub samples: Option<SampleStats>,
    pub rejects: Option<RejectStats>,
    pub duplicates: Option<DuplicateStats>,
    pub errors: Option<ErrorStats>,
    /// Side datasets stored in sub-folders.
    pub sides: Vec<SideInfo>,
    /// The manifest's run history, oldest first, as the runner recorded it.
    pub runs: Vec<m6_pipeline::RunSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub name: String,
    pub unit: String,
    pub count: u64,
    pub mean: f64,
    pub sum: u128,
    pub p0: Option<u64>,
    pub p10: Option<u64>,
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
    /// False once the sketch rounded values (more than 65536 distinct ones): the
    /// quantiles are then within 0.05% of the true ones.
    pub exact: bool,
    pub histogram: Vec<Bin>,
}

impl Distribution {
    fn new(name: &str, unit: &str, s: &Sketch) -> Self {
        Distribution {
            name: name.to_string(),
            unit: unit.to_string(),
            count: s.count(),
            mean: if s.count() > 0 { s.sum() as f64 / s.count() as f64 } else { 0.0 },
            sum: s.sum(),
            p0: s.quantile(0.0),
            p10: s.quantile(0.10),
            p50: s.quantile(0.50),
            p90: s.quantile(0.90),
            p99: s.quantile(0.99),
            max: s.max(),
            exact: s.exact(),
            histogram: s.histogram(HIST_BINS),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PageStats {
    /// HTTP status codes; `none` where the fetch failed before a response.
    pub status: Vec<Count>,
    /// Fetch failures per `error_kind` (rows with an error kind only).
    pub error_kinds: Vec<Count>,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SampleStats {
    pub tokens: u64,
    pub tokens_per_sample: f64,
    pub unk_id: i64,
    pub unk_tokens: u64,
    pub unk_rate: f64,
    pub vocab_size: Option<u64>,
    pub distinct_ids: u64,
    /// distinct ids used / vocab_size, when the manifest records the vocabulary size.
    pub vocab_coverage: Option<f64>,
    pub tasks: Vec<Count>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectStats {
    /// `.` when the dataset itself is the reject dataset, else the side's name.
    pub dataset: String,
    pub rows: u64,
    /// rows / (rows + kept rows), when the kept dataset is known.
    pub rate: Option<f64>,
    pub rules: Vec<RuleStats>,
    pub by_source: Vec<Count>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleStats {
    pub rule: String,
    pub count: u64,
    pub share: f64,
    pub mean_value: f64,
    pub threshold_min: f64,
    pub threshold_max: f64,
    /// The first few rejected snippets, in manifest order; for a row without text (an
    /// image: filter writes no snippet, or only its `[detail]`) its `source_id`, the
    /// file or URL, before the detail, so the example still says which image was dropped.
    pub snippets: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DuplicateStats {
    pub dataset: String,
    pub rows: u64,
    /// duplicates / (duplicates + kept rows), when the kept dataset is known.
    pub rate: Option<f64>,
    pub by_source: Vec<Rate>,
    pub by_reason: Vec<Rate>,
}

/// Duplicates of one group, and their share of that group's rows before dedup
/// (duplicates + kept), where the kept count is known.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub name: String,
    pub duplicates: u64,
    pub total: Option<u64>,
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorStats {
    pub dataset: String,
    pub rows: u64,
    pub kinds: Vec<Count>,
    /// `file:location: message` of the first few errors.
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SideInfo {
    pub name: String,
    pub kind: Kind,
    pub rows: u64,
    pub shards: u64,
    pub bytes: u64,
}

/// What one scan accumulates; merged in manifest order so snippets and examples are
/// the same whatever the thread count.
#[derive(Debug, Default)]
struct Acc {
    rows: u64,
    dists: BTreeMap<&'static str, Sketch>,
    sources: BTreeMap<String, u64>,
    formats: BTreeMap<String, u64>,
    langs: BTreeMap<String, u64>,
    status: BTreeMap<String, u64>,
    error_kinds: BTreeMap<String, u64>,
    tasks: BTreeMap<String, u64>,
    unk: u64,
    /// Token ids scanned (the [UNK] rate's denominator).
    id_total: u64,
    /// Bitset of token ids seen.
    ids: Vec<u64>,
    rules: BTreeMap<String, RuleAcc>,
    reasons: BTreeMap<String, u64>,
    err_kinds: BTreeMap<String, u64>,
    err_examples: Vec<String>,
}

#[derive(Debug)]
struct RuleAcc {
    count: u64,
    value_sum: f64,
    thr_min: f64,
    thr_max: f64,
    snippets: Vec<String>,
}

fn add_all(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

impl Acc {
    fn merge(mut self, o: Acc) -> Acc {
        self.rows += o.rows;
        for (k, s) in o.dists {
            self.dists.entry(k).or_default().merge(s);
        }
        add_all(&mut self.sources, o.sources);
        add_all(&mut self.formats, o.formats);
        add_all(&mut self.langs, o.langs);
        add_all(&mut self.status, o.status);
        add_all(&mut self.error_kinds, o.error_kinds);
        add_all(&mut self.tasks, o.tasks);
        self.unk += o.unk;
        self.id_total += o.id_total;
        if self.ids.len() < o.ids.len() {
            self.ids.resize(o.ids.len(), 0);
        }
        for (a, b) in self.ids.iter_mut().zip(o.ids) {
            *a |= b;
        }
        for (k, r) in o.rules {
            match self.rules.get_mut(&k) {
                None => {
                    self.rules.insert(k, r);
                }
                Some(m) => {
                    m.count += r.count;
                    m.value_sum += r.value_sum;
                    m.thr_min = m.thr_min.min(r.thr_min);
                    m.thr_max = m.thr_max.max(r.thr_max);
                    m.snippets.extend(r.snippets);
                    m.snippets.truncate(SNIPPETS);
                }
            }
        }
        add_all(&mut self.reasons, o.reasons);
        add_all(&mut self.err_kinds, o.err_kinds);
        self.err_examples.extend(o.err_examples);
        self.err_examples.truncate(SNIPPETS);
        self
    }

    fn dist(&mut self, name: &'static str) -> &mut Sketch {
        self.dists.entry(name).or_default()
    }

    fn set_id(&mut self, id: usize) {
        let w = id / 64;
        if self.ids.len() <= w {
            self.ids.resize(w + 1, 0);
        }
        self.ids[w] |= 1 << (id % 64);
    }
}

/// The columns each kind's measures need; everything else (page bodies, image
/// bytes) is never read.
fn needed_columns(kind: Kind) -> &'static [&'static str] {
    use schemas::*;
    match kind {
        Kind::Page => &[page::STATUS, page::SOURCE, page::ERROR_KIND],
        Kind::Document => &[
            document::CHAR_COUNT,
            document::SOURCE,
            document::QUALITY,
            document::PERPLEXITY,
            document::LANG,
            document::LANG_SCORE,
            document::SPAM_HITS,
            document::BLOCKLIST_HITS,
            document::PII_EMAIL,
            document::PII_PHONE,
            document::PII_ID,
            document::PII_CARD,
            document::PII_IP,
        ],
        Kind::Image => &[image::WIDTH, image::HEIGHT, image::FORMAT, image::SOURCE, image::SHARPNESS, image::ENTROPY, image::BORDER],
        Kind::Pair => &[pair::CAPTION, pair::WIDTH, pair::HEIGHT, pair::FORMAT, pair::SOURCE, pair::SHARPNESS, pair::ENTROPY, pair::BORDER],
        Kind::Sample => &[sample::TASK, sample::LENGTH, sample::INPUT_IDS],
        Kind::Duplicate => &[duplicate::SOURCE, duplicate::REASON],
        Kind::Reject => &[reject::SOURCE, reject::RULE, reject::VALUE, reject::THRESHOLD, reject::SNIPPET, reject::SOURCE_ID],
        Kind::Error => &[error::FILE, error::LOCATION, error::KIND, error::MESSAGE],
        Kind::Signature => &[signature::SIZE],
    }
}

fn snippet(s: &str) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut out: String = one_line.chars().take(SNIPPET_CHARS).collect();
    if one_line.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    out
}

fn count_str(map: &mut BTreeMap<String, u64>, a: &Str, i: usize, null: &str) {
    let k = if a.is_valid(i) { a.value(i) } else { null };
    match map.get_mut(k) {
        Some(v) => *v += 1,
        None => {
            map.insert(k.to_string(), 1);
        }
    }
}

/// How a sample scan treats token ids.
#[derive(Debug, Clone, Copy)]
struct SampleCtx {
    unk_id: i64,
    id_limit: usize,
}

fn scan_batch(kind: Kind, b: &RecordBatch, acc: &mut Acc, sctx: SampleCtx, path: &Path) -> Result<(), Error> {
    use schemas::*;
    let se = |e| Error::Schema { path: path.to_path_buf(), source: e };
    let n = b.num_rows();
    acc.rows += n as u64;
    match kind {
        Kind::Page => {
            let status = column::<U16>(b, page::STATUS).map_err(se)?;
            let src = column::<Str>(b, page::SOURCE).map_err(se)?;
            let ek = column::<Str>(b, page::ERROR_KIND).map_err(se)?;
            for i in 0..n {
                let s = if status.is_valid(i) { status.value(i).to_string() } else { "none".to_string() };
                *acc.status.entry(s).or_default() += 1;
                count_str(&mut acc.sources, src, i, "");
                if ek.is_valid(i) {
                    count_str(&mut acc.error_kinds, ek, i, "");
                }
            }
        }
        Kind::Document => {
            let cc = column::<U32>(b, document::CHAR_COUNT).map_err(se)?;
            let src = column::<Str>(b, document::SOURCE).map_err(se)?;
            let d = acc.dist("chars");
            cc.values().iter().for_each(|&v| d.add(v as u64));
            (0..n).for_each(|i| count_str(&mut acc.sources, src, i, ""));
            // Filter scores (null before the filter ran, or in version-1 shards): floats
            // in [0, 1] as thousandths, perplexity rounded, counts as they are.
            for (col, name, scale) in [(document::QUALITY, document::QUALITY, 1000.0), (document::LANG_SCORE, document::LANG_SCORE, 1000.0), (document::PERPLEXITY, document::PERPLEXITY, 1.0)] {
                if let Ok(a) = column::<F32>(b, col) {
                    for i in (0..n).filter(|&i| a.is_valid(i)) {
                        acc.dist(name).add((a.value(i) as f64 * scale).round().max(0.0) as u64);
                    }
                }
            }
            for (col, name) in [(document::SPAM_HITS, document::SPAM_HITS), (document::BLOCKLIST_HITS, document::BLOCKLIST_HITS)] {
                if let Ok(a) = column::<U32>(b, col) {
                    for i in (0..n).filter(|&i| a.is_valid(i)) {
                        acc.dist(name).add(a.value(i) as u64);
                    }
                }
            }
            if let Ok(a) = column::<Str>(b, document::LANG) {
                for i in (0..n).filter(|&i| a.is_valid(i)) {
                    count_str(&mut acc.langs, a, i, "");
                }
            }
            // Each PII kind on its own (its threshold can be chosen apart), and their sum.
            for (col, name) in [(document::PII_EMAIL, document::PII_EMAIL), (document::PII_PHONE, document::PII_PHONE), (document::PII_ID, document::PII_ID), (document::PII_CARD, document::PII_CARD), (document::PII_IP, document::PII_IP)] {
                if let Ok(a) = column::<U32>(b, col) {
                    for i in (0..n).filter(|&i| a.is_valid(i)) {
                        acc.dist(name).add(a.value(i) as u64);
                    }
                }
            }
            let pii: Vec<&U32> = [document::PII_EMAIL, document::PII_PHONE, document::PII_ID, document::PII_CARD, document::PII_IP].into_iter().filter_map(|c| column::<U32>(b, c).ok()).collect();
            if !pii.is_empty() {
                for i in (0..n).filter(|&i| pii.iter().any(|a| a.is_valid(i))) {
                    let total: u64 = pii.iter().map(|a| if a.is_valid(i) { a.value(i) as u64 } else { 0 }).sum();
                    acc.dist("pii").add(total);
                }
            }
        }
        Kind::Image | Kind::Pair => {
            let (w, h, s, fm) = if kind == Kind::Image {
                (image::WIDTH, image::HEIGHT, image::SOURCE, image::FORMAT)
            } else {
                (pair::WIDTH, pair::HEIGHT, pair::SOURCE, pair::FORMAT)
            };
            let w = column::<U32>(b, w).map_err(se)?;
            let h = column::<U32>(b, h).map_err(se)?;
            let src = column::<Str>(b, s).map_err(se)?;
            let fm = column::<Str>(b, fm).map_err(se)?;
            for i in 0..n {
                let (w, h) = (w.value(i) as u64, h.value(i) as u64);
                acc.dist("width").add(w);
                acc.dist("height").add(h);
                acc.dist("pixels").add(w * h);
                count_str(&mut acc.sources, src, i, "");
                count_str(&mut acc.formats, fm, i, "");
            }
            // Quality signals (null before the filter measured them, or in version-1
            // shards): sharpness in grey levels² rounded, entropy and border share in
            // thousandths.
            for (col, scale) in [(schemas::image_signals::SHARPNESS, 1.0), (schemas::image_signals::ENTROPY, 1000.0), (schemas::image_signals::BORDER, 1000.0)] {
                if let Ok(a) = column::<F32>(b, col) {
                    for i in (0..n).filter(|&i| a.is_valid(i)) {
                        acc.dist(col).add((a.value(i) as f64 * scale).round().max(0.0) as u64);
                    }
                }
            }
            if kind == Kind::Pair {
                let cap = column::<Str>(b, pair::CAPTION).map_err(se)?;
                let d = acc.dist("caption_chars");
                for i in 0..n {
                    d.add(cap.value(i).chars().count() as u64);
                }
            }
        }
        Kind::Sample => {
            let task = column::<Str>(b, sample::TASK).map_err(se)?;
            let len = column::<U32>(b, sample::LENGTH).map_err(se)?;
            let ids = column::<schemas::List>(b, sample::INPUT_IDS).map_err(se)?;
            let d = acc.dist("tokens");
            len.values().iter().for_each(|&v| d.add(v as u64));
            (0..n).for_each(|i| count_str(&mut acc.tasks, task, i, ""));
            let values = ids.values().as_primitive_opt::<Int32Type>().ok_or_else(|| Error::Schema {
                path: path.to_path_buf(),
                source: schemas::SchemaError::WrongType {
                    column: sample::INPUT_IDS,
                    expected: "List(Int32)".into(),
                    found: ids.data_type().to_string(),
                },
            })?;
            // Only the slice the list offsets cover: a sliced batch may carry more values.
            let offs = ids.value_offsets();
            let (start, end) = (offs[0] as usize, offs[n] as usize);
            acc.id_total += (end - start) as u64;
            for &id in &values.values()[start..end] {
                if id as i64 == sctx.unk_id {
                    acc.unk += 1;
                }
                if id >= 0 && (id as usize) < sctx.id_limit {
                    acc.set_id(id as usize);
                }
            }
        }
        Kind::Duplicate => {
            let src = column::<Str>(b, duplicate::SOURCE).map_err(se)?;
            let reason = column::<Str>(b, duplicate::REASON).map_err(se)?;
            for i in 0..n {
                count_str(&mut acc.sources, src, i, "");
                count_str(&mut acc.reasons, reason, i, "");
            }
        }
        Kind::Reject => {
            let src = column::<Str>(b, reject::SOURCE).map_err(se)?;
            let rule = column::<Str>(b, reject::RULE).map_err(se)?;
            let value = column::<F64>(b, reject::VALUE).map_err(se)?;
            let thr = column::<F64>(b, reject::THRESHOLD).map_err(se)?;
            let snip = column::<Str>(b, reject::SNIPPET).map_err(se)?;
            let source_id = column::<Str>(b, reject::SOURCE_ID).map_err(se)?;
            for i in 0..n {
                count_str(&mut acc.sources, src, i, "");
                let r = acc.rules.entry(rule.value(i).to_string()).or_insert(RuleAcc {
                    count: 0,
                    value_sum: 0.0,
                    thr_min: f64::INFINITY,
                    thr_max: f64::NEG_INFINITY,
                    snippets: vec![],
                });
                r.count += 1;
                r.value_sum += value.value(i);
                r.thr_min = r.thr_min.min(thr.value(i));
                r.thr_max = r.thr_max.max(thr.value(i));
                if r.snippets.len() < SNIPPETS {
                    let (sn, id) = (snip.is_valid(i).then(|| snip.value(i)).unwrap_or(""), source_id.is_valid(i).then(|| source_id.value(i)).unwrap_or(""));
                    // An image reject's snippet is at most the filter's `[detail]` (it
                    // has no text): the file goes first, or the example would say what
                    // was wrong but not with which image.
                    let detail_only = sn.trim_end().starts_with('[') && sn.trim_end().ends_with(']');
                    let text = match (sn, id) {
                        ("", "") => None,
                        ("", id) => Some(id.to_string()),
                        (sn, id) if detail_only && !id.is_empty() => Some(format!("{id} {}", sn.trim_end())),
                        (sn, _) => Some(sn.to_string()),
                    };
                    if let Some(t) = text {
                        r.snippets.push(snippet(&t));
                    }
                }
            }
        }
        Kind::Error => {
            let file = column::<Str>(b, error::FILE).map_err(se)?;
            let loc = column::<Str>(b, error::LOCATION).map_err(se)?;
            let k = column::<Str>(b, error::KIND).map_err(se)?;
            let msg = column::<Str>(b, error::MESSAGE).map_err(se)?;
            for i in 0..n {
                count_str(&mut acc.err_kinds, k, i, "");
                if acc.err_examples.len() < SNIPPETS {
                    acc.err_examples.push(snippet(&format!("{}:{}: {}", file.value(i), loc.value(i), msg.value(i))));
                }
            }
        }
        // Dedup's signatures side dataset: rows are counted, nothing else is measured.
        Kind::Signature => {}
    }
    Ok(())
}

fn scan_shard(ds: &Dataset, shard: &ShardEntry, sctx: SampleCtx) -> Result<Acc, Error> {
    let path = ds.shard_path(shard);
    let kind = ds.kind();
    // Stats decode a projection of the shard; the pipeline checks the checksum on the
    // whole file first, so a corrupt shard is an error naming it, never altered
    // statistics. Columns an older schema version lacks (document scores) read as nulls.
    let reader = ds.read_shard_columns(shard, BATCH_ROWS, needed_columns(kind))?;
    let mut acc = Acc::default();
    for b in reader {
        let b = b?;
        scan_batch(kind, &b, &mut acc, sctx, &path)?;
    }
    if acc.rows != shard.rows {
        return Err(Error::Corrupt {
            path,
            msg: format!("shard has {} rows, the manifest says {} (run `m6corpus verify`)", acc.rows, shard.rows),
        });
    }
    Ok(acc)
}

/// A sample dataset's typed properties (`None` for other kinds); missing or wrongly
/// typed ones are an error naming the dataset rather than statistics against a guessed
/// [UNK] id or vocabulary.
fn sample_properties(ds: &Dataset) -> Result<Option<schemas::SampleProperties>, Error> {
    if ds.kind() != Kind::Sample {
        return Ok(None);
    }
    Ok(Some(schemas::SampleProperties::from_map(ds.dir(), &ds.manifest().properties)?))
}

/// Scans every shard the manifest lists, in parallel, merging in manifest order.
fn scan(ds: &Dataset) -> Result<Acc, Error> {
    let sctx = match sample_properties(ds)? {
        Some(p) => SampleCtx { unk_id: p.unk_id as i64, id_limit: p.vocab_size as usize },
        // Only sample rows have ids; the context is unused for other kinds.
        None => SampleCtx { unk_id: -1, id_limit: MAX_TRACKED_ID },
    };
    ds.shards()
        .par_iter()
        .map(|s| scan_shard(ds, s, sctx))
        .try_reduce(Acc::default, |a, b| Ok(a.merge(b)))
}

fn counts(map: BTreeMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = map.into_iter().map(|(name, count)| Count { name, count }).collect();
    // Most first; ties by name so the order is deterministic.
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn reject_stats(name: &str, acc: Acc, kept: Option<u64>) -> RejectStats {
    let rows = acc.rows;
    let mut rules: Vec<RuleStats> = acc
        .rules
        .into_iter()
        .map(|(rule, r)| RuleStats {
            rule,
            count: r.count,
            share: ratio(r.count, rows),
            mean_value: if r.count > 0 { r.value_sum / r.count as f64 } else { 0.0 },
            threshold_min: r.thr_min,
            threshold_max: r.thr_max,
            snippets: r.snippets,
        })
        .collect();
    rules.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule.cmp(&b.rule)));
    RejectStats { dataset: name.to_string(), rows, rate: kept.map(|k| ratio(rows, rows + k)), rules, by_source: counts(acc.sources) }
}

fn duplicate_stats(name: &str, acc: Acc, kept: Option<(u64, &BTreeMap<String, u64>)>) -> DuplicateStats {
    let rows = acc.rows;
    let rate_of = |name: String, dups: u64, kept_n: Option<u64>| {
        let total = kept_n.map(|k| k + dups);
        Rate { name, duplicates: dups, total, rate: total.map(|t| ratio(dups, t)) }
    };
    let mut by_source: Vec<Rate> = acc
        .sources
        .iter()
        .map(|(s, &d)| rate_of(s.clone(), d, kept.map(|(_, per)| per.get(s).copied().unwrap_or(0))))
        .collect();
    by_source.sort_by(|a, b| b.duplicates.cmp(&a.duplicates).then_with(|| a.name.cmp(&b.name)));
    // A reason's rate is relative to every row dedup saw.
    let mut by_reason: Vec<Rate> = acc
        .reasons
        .iter()
        .map(|(r, &d)| {
            let total = kept.map(|(k, _)| k + rows);
            Rate { name: r.clone(), duplicates: d, total, rate: total.map(|t| ratio(d, t)) }
        })
        .collect();
    by_reason.sort_by(|a, b| b.duplicates.cmp(&a.duplicates).then_with(|| a.name.cmp(&b.name)));
    DuplicateStats { dataset: name.to_string(), rows, rate: kept.map(|(k, _)| ratio(rows, rows + k)), by_source, by_reason }
}

fn error_stats(name: &str, acc: Acc) -> ErrorStats {
    ErrorStats { dataset: name.to_string(), rows: acc.rows, kinds: counts(acc.err_kinds), examples: acc.err_examples }
}

fn has_source(kind: Kind) -> bool {
    !matches!(kind, Kind::Sample | Kind::Error | Kind::Signature)
}

/// Computes the statistics of the dataset in `dir` (and of its side datasets).
pub fn stats(dir: &Path) -> Result<Stats, Error> {
    let ds = Dataset::open(dir)?;
    let m = ds.manifest();
    let kind = ds.kind();
    let mut shard_sketch = Sketch::default();
    ds.shards().iter().for_each(|s| shard_sketch.add(s.bytes));

    let acc = scan(&ds)?;
    let kept_rows = acc.rows;
    let kept_sources = acc.sources.clone();

    let mut sides = vec![];
    let (mut rejects, mut duplicates, mut errors) = (None, None, None);
    for (name, skind) in &m.sides {
        let side = ds.side(name)?;
        sides.push(SideInfo {
            name: name.clone(),
            kind: side.kind(),
            rows: side.rows(),
            shards: side.shards().len() as u64,
            bytes: side.manifest().bytes(),
        });
        match skind {
            Kind::Reject if rejects.is_none() => rejects = Some(reject_stats(name, scan(&side)?, Some(kept_rows))),
            Kind::Duplicate if duplicates.is_none() => {
                duplicates = Some(duplicate_stats(name, scan(&side)?, has_source(kind).then_some((kept_rows, &kept_sources))))
            }
            Kind::Error if errors.is_none() => errors = Some(error_stats(name, scan(&side)?)),
            _ => {}
        }
    }

    let dist_meta: &[(&str, &str)] = &[
        ("chars", "characters"),
        (m6_schemas::document::QUALITY, "1/1000"),
        (m6_schemas::document::PERPLEXITY, "per character"),
        (m6_schemas::document::LANG_SCORE, "1/1000"),
        (m6_schemas::document::SPAM_HITS, "hits"),
        (m6_schemas::document::BLOCKLIST_HITS, "hits"),
        ("pii", "replacements"),
        (m6_schemas::document::PII_EMAIL, "replacements"),
        (m6_schemas::document::PII_PHONE, "replacements"),
        (m6_schemas::document::PII_ID, "replacements"),
        (m6_schemas::document::PII_CARD, "replacements"),
        (m6_schemas::document::PII_IP, "replacements"),
        ("caption_chars", "characters"),
        ("tokens", "tokens"),
        ("width", "px"),
        ("height", "px"),
        ("pixels", "px"),
        (m6_schemas::image_signals::SHARPNESS, "Laplacian variance"),
        (m6_schemas::image_signals::ENTROPY, "1/1000 bit"),
        (m6_schemas::image_signals::BORDER, "1/1000 of area"),
    ];
    let distributions = dist_meta
        .iter()
        .filter_map(|(n, unit)| acc.dists.get(n).map(|s| Distribution::new(n, unit, s)))
        .collect();

    let pages = (kind == Kind::Page).then(|| PageStats {
        failed: acc.error_kinds.values().sum(),
        status: counts(acc.status.clone()),
        error_kinds: counts(acc.error_kinds.clone()),
    });
    let props = sample_properties(&ds)?;
    let samples = props.map(|p| {
        let tokens = acc.dists.get("tokens").map(|s| s.sum() as u64).unwrap_or(0);
        let vocab_size = Some(p.vocab_size);
        let distinct_ids: u64 = acc.ids.iter().map(|w| w.count_ones() as u64).sum();
        SampleStats {
            tokens,
            tokens_per_sample: ratio(tokens, acc.rows),
            unk_id: p.unk_id as i64,
            unk_tokens: acc.unk,
            unk_rate: ratio(acc.unk, acc.id_total),
            vocab_size,
            distinct_ids,
            vocab_coverage: vocab_size.map(|v| ratio(distinct_ids, v)),
            tasks: counts(acc.tasks.clone()),
        }
    });
    let sources = if has_source(kind) { counts(acc.sources.clone()) } else { vec![] };
    let formats = counts(acc.formats.clone());
    let languages = counts(acc.langs.clone());
    match kind {
        Kind::Reject => rejects = Some(reject_stats(".", acc, None)),
        Kind::Duplicate => duplicates = Some(duplicate_stats(".", acc, None)),
        Kind::Error => errors = Some(error_stats(".", acc)),
        _ => {}
    }

    let runs = m
        .runs
        .iter()
        .cloned()
        .collect();

    Ok(Stats {
        dir: dir.to_path_buf(),
        kind,
        rows: m.rows(),
        shards: ds.shards().len() as u64,
        bytes: m.bytes(),
        shard_bytes: Distribution::new("shard_bytes", "bytes", &shard_sketch),
        distributions,
        sources,
        formats,
        languages,
        pages,
        samples,
        rejects,
        duplicates,
        errors,
        sides,
        runs,
    })
}

// ---- the table the CLI prints ----

/// Human-readable byte size (binary units).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// Left-aligned first column, right-aligned others; widths in characters.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let cols = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        out.push_str("  ");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i].saturating_sub(c.chars().count());
            if i == 0 {
                out.push_str(c);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str("  ");
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            }
        }
        out.push('\n');
    };
    line(out, &header.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    line(out, &w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>());
    for r in rows {
        line(out, r);
    }
}

fn count_rows(v: &[Count], total: u64) -> Vec<Vec<String>> {
    v.iter().map(|c| vec![if c.name.is_empty() { "(empty)".into() } else { c.name.clone() }, c.count.to_string(), pct(ratio(c.count, total))]).collect()
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut o = String::new();
        let _ = writeln!(o, "{} ({} dataset)", self.dir.display(), self.kind);
        let _ = writeln!(
            o,
            "  rows {}   shards {}   bytes {} ({})   shard size p50 {} max {}",
            self.rows,
            self.shards,
            self.bytes,
            human_bytes(self.bytes),
            self.shard_bytes.p50.map(human_bytes).unwrap_or("-".into()),
            self.shard_bytes.max.map(human_bytes).unwrap_or("-".into()),
        );
        if !self.distributions.is_empty() {
            let _ = writeln!(o, "\nlength distributions");
            let rows: Vec<Vec<String>> = self
                .distributions
                .iter()
                .map(|d| {
                    vec![
                        format!("{} ({})", d.name, d.unit),
                        format!("{:.1}", d.mean),
                        opt(d.p0),
                        opt(d.p10),
                        opt(d.p50),
                        opt(d.p90),
                        opt(d.p99),
                        opt(d.max),
                    ]
                })
                .collect();
            table(&mut o, &["measure", "mean", "p0", "p10", "p50", "p90", "p99", "max"], &rows);
        }
        if !self.sources.is_empty() {
            let _ = writeln!(o, "\nper source");
            table(&mut o, &["source", "rows", "share"], &count_rows(&self.sources, self.rows));
        }
        if !self.formats.is_empty() {
            let _ = writeln!(o, "\nper image format");
            table(&mut o, &["format", "rows", "share"], &count_rows(&self.formats, self.rows));
        }
        if !self.languages.is_empty() {
            let _ = writeln!(o, "\nper language (lang)");
            table(&mut o, &["lang", "rows", "share"], &count_rows(&self.languages, self.rows));
        }
        if let Some(p) = &self.pages {
            let _ = writeln!(o, "\nstatus codes");
            table(&mut o, &["status", "pages", "share"], &count_rows(&p.status, self.rows));
            if !p.error_kinds.is_empty() {
                let _ = writeln!(o, "\nfetch errors ({} pages, {})", p.failed, pct(ratio(p.failed, self.rows)));
                table(&mut o, &["error_kind", "pages", "share"], &count_rows(&p.error_kinds, self.rows));
            }
        }
        if let Some(s) = &self.samples {
            let _ = writeln!(o, "\nsamples");
            let _ = writeln!(o, "  tokens {}   tokens/sample {:.1}", s.tokens, s.tokens_per_sample);
            let _ = writeln!(o, "  [UNK] (id {}) {} tokens = {}", s.unk_id, s.unk_tokens, pct(s.unk_rate));
            match (s.vocab_size, s.vocab_coverage) {
                (Some(v), Some(c)) => {
                    let _ = writeln!(o, "  vocabulary coverage {} of {} ids = {}", s.distinct_ids, v, pct(c));
                }
                _ => {
                    let _ = writeln!(o, "  distinct ids {} (manifest has no vocab_size)", s.distinct_ids);
                }
            }
            table(&mut o, &["task", "samples", "share"], &count_rows(&s.tasks, self.rows));
        }
        if let Some(r) = &self.rejects {
            let _ = writeln!(
                o,
                "\nrejects ({}): {} rows{}",
                r.dataset,
                r.rows,
                r.rate.map(|x| format!(", {} of the input", pct(x))).unwrap_or_default()
            );
            let rows: Vec<Vec<String>> = r
                .rules
                .iter()
                .map(|x| {
                    let thr = if x.threshold_min == x.threshold_max {
                        format!("{}", x.threshold_min)
                    } else {
                        format!("{}..{}", x.threshold_min, x.threshold_max)
                    };
                    vec![x.rule.clone(), x.count.to_string(), pct(x.share), format!("{:.3}", x.mean_value), thr]
                })
                .collect();
            table(&mut o, &["rule", "rows", "share", "mean value", "threshold"], &rows);
            for x in &r.rules {
                for s in &x.snippets {
                    let _ = writeln!(o, "    {}: {}", x.rule, s);
                }
            }
        }
        if let Some(d) = &self.duplicates {
            let _ = writeln!(
                o,
                "\nduplicates ({}): {} rows{}",
                d.dataset,
                d.rows,
                d.rate.map(|x| format!(", {} of the input", pct(x))).unwrap_or_default()
            );
            let rate_rows = |v: &[Rate]| -> Vec<Vec<String>> {
                v.iter()
                    .map(|r| vec![r.name.clone(), r.duplicates.to_string(), opt(r.total), r.rate.map(pct).unwrap_or("-".into())])
                    .collect()
            };
            table(&mut o, &["source", "duplicates", "before dedup", "rate"], &rate_rows(&d.by_source));
            o.push('\n');
            table(&mut o, &["reason", "duplicates", "before dedup", "rate"], &rate_rows(&d.by_reason));
        }
        if let Some(e) = &self.errors {
            let _ = writeln!(o, "\nmalformed input ({}): {} records", e.dataset, e.rows);
            table(&mut o, &["kind", "records", "share"], &count_rows(&e.kinds, e.rows));
            for x in &e.examples {
                let _ = writeln!(o, "    {x}");
            }
        }
        if !self.sides.is_empty() {
            let _ = writeln!(o, "\nside datasets");
            let rows: Vec<Vec<String>> =
                self.sides.iter().map(|s| vec![s.name.clone(), s.kind.to_string(), s.rows.to_string(), s.shards.to_string(), human_bytes(s.bytes)]).collect();
            table(&mut o, &["name", "kind", "rows", "shards", "bytes"], &rows);
        }
        if !self.runs.is_empty() {
            let _ = writeln!(o, "\nruns");
            let rows: Vec<Vec<String>> = self
                .runs
                .iter()
                .map(|r| {
                    vec![
                        r.stage.clone(),
                        r.started_at.clone(),
                        format!("{}/{}", r.task_index, r.task_count),
                        format!("{}+{}", r.tasks_run, r.tasks_skipped),
                        r.rows_in.to_string(),
                        r.rows_out.to_string(),
                        format!("{:.2}", r.seconds),
                        format!("{:.0}", r.rows_per_s),
                    ]
                })
                .collect();
            table(&mut o, &["stage", "started", "slice", "tasks run+skipped", "rows in", "rows out", "seconds", "rows/s"], &rows);
        }
        f.write_str(&o)
    }
}
