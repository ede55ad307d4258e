//! The global phase of dedup, run by `prepare()`: sign every shard into Parquet work
//! files, group band keys by an on-disk partition + sort, verify candidates, cluster with
//! union-find, and persist one drop list per input shard. Everything is keyed by a
//! fingerprint of config and inputs, so reruns and sibling processes reuse it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, BinaryArray, BinaryBuilder, Float32Array, Float32Builder, RecordBatch, StringBuilder, UInt32Array, UInt32Builder, UInt64Array, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema};
use m6_pipeline::error::IoContext;
use m6_pipeline::{plan_shards, BoxError, RunContext, Task};
use m6_schemas::{column, Bin, Kind, Str, U32};
use parquet::arrow::ArrowWriter;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::minhash::{band_key, fmix64, hash_str, jaccard, MinHasher};
use crate::normalize::Normalizer;
use crate::image_hash::{self, ImageSig};
use crate::image_verify;
use crate::phash::pixel_key;
use crate::{DedupConfig, DedupError, ImageExact, KeepRule, PairPolicy, Shingle};

/// RAM per document during clustering: parent u32 + size u32 + id hash u64.
pub const RAM_BYTES_PER_DOC: usize = 16;

const WORK: &str = "_work";
const SIG: &str = "sig";
const PART: &str = "part";
const DROP: &str = "drop";
const DONE: &str = "done.json";
const FINGERPRINT: &str = "fingerprint";

// Columns of the signature work files (internal to dedup, not a dataset kind).
const C_ID: &str = "id";
const C_SIZE: &str = "size";
const C_SCORE: &str = "score";
const C_IDHASH: &str = "id_hash";
const C_BANDS: &str = "bands";

/// Band record flags: exact keys need no verification, near keys do.
const EXACT: u64 = 1;
const NEAR: u64 = 0;
const TAG_EXACT: u64 = 0xe7ac_0000_0000_0001;
const TAG_BLOCK: u64 = 0xb10c_0000_0000_0000;
const TAG_CAPTION: u64 = 0xca97_0000_0000_0001;

/// One row the drop list removes, with why and in favour of which row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DropEntry {
    pub row: u32,
    pub kept_id: String,
    pub similarity: f32,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Done {
    fingerprint: String,
    documents: u64,
    removed: u64,
}

fn werr(path: &Path, msg: impl Into<String>) -> BoxError {
    Box::new(DedupError::Work { path: path.to_path_buf(), msg: msg.into() })
}

/// Reads the drop list `prepare` wrote for task `task_id` (sorted by row).
pub fn load_drops(work: &Path, task_id: &str) -> Result<Vec<DropEntry>, BoxError> {
    let path = work.join(DROP).join(format!("{task_id}.json"));
    let bytes = fs::read(&path).at(&path)?;
    Ok(serde_json::from_slice(&bytes).map_err(|e| werr(&path, format!("unreadable drop list: {e}")))?)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BoxError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)?;
    Ok(())
}

/// The fixed-size per-row payload used to verify candidates and explain removals.
/// Text: exact u64 + `num_perm` u32. Images and pairs: see [`image_verify::PAYLOAD_LEN`]
/// (exact key, window hashes, caption hash for pairs, verification thumbnail).
fn payload_len(cfg: &DedupConfig, kind: Kind) -> usize {
    match kind {
        Kind::Document => 8 + 4 * cfg.num_perm,
        _ => image_verify::PAYLOAD_LEN,
    }
}

/// Per-row signing output.
struct Signed {
    size: u32,
    /// The keep rule's quality score (`-inf` when the row has none).
    score: f32,
    /// (key, order, flag) triples.
    bands: Vec<[u64; 3]>,
    payload: Vec<u8>,
}

/// Computes signatures of one kind of row; one per thread (holds scratch buffers).
struct Signer<'a> {
    cfg: &'a DedupConfig,
    kind: Kind,
    norm: Normalizer,
    mh: MinHasher,
    chars: Vec<char>,
    /// The normalised text as UTF-8, hashed in one call for the exact key.
    utf8: String,
    sig: Vec<u32>,
    words: Vec<u64>,
}

fn jieba() -> &'static jieba_rs::Jieba {
    static J: OnceLock<jieba_rs::Jieba> = OnceLock::new();
    J.get_or_init(jieba_rs::Jieba::new)
}

fn u64_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

impl<'a> Signer<'a> {
    fn new(cfg: &'a DedupConfig, kind: Kind) -> Self {
        Signer {
            cfg,
            kind,
            norm: Normalizer::new(cfg.fold_traditional),
            mh: MinHasher::new(cfg.num_perm, cfg.seed),
            chars: vec![],
            utf8: String::new(),
            sig: vec![],
            words: vec![],
        }
    }

