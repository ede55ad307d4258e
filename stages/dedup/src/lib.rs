//! The `dedup` stage: exact and near-duplicate removal for documents, images and
//! image–caption pairs, global across every shard of the input, in bounded memory.
//!
//! # How it runs
//!
//! The global work is a chain of phases ([`work`]), each sliced over the processes of a
//! `--task-count` job: **sign** every input shard (normalised-text blake3, densified
//! one-permutation MinHash, window pHashes and thumbnails of images; [`sign`]) into fixed-size bodies and sorted runs of
//! LSH band keys; **pairs**: per key range, sort the band keys of every run so equal keys
//! are adjacent (a `GROUP BY band_key`), verify candidates in each bucket and emit the
//! verified pairs; **clusters** (one process): union-find over the rows in pairs, choose
//! each cluster's kept row, write a drop list per shard; **write** (`process()`): one
//! shard's kept rows, the removed rows' audit rows (`duplicates` side dataset) and the
//! kept rows' signatures (`signatures` side dataset, which later runs read with
//! `--against`). Every phase is resumable; the work folder goes once the output is complete.
//!
//! # Memory
//!
//! Signing holds one run of band keys per thread (`work_mb`, default 32 MiB); pairs holds
//! one key range per thread (about 32 MiB of records whatever the corpus size) and, per
//! thread, a cache of the bodies it has read (at most `work_mb` MiB, emptied when full;
//! images also keep thumbnail preparations, at most 32 MiB, and one process-wide
//! memo of verdicts, at most 2^20 pairs); the single-process clusters step holds only
//! the rows that appear in verified pairs.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;

use arrow::array::{Array, BooleanArray, RecordBatch};
use m6_pipeline::{BoxError, Flag, FlagKind, OutputSpec, RunContext, Stage, StageFactory, StageRun, Task, TaskOutput};
use m6_schemas::{column, Duplicate, Kind, Signature, Str};
use serde::{Deserialize, Serialize};

pub mod image_hash;
pub mod image_verify;
pub mod minhash;
pub mod normalize;
pub mod phash;
pub mod sign;
pub mod work;

/// Name of the side dataset holding one audit row per removed row.
pub const DUPLICATES: &str = "duplicates";
/// Name of the side dataset holding the signature of every kept row (for `--against`).
pub const SIGNATURES: &str = "signatures";

/// One phase of dedup's global work, for schedulers that chain phases as separate jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Sign input shards (task-sliced).
    Sign,
    /// Sort band keys per key range and write verified pairs (task-sliced).
    Pairs,
    /// Merge pairs into clusters and choose kept rows (task 0 only).
    Clusters,
    /// Write kept rows, audit rows and signatures (task-sliced).
    Write,
}

/// Which shingles feed MinHash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shingle {
    /// Character n-grams of the normalised text (suits Chinese: no segmentation needed).
    Char,
    /// Word n-grams after jieba segmentation (jieba's embedded dictionary).
    Word,
}

/// Which row of a cluster is kept. Under every rule, an image or pair cut off in
/// transfer, animated, or over `keep_max_pixels` (which the filter drops) is kept only
/// when its cluster has no other kind of copy (a flawed `--against` row included: the
/// filter most likely dropped it); among the others, `--against` rows come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepRule {
    /// The longest text (documents: characters; images and pairs: pixel count inside
    /// bars and padding, then copies in colour before grey ones, then the best copy by
    /// `sign::image_score`: bytes per pixel of a lossy file, and sharpness; of lossless
    /// copies of the same pixels, the smallest file); ties go to the smallest id hash,
    /// so the choice does not depend on sharding.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageExact {
    /// blake3 of the encoded bytes.
    Bytes,
    /// blake3 of the decoded RGBA pixels and size (lossless re-encodings match).
    Pixels,
}

