//! The `dedup` stage: exact and near-duplicate removal for documents, images and
//! image–caption pairs, global across every shard of the input, in bounded memory.
//!
//! # How it runs
//!
//! `prepare()` is the global phase (see [`work`]): every input shard is signed once
//! (normalised-text blake3, densified one-permutation MinHash, pHash) into Parquet work
//! files under `<output>/_work/sig/`; the LSH band keys are then partitioned on disk by
//! key, each partition is sorted so equal keys are adjacent (the shape of a
//! `GROUP BY band_key` — the same plan DataFusion or Ballista would run over those
//! Parquet files), candidates in a bucket are verified (estimated Jaccard for text,
//! Hamming distance for pHash), clusters are formed by union-find, and a drop list per
//! input shard is written to `_work/drop/`. `process()` then streams one shard and
//! writes its kept rows (main output) and the removed rows' audit rows (`duplicates`
//! side dataset). The global phase is idempotent and resumable: signed shards are
//! reused, and a finished phase (`_work/done.json`, tied to a fingerprint of config and
//! input shards) is not redone by reruns or by other `--task-count` processes.
//!
//! # Memory
//!
//! Signatures and band keys live on disk. In RAM the clustering phase holds 16 bytes
//! per document (union-find parent u32, size u32 for the keep rule, id hash u64), plus
//! one partition of band records at a time per thread (about 8 MiB of records; partitions
//! only grow past that, up to `work_mb`, once 4096 files are not enough), plus the
//! ids of kept representatives of non-trivial clusters (one string per cluster that
//! has duplicates). On disk: per document `8 + 4·num_perm` bytes of signature (text)
//! and 32 bytes per band key while clustering (removed after).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use arrow::array::{Array, BooleanArray, RecordBatch};
use m6_pipeline::{BoxError, OutputSpec, RunContext, Stage, StageFactory, Task, TaskOutput};
use m6_schemas::{column, Duplicate, Kind, Str};
use serde::{Deserialize, Serialize};

pub mod image_hash;
pub mod image_verify;
pub mod minhash;
pub mod normalize;
pub mod phash;
pub mod work;

/// Name of the side dataset holding one audit row per removed row.
pub const DUPLICATES: &str = "duplicates";

/// Which shingles feed MinHash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Shingle {
    /// Character n-grams of the normalised text (suits Chinese: no segmentation needed).
    Char,
    /// Word n-grams after jieba segmentation (jieba's embedded dictionary).
    Word,
}

/// Which row of a cluster is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum KeepRule {
    /// The longest text (documents: characters; images and pairs: pixel count, then
    /// the sharpest: variance of the Laplacian); ties go to the smallest id hash, so
    /// the choice does not depend on sharding.
    Longest,
    /// The shortest text / smallest image; same tie rule.
    Shortest,
    /// The first in input order (input datasets as given, shards in manifest order,
    /// rows in order). Depends on how the input is sharded.
    First,
    /// The highest score under `quality_field` in the row's `meta` JSON (documents),
    /// as an upstream scorer wrote it; rows without a numeric score rank below all
    /// scored ones. Ties (and images/pairs, which carry no meta) fall back to `longest`.
    Quality,
}

/// How an image is identified for exact duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ImageExact {
    /// blake3 of the encoded bytes.
    Bytes,
    /// blake3 of the decoded RGBA pixels and size (lossless re-encodings match).
    Pixels,
}

/// What to do with pairs that share an image or a caption but not both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PairPolicy {
    /// Keep them (different captions of one image are extra training signal).
    Keep,
    /// Keep one pair per group.
    Drop,
}