    fn text(&mut self, text: &str, idhash: u64) -> Signed {
        let cfg = self.cfg;
        self.norm.normalize_into(text, &mut self.chars);
        self.utf8.clear();
        self.utf8.extend(self.chars.iter());
        let exact = u64_of(blake3::hash(self.utf8.as_bytes()).as_bytes());
        let has_sig = match cfg.shingle {
            Shingle::Char => self.mh.char_ngrams(&self.chars, cfg.ngram, &mut self.sig),
            Shingle::Word => {
                self.words.clear();
                self.words.extend(jieba().cut(&self.utf8, false).into_iter().map(|w| hash_str(w, cfg.seed)));
                self.mh.word_ngrams(&self.words, cfg.word_ngram, &mut self.sig)
            }
        };
        let mut bands = vec![];
        if cfg.exact {
            bands.push([fmix64(TAG_EXACT ^ exact), idhash, EXACT]);
        }
        if cfg.near && has_sig {
            for b in 0..cfg.bands {
                bands.push([band_key(&self.sig, b, cfg.rows, cfg.seed), idhash, NEAR]);
            }
        }
        let mut payload = Vec::with_capacity(8 + 4 * cfg.num_perm);
        payload.extend_from_slice(&exact.to_le_bytes());
        for v in &self.sig {
            payload.extend_from_slice(&v.to_le_bytes());
        }
        Signed { size: self.chars.len() as u32, score: f32::NEG_INFINITY, bands, payload }
    }

    /// Image (and pair) identity: exact key and, when near duplicates are wanted and
    /// the image decodes, its crop-tolerant signature (decoded at reduced scale).
    fn image_keys(&self, bytes: &[u8]) -> (u64, Option<ImageSig>) {
        let bytes_key = || u64_of(blake3::hash(bytes).as_bytes());
        if self.cfg.image_exact == ImageExact::Pixels {
            // Exact pixel identity needs every pixel: one full decode serves both keys.
            return match image::load_from_memory(bytes) {
                Ok(img) => {
                    let sig = self.cfg.near.then(|| {
                        let g = img.to_luma8();
                        let full = image_hash::Gray { w: g.width() as usize, h: g.height() as usize, px: g.as_raw().iter().map(|&v| v as f32).collect() };
                        image_hash::sign_gray(&image_hash::shrink(&full, image_hash::WORK_SIDE), img.width(), img.height(), 1)
                    });
                    (u64_of(&pixel_key(&img)), sig)
                }
                Err(e) => {
                    // Undecodable images can still be exact duplicates of each other by bytes.
                    tracing::debug!("image does not decode ({e}); exact bytes only");
                    (bytes_key(), None)
                }
            };
        }
        if !self.cfg.near {
            return (bytes_key(), None);
        }
        match image_hash::sign(bytes) {
            Ok(sig) => (bytes_key(), Some(sig)),
            Err(e) => {
                tracing::debug!("image does not decode ({e}); exact bytes only");
                (bytes_key(), None)
            }
        }
    }

    fn block_bands(&self, ph: u64, salt: u64, idhash: u64, bands: &mut Vec<[u64; 3]>) {
        let nb = self.cfg.hash_blocks;
        let mut start = 0u32;
        for b in 0..nb {
            let width = (64 - start as usize) / (nb - b);
            let val = if width == 0 { 0 } else { (ph << start) >> (64 - width) };
            // Sorting a bucket by the hash rotated past this block puts close hashes together.
            let order = ph.rotate_left(start + width as u32);
            bands.push([fmix64(TAG_BLOCK ^ ((b as u64) << 40) ^ fmix64(val ^ salt)), order, NEAR]);
            let _ = idhash;
            start += width as u32;
        }
    }

    fn image(&self, bytes: &[u8], size: u32, idhash: u64) -> Signed {
        let (exact, sig) = self.image_keys(bytes);
        let mut bands = vec![];
        if self.cfg.exact {
            bands.push([fmix64(TAG_EXACT ^ exact), idhash, EXACT]);
        }
        if let Some(s) = sig.as_ref().filter(|_| self.cfg.near) {
            // Every window hash goes into the same buckets: a crop's whole frame meets
            // the original's matching window.
            for &h in &s.hashes {
                self.block_bands(h, 0, idhash, &mut bands);
            }
        }
        let mut payload = Vec::with_capacity(image_verify::PAYLOAD_LEN);
        image_verify::encode_payload(exact, sig.as_ref(), 0, &mut payload);
        let score = sig.as_ref().map_or(f32::NEG_INFINITY, |s| s.sharpness);
        Signed { size, score, bands, payload }
    }