/// What to do with pairs that share an image or a caption but not both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Remove near duplicates (MinHash LSH for text; window pHashes plus thumbnail
    /// alignment for images, crops included). Default true.
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
    /// LSH bands; `bands × rows` must not exceed `num_perm`. Default 42 (chosen with
    /// `threshold` on the benchmark's hard set: 42 × 3 finds pairs near 0.4 with
    /// probability 0.94 where 32 × 4 finds 0.56).
    pub bands: usize,
    /// Signature rows per band. Default 3.
    pub rows: usize,
    /// Candidate pairs are duplicates when their estimated Jaccard similarity reaches this.
    /// Default 0.4 (best F1 on the tune split of bench/lib/dedup_hardset.py; see the README).
    pub threshold: f32,
    /// Seed of every hash function (changing it changes which borderline pairs match). Default 1.
    pub seed: u64,
    /// Which row of a duplicate cluster is kept: `longest`, `shortest`, `first` or
    /// `quality`. Default `longest`.
    pub keep: KeepRule,
    /// Images and pairs: a copy with more pixels than this is kept only when its cluster
    /// has no copy within it, under every `keep` rule, as a cut-off or animated copy is.
    /// Default 50,000,000, the filter's default `image.bomb` limit (`max_pixels`): kept
    /// for being the largest, a 108 MP original was dropped by the filter after dedup
    /// had removed its smaller copies. Raise it with the filter's `max_pixels`.
    pub keep_max_pixels: u64,
    /// The `meta` JSON field (a number, higher is better) that `keep = "quality"` ranks by.
    /// Default `quality`.
    pub quality_field: String,
    /// Exact image identity: `bytes` or `pixels` (decoded). Default `bytes`: `pixels`
    /// needs a full decode of every image, while near-duplicate search decodes JPEGs at
    /// 1/8–1/2 scale and already matches lossless re-encodings.
    pub image_exact: ImageExact,
    /// Image candidates whose closest pair of window pHashes (whole frame and six
    /// sub-windows each) differ in more than this many of 64 bits are rejected before
    /// the thumbnail alignment; a pair whose closest windows are exactly at the limit
    /// (or one bit under) needs a second pair of windows within it
    /// (`image_verify::near_enough`). Default 14 (with `image_max_diff`, the best photo
    /// F1 on bench/dedup_images.py without a false merge: 16 let a smooth colour
    /// chart's centre part through, at 0.075 the same F1).
    pub max_hamming: u32,
    /// Each window pHash is cut into this many blocks for candidate search (every
    /// block is a band key); hashes within `hash_blocks - 1` bits always share a block
    /// (pigeonhole). Fewer, wider blocks mean smaller buckets on big corpora. Default 11.
    pub hash_blocks: usize,
    /// Largest crop per side (fraction of the side) under which two images still count
    /// as one: the verifier aligns thumbnails over crops up to this. Default 0.1.
    pub max_crop: f32,
    /// Largest share of differing thumbnail pixels (after the best alignment, an edge
    /// strip for watermarks excused) of near-duplicate images. Default 0.075: the
    /// benchmark's stereo pair (two photos of one scene) aligns at 0.078–0.09, true
    /// copies mostly under 0.06 (`m6-dedup-bench image-pairs` lists every pair's score).
    pub image_max_diff: f32,
    /// Pairs: same (near-duplicate) image, different caption: `keep` or `drop`. Default `keep`.
    pub same_image_different_caption: PairPolicy,
    /// Pairs: same normalised caption, different image: `keep` or `drop`. Default `keep`.
    pub same_caption_different_image: PairPolicy,
    /// In one LSH bucket, each member is verified against at most this many earlier
    /// members (bounds the work of huge buckets). Default 32.
    pub max_compare: usize,
    /// MiB of band records a signing thread sorts before writing them as one run
    /// (about 25,000 text documents at 33 keys each per 32 MiB), and of row bodies a
    /// pairs thread keeps after reading them. Default 32.
    pub work_mb: usize,
    /// Key ranges the pairs phase is cut into (its units, spread over processes and
    /// threads): a power of two up to 4096, or 0 (default) for one per 32 MiB of band
    /// records, at least one per 2^15 records and at least 64 once the input has that
    /// many. Set it to give more processes of a job a share of a small input's pairs.
    /// It changes no output: the clusters are the connected components of the verified
    /// pairs, whichever range found them.
    pub pairs_units: usize,
    /// Earlier dedup outputs: rows that duplicate anything kept there are dropped too.
    /// Only their `signatures` side datasets are read; they are never written. Default none.
    pub against: Vec<PathBuf>,
    /// Keep `OUT/_work/` (signatures, band runs, pairs, drop lists) after the output is
    /// complete, e.g. to inspect pairs. Default false: it is removed by the process that
    /// commits the last task.
    pub keep_work: bool,
    /// `--phase` (or `phase` in a job's own config): run one phase and return. Never
    /// written out: it steers a run and changes no output.
    #[serde(skip_serializing)]
    pub phase: Option<Phase>,
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
            bands: 42,
            rows: 3,
            threshold: 0.4,
            seed: 1,
            keep: KeepRule::Longest,
            quality_field: m6_schemas::document::QUALITY.into(),
            image_exact: ImageExact::Bytes,
            max_hamming: 14,
            hash_blocks: 11,
            max_crop: 0.1,
            image_max_diff: 0.075,
            same_image_different_caption: PairPolicy::Keep,
            same_caption_different_image: PairPolicy::Keep,
            max_compare: 32,
            work_mb: 32,
            pairs_units: 0,
            against: vec![],
            keep_max_pixels: m6_imaging::DEFAULT_MAX_PIXELS,
            keep_work: false,
            phase: None,
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
        if self.work_mb == 0 {
            return bad("work_mb", "must be at least 1");
        }
        if !(0.0..=0.25).contains(&self.max_crop) {
            return bad("max_crop", "must be between 0 and 0.25");
        }
        if !(0.0..=1.0).contains(&self.image_max_diff) {
            return bad("image_max_diff", "must be between 0 and 1");
        }
        let max_units = m6_schemas::dedup_work::INDEX;
        if self.pairs_units != 0 && (!self.pairs_units.is_power_of_two() || self.pairs_units > max_units) {
            return bad("pairs_units", &format!("must be 0 (by input size) or a power of two up to {max_units}"));
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

pub struct DedupFactory;

impl StageFactory for DedupFactory {
    const NAME: &'static str = "dedup";
    type Config = DedupConfig;
    const FLAGS: &'static [Flag] = &[
        Flag::float("threshold", "threshold", "Estimated Jaccard threshold for near-duplicate text."),
        Flag::choice("keep", "keep", &["longest", "shortest", "first", "quality"], "Which row of a cluster to keep."),
        Flag::switch("exact-only", "near", false, "Only exact duplicates (no MinHash / pHash)."),
        Flag::choice("shingle", "shingle", &["char", "word"], "Shingles for MinHash."),
        Flag::int("max-hamming", "max_hamming", "Closest window-pHash distance (of 64 bits) an image candidate may have."),
        Flag {
            name: "against",
            key: "against",
            help: "Earlier dedup outputs (OLD …): also drop rows that duplicate anything kept there. Only their signatures are read; they are never changed.",
            kind: FlagKind::List { value_name: "OLD", many: true, delimiter: None, append: false, bare: None },
        },
        Flag::choice("phase", "phase", &["sign", "pairs", "clusters", "write"], "Run one phase only (sign, pairs, clusters, write), for schedulers that chain the phases as separate jobs; without it every process runs all four in turn."),
        Flag::switch("keep-work", "keep_work", true, "Keep OUT/_work after the output is complete."),
    ];
    fn build(cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        cfg.validate()?;
        Ok(Box::new(DedupStage::new(cfg)))
    }
}