/// `[dedup]` in pipeline.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Remove exact duplicates (blake3 of the normalised text; of image bytes or pixels). Default true.
    pub exact: bool,
    /// Remove near duplicates (MinHash LSH for text, pHash for images). Default true.
    pub near: bool,
    /// Fold traditional Chinese characters to simplified before hashing (OpenCC's
    /// character table). Default true.
    pub fold_traditional: bool,
    /// Shingles for MinHash: `char` (character n-grams) or `word` (jieba word n-grams). Default `char`.
    pub shingle: Shingle,
    /// Character n-gram size for `char` shingles. Default 5.
    pub ngram: usize,
    /// Word n-gram size for `word` shingles. Default 3.
    pub word_ngram: usize,
    /// MinHash signature length (one-permutation hashing bins). Default 128.
    pub num_perm: usize,
    /// LSH bands; `bands × rows` must not exceed `num_perm`. Default 32.
    pub bands: usize,
    /// Signature rows per band. Default 4.
    pub rows: usize,
    /// Candidate pairs are duplicates when their estimated Jaccard similarity reaches this. Default 0.6.
    pub threshold: f32,
    /// Seed of every hash function (changing it changes which borderline pairs match). Default 1.
    pub seed: u64,
    /// Which row of a duplicate cluster is kept: `longest`, `shortest`, `first` or
    /// `quality`. Default `longest`.
    pub keep: KeepRule,
    /// The `meta` JSON field (a number, higher is better) that `keep = "quality"` ranks by.
    /// Default `quality`.
    pub quality_field: String,
    /// Exact image identity: `bytes` or `pixels` (decoded). Default `bytes`: `pixels`
    /// needs a full decode of every image, while near-duplicate search decodes JPEGs at
    /// 1/8–1/2 scale and already matches lossless re-encodings.
    pub image_exact: ImageExact,
    /// Image candidates whose closest pair of window pHashes (whole frame and six
    /// sub-windows each) differ in more than this many of 64 bits are rejected before
    /// the thumbnail alignment. Default 16.
    pub max_hamming: u32,
    /// Each window pHash is cut into this many blocks for candidate search (every
    /// block is a band key); hashes within `hash_blocks - 1` bits always share a block
    /// (pigeonhole). Fewer, wider blocks mean smaller buckets on big corpora. Default 11.
    pub hash_blocks: usize,
    /// Largest crop per side (fraction of the side) under which two images still count
    /// as one: the verifier aligns thumbnails over crops up to this. Default 0.1.
    pub max_crop: f32,
    /// Largest share of differing thumbnail pixels (after the best alignment, an edge
    /// strip for watermarks excused) of near-duplicate images. Default 0.08.
    pub image_max_diff: f32,
    /// Pairs: same (near-duplicate) image, different caption: `keep` or `drop`. Default `keep`.
    pub same_image_different_caption: PairPolicy,
    /// Pairs: same normalised caption, different image: `keep` or `drop`. Default `keep`.
    pub same_caption_different_image: PairPolicy,
    /// In one LSH bucket, each member is verified against at most this many earlier
    /// members (bounds the work of huge buckets). Default 32.
    pub max_compare: usize,
    /// Upper bound in MiB for sorting band partitions (split across threads). Partitions
    /// aim at 8 MiB each (about 7,000 text documents at 32 bands) and only grow towards
    /// this bound past 4096 partitions, i.e. beyond about 29 M documents. Default 512.
    pub work_mb: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            exact: true,
            near: true,
            fold_traditional: true,
            shingle: Shingle::Char,
            ngram: 5,
            word_ngram: 3,
            num_perm: 128,
            bands: 32,
            rows: 4,
            threshold: 0.6,
            seed: 1,
            keep: KeepRule::Longest,
            quality_field: "quality".into(),
            image_exact: ImageExact::Bytes,
            max_hamming: 16,
            hash_blocks: 11,
            max_crop: 0.1,
            image_max_diff: 0.08,
            same_image_different_caption: PairPolicy::Keep,
            same_caption_different_image: PairPolicy::Keep,
            max_compare: 32,
            work_mb: 512,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("dedup config: `{field}` {msg}")]
    Config { field: &'static str, msg: String },
    #[error("dedup reads document, image or pair datasets, all of one kind; got [{0}]")]
    InputKinds(String),
    #[error("{path}: {msg}")]
    Work { path: PathBuf, msg: String },
}