    fn pair(&mut self, bytes: &[u8], caption: &str, size: u32, idhash: u64) -> Signed {
        let (exact, sig) = self.image_keys(bytes);
        let cap = u64_of(blake3::hash(self.norm.normalize(caption).as_bytes()).as_bytes());
        let image_only = self.cfg.same_image_different_caption == PairPolicy::Drop;
        let salt = if image_only { 0 } else { cap };
        let mut bands = vec![];
        if self.cfg.exact {
            bands.push([fmix64(TAG_EXACT ^ fmix64(exact ^ salt)), idhash, EXACT]);
        }
        if let Some(s) = sig.as_ref().filter(|_| self.cfg.near) {
            for &h in &s.hashes {
                self.block_bands(h, salt, idhash, &mut bands);
            }
        }
        if self.cfg.same_caption_different_image == PairPolicy::Drop {
            bands.push([fmix64(TAG_CAPTION ^ cap), idhash, EXACT]);
        }
        let mut payload = Vec::with_capacity(image_verify::PAYLOAD_LEN);
        image_verify::encode_payload(exact, sig.as_ref(), cap, &mut payload);
        let score = sig.as_ref().map_or(f32::NEG_INFINITY, |s| s.sharpness);
        Signed { size, score, bands, payload }
    }

    fn sign_batch(&mut self, b: &RecordBatch) -> Result<(Vec<String>, Vec<u64>, Vec<Signed>), BoxError> {
        use m6_schemas::{document as d, image as i, pair as p};
        let n = b.num_rows();
        let id_col = match self.kind {
            Kind::Document => d::ID,
            Kind::Image => i::ID,
            _ => p::ID,
        };
        let ids = column::<Str>(b, id_col)?;
        let idh: Vec<u64> = (0..n).map(|r| u64_of(blake3::hash(ids.value(r).as_bytes()).as_bytes())).collect();
        let mut out = Vec::with_capacity(n);
        match self.kind {
            Kind::Document => {
                let text = column::<Str>(b, d::TEXT)?;
                let meta = if self.cfg.keep == KeepRule::Quality { Some(column::<Str>(b, d::META)?) } else { None };
                for r in 0..n {
                    let mut s = self.text(text.value(r), idh[r]);
                    if let Some(m) = meta.filter(|m| m.is_valid(r)) {
                        s.score = quality_score(m.value(r), &self.cfg.quality_field);
                    }
                    out.push(s);
                }
            }
            Kind::Image => {
                let (bytes, w, h) = (column::<Bin>(b, i::BYTES)?, column::<U32>(b, i::WIDTH)?, column::<U32>(b, i::HEIGHT)?);
                // Decoding dominates; rows of a batch are independent.
                out = (0..n)
                    .into_par_iter()
                    .map(|r| self.image(bytes.value(r), w.value(r).saturating_mul(h.value(r)), idh[r]))
                    .collect();
            }
            _ => {
                let (bytes, w, h, cap) = (column::<Bin>(b, p::IMAGE_BYTES)?, column::<U32>(b, p::WIDTH)?, column::<U32>(b, p::HEIGHT)?, column::<Str>(b, p::CAPTION)?);
                let cfg = self.cfg;
                let kind = self.kind;
                out = (0..n)
                    .into_par_iter()
                    .map(|r| Signer::new(cfg, kind).pair(bytes.value(r), cap.value(r), w.value(r).saturating_mul(h.value(r)), idh[r]))
                    .collect();
            }
        }
        Ok(((0..n).map(|r| ids.value(r).to_string()).collect(), idh, out))
    }
}

/// A row's score for `keep = "quality"`: the number under `field` in its meta JSON.
/// Unparsable meta or a missing/non-numeric field ranks lowest rather than failing:
/// the score only orders duplicates, it never drops a row.
fn quality_score(meta: &str, field: &str) -> f32 {
    serde_json::from_str::<serde_json::Value>(meta)
        .ok()
        .and_then(|v| v.get(field).and_then(|x| x.as_f64()))
        .filter(|x| x.is_finite())
        .map_or(f32::NEG_INFINITY, |x| x as f32)
}

/// The input columns signing reads (the rest of a wide row is never decoded).
fn sign_columns(cfg: &DedupConfig, kind: Kind) -> &'static [&'static str] {
    use m6_schemas::{document as d, image as i, pair as p};
    match kind {
        Kind::Document if cfg.keep == KeepRule::Quality => &[d::ID, d::TEXT, d::META],
        Kind::Document => &[d::ID, d::TEXT],
        Kind::Image => &[i::ID, i::BYTES, i::WIDTH, i::HEIGHT],
        _ => &[p::ID, p::IMAGE_BYTES, p::WIDTH, p::HEIGHT, p::CAPTION],
    }
}

fn sig_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(C_ID, DataType::Utf8, false),
        Field::new(C_SIZE, DataType::UInt32, false),
        Field::new(C_SCORE, DataType::Float32, false),
        Field::new(C_IDHASH, DataType::UInt64, false),
        Field::new(C_BANDS, DataType::Binary, false),
    ]))
}

fn sig_paths(work: &Path, ord: usize) -> (PathBuf, PathBuf) {
    let d = work.join(SIG);
    (d.join(format!("{ord:06}.parquet")), d.join(format!("{ord:06}.bin")))
}