/// What `prepare()` leaves for `process()`.
struct Prepared {
    plan: work::Plan,
    /// Task id -> unit (position in the input's shard order).
    units: HashMap<String, usize>,
}

pub struct DedupStage {
    cfg: DedupConfig,
}

impl DedupStage {
    pub fn new(cfg: DedupConfig) -> Self {
        DedupStage { cfg }
    }
}

/// One run of dedup: its plan and work folder belong to the run, not the stage, so
/// the same stage object run again into another output uses that output's work.
struct DedupRun<'a> {
    cfg: &'a DedupConfig,
    prepared: Option<Prepared>,
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

    fn start<'a>(&'a self, _ctx: &RunContext<'a>) -> Result<Box<dyn StageRun + 'a>, BoxError> {
        Ok(Box::new(DedupRun { cfg: &self.cfg, prepared: None }))
    }

    /// The config without the fields that only steer a run (which phase a process
    /// runs, work buffer size, how the pairs phase is cut, keeping work files): those
    /// never change the output, so they must not redo committed tasks.
    fn settings(&self) -> String {
        let mut v = serde_json::to_value(&self.cfg).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            for k in ["phase", "work_mb", "keep_work", "pairs_units"] {
                o.remove(k);
            }
            // Not a setting a user changes, but it changes verdicts: output committed by
            // an older verifier is not "already done" (see `image_verify::VERIFY_VERSION`).
            o.insert("image_verify".into(), image_verify::VERIFY_VERSION.into());
            o.insert("keep_version".into(), work::KEEP_VERSION.into());
        }
        v.to_string()
    }

    /// Which rows a shard keeps depends on every other shard.
    fn reads_all_inputs(&self) -> bool {
        true
    }

    fn prepare_only(&self) -> bool {
        matches!(self.cfg.phase, Some(Phase::Sign | Phase::Pairs | Phase::Clusters))
    }
}