impl DedupConfig {
    /// The image verifier's settings.
    pub fn image_verify_params(&self) -> image_verify::VerifyParams {
        image_verify::VerifyParams { max_hamming: self.max_hamming, max_crop: self.max_crop, max_diff: self.image_max_diff }
    }

    pub fn validate(&self) -> Result<(), DedupError> {
        let bad = |field, msg: &str| Err(DedupError::Config { field, msg: msg.to_string() });
        if self.ngram == 0 {
            return bad("ngram", "must be at least 1");
        }
        if self.word_ngram == 0 {
            return bad("word_ngram", "must be at least 1");
        }
        if self.num_perm < 8 || self.num_perm > 4096 {
            return bad("num_perm", "must be between 8 and 4096");
        }
        if self.bands == 0 || self.rows == 0 || self.bands * self.rows > self.num_perm {
            return bad("bands", &format!("× rows ({} × {}) must be between 1 and num_perm ({})", self.bands, self.rows, self.num_perm));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return bad("threshold", "must be between 0 and 1");
        }
        if self.max_hamming > 32 {
            return bad("max_hamming", "must be at most 32 (of 64 bits)");
        }
        if self.hash_blocks == 0 || self.hash_blocks > 64 {
            return bad("hash_blocks", "must be between 1 and 64");
        }
        if !(0.0..=0.25).contains(&self.max_crop) {
            return bad("max_crop", "must be between 0 and 0.25");
        }
        if !(0.0..=1.0).contains(&self.image_max_diff) {
            return bad("image_max_diff", "must be between 0 and 1");
        }
        if self.max_compare == 0 {
            return bad("max_compare", "must be at least 1");
        }
        if !self.exact && !self.near {
            return bad("exact", "and `near` are both false: nothing to do");
        }
        Ok(())
    }
}

/// Flags `m6corpus dedup` takes beyond the common ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DedupFlags {
    /// Estimated Jaccard threshold for near-duplicate text.
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Which row of a cluster to keep.
    #[arg(long, value_enum)]
    pub keep: Option<KeepRule>,
    /// Only exact duplicates (no MinHash / pHash).
    #[arg(long)]
    pub exact_only: bool,
    /// Shingles for MinHash.
    #[arg(long, value_enum)]
    pub shingle: Option<Shingle>,
    /// Closest window-pHash distance (of 64 bits) an image candidate may have.
    #[arg(long)]
    pub max_hamming: Option<u32>,
}

pub struct DedupFactory;

impl StageFactory for DedupFactory {
    const NAME: &'static str = "dedup";
    type Config = DedupConfig;
    type Flags = DedupFlags;
    fn apply_flags(flags: &Self::Flags, cfg: &mut Self::Config) -> Result<(), BoxError> {
        if let Some(t) = flags.threshold {
            cfg.threshold = t;
        }
        if let Some(k) = flags.keep {
            cfg.keep = k;
        }
        if flags.exact_only {
            cfg.near = false;
        }
        if let Some(s) = flags.shingle {
            cfg.shingle = s;
        }
        if let Some(h) = flags.max_hamming {
            cfg.max_hamming = h;
        }
        Ok(())
    }
    fn build(cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        cfg.validate()?;
        Ok(Box::new(DedupStage::new(cfg)))
    }
}

/// What `prepare()` leaves for `process()`.
#[derive(Debug, Clone)]
struct Prepared {
    work: PathBuf,
    kind: Kind,
    batch_rows: usize,
}

pub struct DedupStage {
    cfg: DedupConfig,
    prepared: OnceLock<Prepared>,
}

impl DedupStage {
    pub fn new(cfg: DedupConfig) -> Self {
        DedupStage { cfg, prepared: OnceLock::new() }
    }
}