/// Signs one input shard into `sig/NNNNNN.parquet` (id, size, id hash, band keys) and
/// `sig/NNNNNN.bin` (fixed-size payloads, for random access while verifying). Reuses
/// them when a previous run finished this shard. Returns the shard's row count.
fn sign_shard(cfg: &DedupConfig, kind: Kind, task: &Task, ord: usize, work: &Path, batch_rows: usize) -> Result<u64, BoxError> {
    let (pq, bin) = sig_paths(work, ord);
    if pq.is_file() && bin.is_file() {
        return Ok(m6_pipeline::read_parquet(&pq, None, 1)?.rows());
    }
    let pq_tmp = pq.with_extension("parquet.tmp");
    let bin_tmp = bin.with_extension("bin.tmp");
    let schema = sig_schema();
    let mut pw = ArrowWriter::try_new(File::create(&pq_tmp).at(&pq_tmp)?, schema.clone(), None).map_err(|e| werr(&pq_tmp, e.to_string()))?;
    let mut bw = BufWriter::with_capacity(1 << 20, File::create(&bin_tmp).at(&bin_tmp)?);
    let mut signer = Signer::new(cfg, kind);
    let mut rows = 0u64;
    for batch in task.batches_columns(batch_rows, sign_columns(cfg, kind)) {
        let batch = batch?;
        let (ids, idh, signed) = signer.sign_batch(&batch)?;
        let mut idb = StringBuilder::new();
        let mut sizeb = UInt32Builder::new();
        let mut scoreb = Float32Builder::new();
        let mut hb = UInt64Builder::new();
        let mut bb = BinaryBuilder::new();
        let mut tmp = Vec::new();
        for ((id, h), s) in ids.iter().zip(&idh).zip(&signed) {
            idb.append_value(id);
            sizeb.append_value(s.size);
            scoreb.append_value(s.score);
            hb.append_value(*h);
            tmp.clear();
            for t in &s.bands {
                for v in t {
                    tmp.extend_from_slice(&v.to_le_bytes());
                }
            }
            bb.append_value(&tmp);
            bw.write_all(&s.payload).at(&bin_tmp)?;
        }
        rows += signed.len() as u64;
        let rb = RecordBatch::try_new(schema.clone(), vec![Arc::new(idb.finish()), Arc::new(sizeb.finish()), Arc::new(scoreb.finish()), Arc::new(hb.finish()), Arc::new(bb.finish())])?;
        pw.write(&rb).map_err(|e| werr(&pq_tmp, e.to_string()))?;
    }
    pw.close().map_err(|e| werr(&pq_tmp, e.to_string()))?;
    let f = bw.into_inner().map_err(|e| werr(&bin_tmp, e.to_string()))?;
    f.sync_all().at(&bin_tmp)?;
    // The payload file lands first: a shard counts as signed once its Parquet file exists.
    fs::rename(&bin_tmp, &bin).at(&bin)?;
    fs::rename(&pq_tmp, &pq).at(&pq)?;
    Ok(rows)
}

/// Random access to payloads by global row number.
struct Payloads {
    files: Vec<File>,
    offsets: Vec<u64>,
    len: usize,
}

impl Payloads {
    fn read(&self, g: u32, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let ord = self.offsets.partition_point(|&o| o <= g as u64) - 1;
        let row = g as u64 - self.offsets[ord];
        buf.resize(self.len, 0);
        self.files[ord].read_exact_at(buf, row * self.len as u64)
    }
}

/// Lock-free union-find shared by the threads that verify partitions. Components are
/// the connected components of the verified pairs, whatever order threads link them
/// in; which row represents a component is decided afterwards by [`Keep`].
struct SharedUf {
    parent: Vec<AtomicU32>,
}

impl SharedUf {
    fn new(n: usize) -> Self {
        SharedUf { parent: (0..n as u32).map(AtomicU32::new).collect() }
    }

    fn find(&self, mut x: u32) -> u32 {
        loop {
            let p = self.parent[x as usize].load(Ordering::Acquire);
            if p == x {
                return x;
            }
            let gp = self.parent[p as usize].load(Ordering::Acquire);
            if gp != p {
                // Path halving; losing the race only leaves a longer path.
                let _ = self.parent[x as usize].compare_exchange_weak(p, gp, Ordering::AcqRel, Ordering::Relaxed);
            }
            x = gp;
        }
    }

    /// True only when the two are connected (connections are never undone); a false
    /// answer during a concurrent link merely costs a verification.
    fn same(&self, a: u32, b: u32) -> bool {
        self.find(a) == self.find(b)
    }

    /// Links the components; returns whether they were separate.
    fn union(&self, a: u32, b: u32) -> bool {
        loop {
            let (ra, rb) = (self.find(a), self.find(b));
            if ra == rb {
                return false;
            }
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            if self.parent[hi as usize].compare_exchange(hi, lo, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return true;
            }
        }
    }
}