impl StageRun for DedupRun<'_> {
    fn outputs(&self, input_kinds: &[Kind]) -> Result<OutputSpec, BoxError> {
        let kind = input_kind(input_kinds)?;
        Ok(OutputSpec::new(kind).with_side(DUPLICATES, Kind::Duplicate).with_side(SIGNATURES, Kind::Signature))
    }

    fn prepare(&mut self, ctx: &RunContext) -> Result<(), BoxError> {
        let kinds = ctx.inputs.iter().map(|p| m6_pipeline::Dataset::open(p).map(|d| d.kind())).collect::<Result<Vec<_>, _>>()?;
        let kind = input_kind(&kinds)?;
        let plan = work::plan(self.cfg, kind, ctx)?;
        work::prepare(self.cfg, &plan, ctx)?;
        let units = plan.new.iter().enumerate().map(|(u, t)| (t.id.clone(), u)).collect();
        self.prepared = Some(Prepared { plan, units });
        Ok(())
    }

    fn process(&self, ctx: &RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let p = self.prepared.as_ref().ok_or("dedup: process() called before prepare()")?;
        let kind = p.plan.kind;
        let u = *p.units.get(&task.id).ok_or("dedup: task is not one of the planned input shards")?;
        let drops = work::load_drops(&p.plan, u)?;
        let mut next = drops.iter().peekable();
        // The signed rows, in input order: kept rows' signatures go to the side dataset.
        let mut signed = work::bodies_reader(&p.plan, u)?;
        let mut row = vec![0u8; p.plan.row_len(self.cfg)];
        let mut row0 = 0u32;
        for batch in task.batches(ctx.batch_rows) {
            let batch = batch?;
            let n = batch.num_rows();
            out.count_in(n as u64, batch.get_array_memory_size() as u64);
            let mut keep = vec![true; n];
            let mut audit = vec![];
            let (ids, sources, source_ids) = audit_columns(kind, &batch)?;
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
            let mut sigs = Vec::with_capacity(n);
            for (i, kept) in keep.iter().enumerate() {
                signed.read_exact(&mut row).map_err(|e| format!("signed rows of this shard end early at row {}: {e}", row0 as usize + i))?;
                let id = ids.value(i);
                if sign::u64_of(&row[8..]) != sign::id_hash(id) {
                    return Err(format!("row {} (id {id}) is not the row that was signed: input changed since the sign phase", row0 as usize + i).into());
                }
                // An image that does not decode is still deduplicated by its exact
                // bytes, but no near duplicate can be found for it: counted, so a run
                // over damaged or unsupported files says so instead of keeping them
                // without a word.
                if self.cfg.near && kind != Kind::Document && !image_verify::decoded(&row[work::HEADER..]) {
                    out.counters.bump("image.undecoded", 1);
                }
                if *kept {
                    sigs.push(Signature { id: id.to_string(), size: u32::from_le_bytes(row[0..4].try_into().unwrap()), signature: row[work::HEADER..].to_vec() });
                }
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
            out.write_side_rows(SIGNATURES, &sigs)?;
        }
        if let Some(d) = next.next() {
            return Err(format!("drop list names row {} but the shard has {row0} rows: input changed since the sign phase", d.row).into());
        }
        Ok(())
    }

    fn finish(&self, _ctx: &RunContext) -> Result<(), BoxError> {
        if let Some(p) = &self.prepared {
            if matches!(self.cfg.phase, None | Some(Phase::Write)) {
                work::finish(self.cfg, &p.plan);
            }
        }
        Ok(())
    }

    fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        let mut m = BTreeMap::new();
        m.insert("dedup.config".to_string(), serde_json::to_value(self.cfg).unwrap_or_default());
        if let Some(p) = &self.prepared {
            m.insert(work::PROP_SIGNING.to_string(), sign::signing_settings(self.cfg, p.plan.kind));
            m.insert(work::PROP_FINGERPRINT.to_string(), serde_json::json!(p.plan.fingerprint));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output committed by an older verifier must not count as done: the verifier's
    /// version is part of the settings the pipeline keys commits with, while the
    /// knobs that do not change results (memory, phase, work files) are not.
    #[test]
    fn settings_carry_the_verifier_version_but_not_resource_knobs() {
        let a = DedupFactory::build(DedupConfig::default()).unwrap().settings();
        assert!(a.contains(image_verify::VERIFY_VERSION) && a.contains(work::KEEP_VERSION), "{a}");
        let b = DedupFactory::build(DedupConfig { work_mb: 7, keep_work: true, ..DedupConfig::default() }).unwrap().settings();
        assert_eq!(a, b);
    }
}