fn input_kind(kinds: &[Kind]) -> Result<Kind, DedupError> {
    let names = || kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
    let first = *kinds.first().ok_or_else(|| DedupError::InputKinds(names()))?;
    if !matches!(first, Kind::Document | Kind::Image | Kind::Pair) || kinds.iter().any(|k| *k != first) {
        return Err(DedupError::InputKinds(names()));
    }
    Ok(first)
}

/// The id, source and source id columns of a batch of `kind`.
fn audit_columns(kind: Kind, b: &RecordBatch) -> Result<(&Str, &Str, &Str), BoxError> {
    use m6_schemas::{document as d, image as i, pair as p};
    Ok(match kind {
        Kind::Document => (column::<Str>(b, d::ID)?, column::<Str>(b, d::SOURCE)?, column::<Str>(b, d::SOURCE_ID)?),
        Kind::Image => (column::<Str>(b, i::ID)?, column::<Str>(b, i::SOURCE)?, column::<Str>(b, i::SOURCE_ID)?),
        _ => (column::<Str>(b, p::ID)?, column::<Str>(b, p::SOURCE)?, column::<Str>(b, p::SOURCE_ID)?),
    })
}

impl Stage for DedupStage {
    fn name(&self) -> &'static str {
        "dedup"
    }

    fn outputs(&self, input_kinds: &[Kind]) -> Result<OutputSpec, BoxError> {
        let kind = input_kind(input_kinds)?;
        Ok(OutputSpec::new(kind).with_side(DUPLICATES, Kind::Duplicate))
    }

    fn prepare(&self, ctx: &RunContext) -> Result<(), BoxError> {
        let kinds = ctx.inputs.iter().map(|p| m6_pipeline::Dataset::open(p).map(|d| d.kind())).collect::<Result<Vec<_>, _>>()?;
        let kind = input_kind(&kinds)?;
        let work = work::prepare(&self.cfg, kind, ctx)?;
        let _ = self.prepared.set(Prepared { work, kind, batch_rows: ctx.batch_rows });
        Ok(())
    }

    fn process(&self, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let p = self.prepared.get().ok_or("dedup: process() called before prepare()")?;
        let drops = work::load_drops(&p.work, &task.id)?;
        let mut next = drops.iter().peekable();
        let mut row0 = 0u32;
        for batch in task.batches(p.batch_rows) {
            let batch = batch?;
            let n = batch.num_rows();
            out.count_in(n as u64, batch.get_array_memory_size() as u64);
            let mut keep = vec![true; n];
            let mut audit = vec![];
            let (ids, sources, source_ids) = audit_columns(p.kind, &batch)?;
            while let Some(d) = next.peek() {
                if d.row >= row0 + n as u32 {
                    break;
                }
                let i = (d.row - row0) as usize;
                keep[i] = false;
                let id = ids.value(i).to_string();
                audit.push(Duplicate {
                    cluster_id: m6_schemas::content_id(&[b"dedup-cluster", d.kept_id.as_bytes()])[..16].to_string(),
                    id,
                    source_id: source_ids.is_valid(i).then(|| source_ids.value(i).to_string()),
                    source: sources.value(i).to_string(),
                    kept_id: d.kept_id.clone(),
                    similarity: d.similarity,
                    reason: d.reason.clone(),
                });
                out.counters.bump(&format!("removed.{}", d.reason), 1);
                next.next();
            }
            row0 += n as u32;
            if audit.is_empty() {
                out.write(&batch)?;
            } else {
                let kept = arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))?;
                if kept.num_rows() > 0 {
                    out.write(&kept)?;
                }
                out.write_side_rows(DUPLICATES, &audit)?;
            }
        }
        if let Some(d) = next.next() {
            return Err(format!("drop list names row {} but the shard has {row0} rows: input changed since prepare", d.row).into());
        }
        Ok(())
    }

    fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        let mut m = BTreeMap::new();
        m.insert("dedup.config".to_string(), serde_json::to_value(&self.cfg).unwrap_or_default());
        m.insert("dedup.ram_bytes_per_document".to_string(), serde_json::json!(work::RAM_BYTES_PER_DOC));
        m
    }
}