/// The facts the keep rule compares.
struct Keep {
    size: Vec<u32>,
    /// Only filled for `KeepRule::Quality` (4 more bytes per row then).
    score: Vec<f32>,
    idhash: Vec<u64>,
    rule: KeepRule,
}

impl Keep {
    /// Whether `a` should represent a cluster rather than `b`.
    fn better(&self, a: u32, b: u32) -> bool {
        let (ai, bi) = (a as usize, b as usize);
        let tie = (self.idhash[ai], a) < (self.idhash[bi], b);
        // Same size: the higher score wins before the id-hash tie (images: the sharper
        // copy, so of equal-sized copies the least blurred one is kept).
        let scored = |o: std::cmp::Ordering| match o {
            std::cmp::Ordering::Equal => tie,
            o => o == std::cmp::Ordering::Greater,
        };
        let score_tie = || if self.score.is_empty() { tie } else { scored(self.score[ai].total_cmp(&self.score[bi])) };
        let longest = self.size[ai] > self.size[bi] || (self.size[ai] == self.size[bi] && score_tie());
        match self.rule {
            KeepRule::Longest => longest,
            KeepRule::Shortest => self.size[ai] < self.size[bi] || (self.size[ai] == self.size[bi] && tie),
            KeepRule::First => a < b,
            KeepRule::Quality => match self.score[ai].total_cmp(&self.score[bi]) {
                std::cmp::Ordering::Equal => longest,
                o => o == std::cmp::Ordering::Greater,
            },
        }
    }
}

/// Whether two rows are duplicates according to their payloads (for near keys).
fn verify(cfg: &DedupConfig, kind: Kind, a: &[u8], b: &[u8]) -> bool {
    match kind {
        Kind::Document => jaccard(&sig_of(a), &sig_of(b)) >= cfg.threshold,
        Kind::Image => image_verify::verify(&cfg.image_verify_params(), a, b),
        _ => {
            (cfg.same_image_different_caption == PairPolicy::Drop || u64_of(&a[24..]) == u64_of(&b[24..]))
                && image_verify::verify(&cfg.image_verify_params(), a, b)
        }
    }
}

fn sig_of(p: &[u8]) -> Vec<u32> {
    p[8..].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Why `a` was removed in favour of `kept`, and how similar they are.
fn explain(cfg: &DedupConfig, kind: Kind, a: &[u8], kept: &[u8]) -> (f32, &'static str) {
    let same_exact = u64_of(a) == u64_of(kept);
    match kind {
        Kind::Document => {
            if same_exact {
                (1.0, "exact_text")
            } else {
                (jaccard(&sig_of(a), &sig_of(kept)), "near_text")
            }
        }
        Kind::Image => {
            if same_exact {
                (1.0, "exact_image")
            } else {
                (image_verify::similarity(&cfg.image_verify_params(), a, kept), "near_image")
            }
        }
        _ => {
            let p = cfg.image_verify_params();
            let both_decoded = image_verify::decoded(a) && image_verify::decoded(kept);
            let near = both_decoded && !same_exact && image_verify::verify(&p, a, kept);
            let image_same = same_exact || near;
            let image_sim = if same_exact { 1.0 } else if both_decoded { image_verify::similarity(&p, a, kept) } else { 0.0 };
            let caption_same = u64_of(&a[24..]) == u64_of(&kept[24..]);
            let reason = match (image_same, caption_same) {
                (true, true) if same_exact => "exact_pair",
                (true, true) => "near_image_same_caption",
                (true, false) => "same_image",
                (false, true) => "same_caption",
                // Linked to the kept pair only through a chain of other pairs.
                (false, false) => "transitive",
            };
            (image_sim, reason)
        }
    }
}

fn fingerprint(cfg: &DedupConfig, kind: Kind, tasks: &[Task]) -> String {
    let mut h = blake3::Hasher::new();
    // v2: signature files carry a score column. v3: image payloads carry window
    // hashes and a verification thumbnail.
    h.update(b"m6-dedup-v3");
    h.update(serde_json::to_string(cfg).unwrap_or_default().as_bytes());
    h.update(kind.name().as_bytes());
    for t in tasks {
        h.update(t.id.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// One partition record: key, order, tie-break (id hash), global row, flag.
const REC: usize = 36;
/// Partition size aimed for in the band sort (bytes of records on disk).
const PART_TARGET: usize = 8 << 20;
/// At most this many partition files are open at once.
const MAX_PARTS: u64 = 4096;

fn put_rec(buf: &mut Vec<u8>, key: u64, order: u64, tie: u64, g: u32, flag: u64) {
    buf.extend_from_slice(&key.to_le_bytes());
    buf.extend_from_slice(&order.to_le_bytes());
    buf.extend_from_slice(&tie.to_le_bytes());
    buf.extend_from_slice(&g.to_le_bytes());
    buf.extend_from_slice(&flag.to_le_bytes());
}

#[derive(Clone, Copy)]
struct Rec {
    key: u64,
    order: u64,
    tie: u64,
    g: u32,
    flag: u64,
}

fn get_rec(b: &[u8]) -> Rec {
    Rec {
        key: u64_of(&b[0..]),
        order: u64_of(&b[8..]),
        tie: u64_of(&b[16..]),
        g: u32::from_le_bytes(b[24..28].try_into().unwrap()),
        flag: u64_of(&b[28..]),
    }
}

/// Runs (or reuses) the global phase and returns the work folder.
pub fn prepare(cfg: &DedupConfig, kind: Kind, ctx: &RunContext) -> Result<PathBuf, BoxError> {
    let work = ctx.output.join(WORK);
    fs::create_dir_all(work.join(SIG)).at(&work)?;
    // Every process of a --task-count job calls prepare: one does the work, the others
    // wait here and then find it done.
    let lock_path = work.join(".lock");
    let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).at(&lock_path)?;
    fs4::fs_std::FileExt::lock_exclusive(&lock).at(&lock_path)?;

    let tasks = plan_shards(ctx.inputs, &[])?;
    let fp = fingerprint(cfg, kind, &tasks);
    let fp_path = work.join(FINGERPRINT);
    let done_path = work.join(DONE);
    if let Ok(old) = fs::read_to_string(&fp_path) {
        if old.trim() != fp {
            let commits = ctx.output.join("_commits");
            let any = fs::read_dir(&commits).map(|mut d| d.next().is_some()).unwrap_or(false);
            if any {
                return Err(werr(&fp_path, "this output was deduplicated with another config or other inputs; use a fresh --output"));
            }
            info!("dedup inputs or config changed; discarding old work files");
            for d in [SIG, PART, DROP] {
                let _ = fs::remove_dir_all(work.join(d));
            }
            let _ = fs::remove_file(&done_path);
            fs::create_dir_all(work.join(SIG)).at(&work)?;
        }
    }
    if let Ok(text) = fs::read(&done_path) {
        if let Ok(d) = serde_json::from_slice::<Done>(&text) {
            if d.fingerprint == fp {
                info!(documents = d.documents, removed = d.removed, "dedup clustering already done; reusing it");
                return Ok(work);
            }
        }
    }
    write_atomic(&fp_path, fp.as_bytes())?;

    let pool = rayon::ThreadPoolBuilder::new().num_threads(ctx.threads.max(1)).build()?;
    let t0 = std::time::Instant::now();
    // Signing: shards in parallel (image decoding is also parallel within a batch).
    let rows: Vec<u64> = pool.install(|| {
        tasks
            .par_iter()
            .enumerate()
            .map(|(ord, t)| sign_shard(cfg, kind, t, ord, &work, ctx.batch_rows))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    let mut total = 0u64;
    for r in &rows {
        offsets.push(total);
        total += r;
    }
    if total >= u32::MAX as u64 {
        return Err(werr(&work, format!("{total} rows: one dedup run handles at most 2^32-1; split the input")));
    }
    info!(rows = total, shards = rows.len(), secs = format!("{:.2}", t0.elapsed().as_secs_f64()), "dedup: signed");
    let n = total as usize;

    // Partition band records on disk by key; load per-row keep-rule facts.
    let t1 = std::time::Instant::now();
    let bands_per_row = match kind {
        Kind::Document => cfg.bands + 1,
        _ => image_hash::WINDOWS * cfg.hash_blocks + 2,
    };
    // Small partitions keep RAM flat as the input grows: a thread holds one partition
    // (decoded records plus sort), so aim far below the budget and let the partition
    // count grow instead, up to the open-file cap; past that the budget is the bound.
    let budget = (cfg.work_mb.max(16) << 20) / ctx.threads.max(1);
    let target = budget.min(PART_TARGET);
    let parts = ((n as u64 * bands_per_row as u64 * REC as u64) / target as u64 + 1).min(MAX_PARTS) as usize;
    let buf_bytes = (budget / 2 / parts).clamp(4 << 10, 64 << 10);
    let part_dir = work.join(PART);
    let _ = fs::remove_dir_all(&part_dir);
    fs::create_dir_all(&part_dir).at(&part_dir)?;
    // Each thread partitions a contiguous run of signature shards into its own set of
    // partition files (`PPPPP-TTT.bin`); the sort phase concatenates a partition's files.
    let writers_n = ctx.threads.max(1).min(offsets.len().max(1));
    let part_path = |p: usize, t: usize| part_dir.join(format!("{p:05}-{t:03}.bin"));
    let per = offsets.len().div_ceil(writers_n);
    let facts: Vec<(Vec<u32>, Vec<f32>, Vec<u64>)> = pool.install(|| {
        (0..writers_n)
            .into_par_iter()
            .map(|t| -> Result<(Vec<u32>, Vec<f32>, Vec<u64>), BoxError> {
                let mut writers = (0..parts)
                    .map(|p| File::create(part_path(p, t)).map(|f| BufWriter::with_capacity(buf_bytes, f)).at(part_path(p, t)))
                    .collect::<Result<Vec<_>, _>>()?;
                let (mut sizes, mut scores, mut idhs) = (vec![], vec![], vec![]);
                let mut rec = Vec::with_capacity(REC);
                for ord in (t * per)..((t + 1) * per).min(offsets.len()) {
                    let (pq, _) = sig_paths(&work, ord);
                    let mut g = offsets[ord] as u32;
                    for b in m6_pipeline::read_parquet(&pq, None, 8192)? {
                        let b = b?;
                        let size = b.column_by_name(C_SIZE).and_then(|c| c.as_any().downcast_ref::<UInt32Array>()).ok_or_else(|| werr(&pq, "bad size column"))?;
                        let score = b.column_by_name(C_SCORE).and_then(|c| c.as_any().downcast_ref::<Float32Array>()).ok_or_else(|| werr(&pq, "bad score column"))?;
                        let idh = b.column_by_name(C_IDHASH).and_then(|c| c.as_any().downcast_ref::<UInt64Array>()).ok_or_else(|| werr(&pq, "bad id_hash column"))?;
                        let bands = b.column_by_name(C_BANDS).and_then(|c| c.as_any().downcast_ref::<BinaryArray>()).ok_or_else(|| werr(&pq, "bad bands column"))?;
                        for r in 0..b.num_rows() {
                            sizes.push(size.value(r));
                            // Images carry their sharpness: the tie-break of `longest`.
                            if cfg.keep == KeepRule::Quality || kind != Kind::Document {
                                scores.push(score.value(r));
                            }
                            idhs.push(idh.value(r));
                            for x in bands.value(r).chunks_exact(24) {
                                let (key, order, flag) = (u64_of(x), u64_of(&x[8..]), u64_of(&x[16..]));
                                rec.clear();
                                put_rec(&mut rec, key, order, idh.value(r), g, flag);
                                let p = (fmix64(key) % parts as u64) as usize;
                                // The path is only formatted when the write fails: this runs per band key.
                                writers[p].write_all(&rec).map_err(|e| m6_pipeline::Error::io(part_path(p, t), e))?;
                            }
                            g += 1;
                        }
                    }
                }
                for (p, w) in writers.into_iter().enumerate() {
                    w.into_inner().map_err(|e| werr(&part_path(p, t), e.to_string()))?;
                }
                Ok((sizes, scores, idhs))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut keep = Keep { size: Vec::with_capacity(n), score: vec![], idhash: Vec::with_capacity(n), rule: cfg.keep };
    for (sizes, scores, idhs) in facts {
        keep.size.extend(sizes);
        keep.score.extend(scores);
        keep.idhash.extend(idhs);
    }
    info!(partitions = parts, secs = format!("{:.2}", t1.elapsed().as_secs_f64()), "dedup: band keys partitioned");

    // Group each partition by key (sort), verify candidates and link them at once. A
    // near-duplicate pair shares most of its bands: once linked, the later buckets
    // it meets skip the payload reads and the comparison.
    let t2 = std::time::Instant::now();
    let payloads = Payloads {
        files: (0..rows.len()).map(|o| File::open(sig_paths(&work, o).1).at(sig_paths(&work, o).1)).collect::<Result<Vec<_>, _>>()?,
        offsets: offsets.clone(),
        len: payload_len(cfg, kind),
    };
    let uf = SharedUf::new(n);
    let links = AtomicU64::new(0);
    pool.install(|| {
        (0..parts)
            .into_par_iter()
            .try_for_each(|p| -> Result<(), BoxError> {
                // Decoded straight from a small buffer: the raw bytes never sit in RAM
                // next to the records.
                let mut recs: Vec<Rec> = vec![];
                for t in 0..writers_n {
                    let path = part_path(p, t);
                    let file = File::open(&path).at(&path)?;
                    let len = file.metadata().at(&path)?.len() as usize;
                    recs.reserve(len / REC);
                    let mut rd = BufReader::with_capacity(64 << 10, file);
                    let mut one = [0u8; REC];
                    for _ in 0..len / REC {
                        rd.read_exact(&mut one).at(&path)?;
                        recs.push(get_rec(&one));
                    }
                }
                // Nearly every key is unique, so sort by key alone and order only the
                // (few, small) buckets by their tie-breakers.
                recs.sort_unstable_by_key(|r| r.key);
                let mut linked = 0u64;
                let mut cache: Vec<Option<Vec<u8>>> = vec![];
                let mut i = 0;
                while i < recs.len() {
                    let mut j = i + 1;
                    while j < recs.len() && recs[j].key == recs[i].key {
                        j += 1;
                    }
                    if j - i > 1 {
                        recs[i..j].sort_unstable_by_key(|r| (r.order, r.tie, r.g));
                    }
                    let bucket = &recs[i..j];
                    if bucket.len() > 1 {
                        if bucket[0].flag == EXACT {
                            for r in &bucket[1..] {
                                linked += uf.union(bucket[0].g, r.g) as u64;
                            }
                        } else {
                            cache.clear();
                            cache.resize(bucket.len(), None);
                            let load = |k: usize, cache: &mut Vec<Option<Vec<u8>>>| -> Result<(), BoxError> {
                                if cache[k].is_none() {
                                    let mut buf = vec![];
                                    payloads.read(bucket[k].g, &mut buf).map_err(|e| werr(&work, format!("reading payload: {e}")))?;
                                    cache[k] = Some(buf);
                                }
                                Ok(())
                            };
                            // Every verified pair within the window is an edge (no early
                            // exit), so the components do not depend on which pairs
                            // another thread linked first.
                            for m in 1..bucket.len() {
                                for prev in (m.saturating_sub(cfg.max_compare)..m).rev() {
                                    if uf.same(bucket[prev].g, bucket[m].g) {
                                        continue;
                                    }
                                    load(m, &mut cache)?;
                                    load(prev, &mut cache)?;
                                    if verify(cfg, kind, cache[m].as_ref().unwrap(), cache[prev].as_ref().unwrap()) {
                                        linked += uf.union(bucket[prev].g, bucket[m].g) as u64;
                                    }
                                }
                            }
                        }
                    }
                    i = j;
                }
                links.fetch_add(linked, Ordering::Relaxed);
                Ok(())
            })
    })?;
    let _ = fs::remove_dir_all(&part_dir);
    // Each component's representative is its best row by the keep rule; `parent`
    // ends up mapping every row straight to it.
    let mut best: Vec<u32> = (0..n as u32).collect();
    let mut root = vec![0u32; n];
    for g in 0..n as u32 {
        let r = uf.find(g);
        root[g as usize] = r;
        if keep.better(g, best[r as usize]) {
            best[r as usize] = g;
        }
    }
    drop(uf);
    let parent: Vec<u32> = root.iter().map(|&r| best[r as usize]).collect();
    drop((best, root));
    let n_edges = links.into_inner();
    info!(links = n_edges, secs = format!("{:.2}", t2.elapsed().as_secs_f64()), "dedup: clustered");

    // Ids of kept representatives, then one drop list per shard.
    let mut is_rep = vec![false; n];
    let mut removed = 0u64;
    for g in 0..n {
        let r = parent[g] as usize;
        if r != g {
            is_rep[r] = true;
            removed += 1;
        }
    }
    let mut rep_ids: HashMap<u32, String> = HashMap::new();
    for (ord, &off) in offsets.iter().enumerate() {
        let (pq, _) = sig_paths(&work, ord);
        let mut g = off as u32;
        for b in m6_pipeline::read_parquet(&pq, None, 8192)? {
            let b = b?;
            let ids = b.column_by_name(C_ID).and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>()).ok_or_else(|| werr(&pq, "bad id column"))?;
            for r in 0..b.num_rows() {
                if is_rep[g as usize] {
                    rep_ids.insert(g, ids.value(r).to_string());
                }
                g += 1;
            }
        }
    }
    drop(is_rep);
    let drop_dir = work.join(DROP);
    fs::create_dir_all(&drop_dir).at(&drop_dir)?;
    let parent = &parent;
    pool.install(|| {
        tasks.par_iter().enumerate().try_for_each(|(ord, t)| -> Result<(), BoxError> {
            let mut list = vec![];
            let (mut a, mut k) = (vec![], vec![]);
            for row in 0..rows[ord] {
                let g = (offsets[ord] + row) as u32;
                let r = parent[g as usize];
                if r == g {
                    continue;
                }
                payloads.read(g, &mut a).map_err(|e| werr(&work, format!("reading payload: {e}")))?;
                payloads.read(r, &mut k).map_err(|e| werr(&work, format!("reading payload: {e}")))?;
                let (similarity, reason) = explain(cfg, kind, &a, &k);
                list.push(DropEntry { row: row as u32, kept_id: rep_ids[&r].clone(), similarity, reason: reason.to_string() });
            }
            let path = drop_dir.join(format!("{}.json", t.id));
            write_atomic(&path, &serde_json::to_vec(&list)?)
        })
    })?;
    let done = Done { fingerprint: fp, documents: total, removed };
    write_atomic(&done_path, &serde_json::to_vec_pretty(&done)?)?;
    if removed == 0 && total > 0 {
        warn!("dedup found no duplicates");
    }
    info!(rows = total, removed, secs = format!("{:.2}", t0.elapsed().as_secs_f64()), "dedup: global phase done");
    Ok(work)
}
