//! The fluency language model: a character n-gram model with interpolated modified
//! Kneser–Ney smoothing (Chen & Goodman), trained by streaming a document dataset and
//! used by the filter's `perplexity` rule, as CCNet uses KenLM — without Python or KenLM.
//!
//! Symbols: each line of a document is a sentence; runs of whitespace become one space;
//! every sentence ends with `</s>` and its first characters see `<s>` padding as history.
//!
//! Memory during training is bounded by `max_ngrams`: n-grams are counted exactly in
//! hash maps keyed by the packed characters, and whenever the total number of stored
//! n-grams (orders ≥ 2) passes the budget, every n-gram of order ≥ 2 seen at most `t`
//! times is dropped and `t` goes up by one (lossy counting). Pruned counts make the
//! model approximate for rare n-grams, as count-pruned KenLM models are.
//!
//! # File format (version 1), all integers little-endian
//! ```text
//! magic    8 bytes  "M6CHARLM"
//! version  u32      1
//! order    u32      N (1..=6)
//! vocab    u64      number of distinct predicted symbols (characters and </s>) + 1 for unknown
//! for k in 1..=N:
//!   n      u64      number of k-grams
//!   keys   n × B    packed k-grams (21 bits per symbol, big end first), B = ceil(21k/8) bytes
//!   probs  n × f32  discounted probability term of the k-gram
//!   m      u64      number of (k-1)-symbol contexts
//!   keys   m × C    packed contexts, C = ceil(21(k-1)/8) bytes (0 for k = 1)
//!   gammas m × f32  interpolation weight of the context
//! blake3   32 bytes of everything above
//! ```
//! p_k(w|h) = probs_k[h·w] + gammas_k[h] · p_{k−1}(w|h′), with p_0 = 1/vocab; an unseen
//! context h stops the recursion at order k − 1.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"M6CHARLM";
pub const VERSION: u32 = 1;
pub const MAX_ORDER: usize = 6;
const BITS: u32 = 21;
const MASK: u128 = (1 << BITS) - 1;
/// History padding before a sentence's first character (not a Unicode scalar value).
const BOS: u32 = 0x1F_FFFE;
/// End of sentence, a predicted symbol.
const EOS: u32 = 0x1F_FFFD;

#[derive(Debug, Error)]
pub enum LmError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an m6corpus language model ({detail})")]
    Format { path: PathBuf, detail: String },
    #[error("order must be between 1 and {MAX_ORDER}, got {0}")]
    Order(usize),
    #[error("the training data has no text")]
    Empty,
}

/// A multiply-rotate hasher: the keys are already well-mixed packed characters, and
/// SipHash would dominate scoring time.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);
impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}
type Map<V> = HashMap<u128, V, BuildHasherDefault<KeyHasher>>;

/// Turns text into sentences of symbols (the text crate's sentence split: one per
/// non-blank line, whitespace runs → ' '), each ending in `</s>`.
pub fn sentences(text: &str) -> impl Iterator<Item = Vec<u32>> + '_ {
    m6_text::nonblank_lines(text).map(|line| {
        let mut s = Vec::with_capacity(line.len() + 1);
        m6_text::for_each_collapsed(line, |c| s.push(c as u32));
        s.push(EOS);
        s
    })
}

fn push(key: u128, sym: u32) -> u128 {
    (key << BITS) | sym as u128
}

/// Packs the `k` symbols ending at `i` (with `<s>` padding before the sentence).
fn pack(s: &[u32], i: usize, k: usize) -> u128 {
    let mut key = 0u128;
    for j in 0..k {
        let pos = i as isize - (k - 1 - j) as isize;
        key = push(key, if pos < 0 { BOS } else { s[pos as usize] });
    }
    key
}

/// Packs the `len` symbols before position `i` (with `<s>` padding).
fn history(s: &[u32], i: usize, len: usize) -> u128 {
    let mut key = 0u128;
    for j in 0..len {
        let pos = i as isize - (len - j) as isize;
        key = push(key, if pos < 0 { BOS } else { s[pos as usize] });
    }
    key
}

fn first_sym(key: u128, k: usize) -> u32 {
    ((key >> (BITS as usize * (k - 1))) & MASK) as u32
}

fn drop_first(key: u128, k: usize) -> u128 {
    key & ((1u128 << (BITS as usize * (k - 1))) - 1)
}

/// Counts n-grams while streaming text; turn it into a model with [`Counter::finish`].
pub struct Counter {
    order: usize,
    max_ngrams: usize,
    /// counts[k-1]: raw counts of k-grams.
    counts: Vec<Map<u32>>,
    prune_at: u32,
    pub chars: u64,
    pub pruned_rounds: u32,
}

impl Counter {
    pub fn new(order: usize, max_ngrams: usize) -> Result<Self, LmError> {
        if !(1..=MAX_ORDER).contains(&order) {
            return Err(LmError::Order(order));
        }
        Ok(Counter { order, max_ngrams: max_ngrams.max(1024), counts: (0..order).map(|_| Map::default()).collect(), prune_at: 1, chars: 0, pruned_rounds: 0 })
    }

    pub fn add_text(&mut self, text: &str) {
        for s in sentences(text) {
            self.chars += s.len() as u64;
            for i in 0..s.len() {
                for k in 1..=self.order {
                    *self.counts[k - 1].entry(pack(&s, i, k)).or_default() += 1;
                }
            }
            if self.stored() > self.max_ngrams {
                self.prune();
            }
        }
    }

    fn stored(&self) -> usize {
        self.counts[1..].iter().map(|m| m.len()).sum()
    }

    fn prune(&mut self) {
        while self.stored() > self.max_ngrams / 2 {
            let t = self.prune_at;
            for m in &mut self.counts[1..] {
                m.retain(|_, c| *c > t);
                m.shrink_to_fit();
            }
            self.prune_at += 1;
            self.pruned_rounds += 1;
        }
        tracing::debug!(threshold = self.prune_at, stored = self.stored(), "pruned n-gram counts");
    }

    /// Applies modified Kneser–Ney and returns the model.
    pub fn finish(self) -> Result<Model, LmError> {
        let n = self.order;
        if self.counts[0].is_empty() {
            return Err(LmError::Empty);
        }
        // Adjusted counts: raw for the top order and for n-grams that start with <s>
        // (they have no left context), continuation counts (distinct left extensions)
        // for the rest.
        let mut adjusted: Vec<Map<u32>> = Vec::with_capacity(n);
        for k in 1..=n {
            if k == n {
                adjusted.push(self.counts[k - 1].clone());
                continue;
            }
            let mut a: Map<u32> = Map::default();
            for (&key, &c) in &self.counts[k - 1] {
                if k > 1 && first_sym(key, k) == BOS {
                    a.insert(key, c);
                }
            }
            for &key in self.counts[k].keys() {
                let suffix = drop_first(key, k + 1);
                if k == 1 || first_sym(suffix, k) != BOS {
                    *a.entry(suffix).or_default() += 1;
                }
            }
            adjusted.push(a);
        }
        let vocab = self.counts[0].len() as u64 + 1;
        let mut probs = Vec::with_capacity(n);
        let mut gammas = Vec::with_capacity(n);
        for a in &adjusted {
            let d = discounts(a);
            // Per context: total, and how many continuations have count 1, 2, 3+.
            let mut ctx: Map<(u64, [u32; 3])> = Map::default();
            for (&key, &c) in a {
                let e = ctx.entry(key >> BITS).or_default();
                e.0 += c as u64;
                e.1[(c.min(3) - 1) as usize] += 1;
            }
            let mut p: Map<f32> = Map::default();
            for (&key, &c) in a {
                let total = ctx[&(key >> BITS)].0 as f64;
                let dc = d[(c.min(3) - 1) as usize];
                p.insert(key, ((c as f64 - dc).max(0.0) / total) as f32);
            }
            let g: Map<f32> = ctx
                .into_iter()
                .map(|(h, (total, nk))| (h, ((d[0] * nk[0] as f64 + d[1] * nk[1] as f64 + d[2] * nk[2] as f64) / total as f64) as f32))
                .collect();
            probs.push(p);
            gammas.push(g);
        }
        Ok(Model { order: n, vocab, probs, gammas })
    }
}

/// Chen & Goodman's discounts D1, D2, D3+ from the count-of-counts; falls back to
/// fixed discounts when the data is too small for the estimate.
fn discounts(a: &Map<u32>) -> [f64; 3] {
    let mut n = [0f64; 5];
    for &c in a.values() {
        if (1..=4).contains(&c) {
            n[c as usize] += 1.0;
        }
    }
    if n[1] == 0.0 || n[2] == 0.0 || n[3] == 0.0 || n[4] == 0.0 {
        return [0.5, 1.0, 1.5];
    }
    let y = n[1] / (n[1] + 2.0 * n[2]);
    let d = [1.0 - 2.0 * y * n[2] / n[1], 2.0 - 3.0 * y * n[3] / n[2], 3.0 - 4.0 * y * n[4] / n[3]];
    // Each discount must stay below its count, or probabilities go negative.
    [d[0].clamp(0.05, 0.95), d[1].clamp(0.05, 1.95), d[2].clamp(0.05, 2.95)]
}

/// A trained model, ready to score text.
pub struct Model {
    order: usize,
    vocab: u64,
    /// probs[k-1]: k-gram → discounted probability term.
    probs: Vec<Map<f32>>,
    /// gammas[k-1]: (k-1)-symbol context → interpolation weight.
    gammas: Vec<Map<f32>>,
}

fn key_bytes(k: usize) -> usize {
    (BITS as usize * k).div_ceil(8)
}

impl Model {
    pub fn order(&self) -> usize {
        self.order
    }

    pub fn ngrams(&self) -> usize {
        self.probs.iter().map(|m| m.len()).sum()
    }

    /// Natural-log probability of symbol `i` of sentence `s` given its history.
    fn log_prob(&self, s: &[u32], i: usize) -> f64 {
        let mut p = 1.0 / self.vocab as f64;
        let w = s[i];
        for k in 1..=self.order {
            let h = history(s, i, k - 1);
            let Some(&g) = self.gammas[k - 1].get(&h) else { break };
            let q = self.probs[k - 1].get(&push(h, w)).copied().unwrap_or(0.0);
            p = q as f64 + g as f64 * p;
        }
        p.max(f64::MIN_POSITIVE).ln()
    }

    /// Sum of natural-log probabilities and the number of predicted symbols.
    pub fn score(&self, text: &str) -> (f64, u64) {
        let (mut lp, mut n) = (0.0, 0u64);
        for s in sentences(text) {
            for i in 0..s.len() {
                lp += self.log_prob(&s, i);
            }
            n += s.len() as u64;
        }
        (lp, n)
    }

    /// Per-symbol perplexity of `text` (`1.0` for text without symbols).
    pub fn perplexity(&self, text: &str) -> f64 {
        let (lp, n) = self.score(text);
        if n == 0 {
            1.0
        } else {
            (-lp / n as f64).exp()
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), LmError> {
        let io = |e| LmError::Io { path: path.to_path_buf(), source: e };
        let tmp = path.with_extension("tmp");
        let f = std::fs::File::create(&tmp).map_err(io)?;
        let mut w = HashingWriter { inner: BufWriter::new(f), hash: blake3::Hasher::new() };
        w.write_all(MAGIC).map_err(io)?;
        w.write_all(&VERSION.to_le_bytes()).map_err(io)?;
        w.write_all(&(self.order as u32).to_le_bytes()).map_err(io)?;
        w.write_all(&self.vocab.to_le_bytes()).map_err(io)?;
        for k in 1..=self.order {
            // Sorted, so the same counts always give the same file.
            for (map, kk) in [(&self.probs[k - 1], k), (&self.gammas[k - 1], k - 1)] {
                let mut entries: Vec<(u128, f32)> = map.iter().map(|(a, b)| (*a, *b)).collect();
                entries.sort_unstable_by_key(|e| e.0);
                w.write_all(&(entries.len() as u64).to_le_bytes()).map_err(io)?;
                let nb = key_bytes(kk);
                for (key, _) in &entries {
                    w.write_all(&key.to_le_bytes()[..nb]).map_err(io)?;
                }
                for (_, v) in &entries {
                    w.write_all(&v.to_le_bytes()).map_err(io)?;
                }
            }
        }
        let digest = w.hash.finalize();
        w.inner.write_all(digest.as_bytes()).map_err(io)?;
        w.inner.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    pub fn load(path: &Path) -> Result<Model, LmError> {
        let io = |e| LmError::Io { path: path.to_path_buf(), source: e };
        let bad = |d: &str| LmError::Format { path: path.to_path_buf(), detail: d.to_string() };
        let f = std::fs::File::open(path).map_err(io)?;
        let mut r = HashingReader { inner: BufReader::new(f), hash: blake3::Hasher::new() };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(|_| bad("file too short"))?;
        if &magic != MAGIC {
            return Err(bad("bad magic bytes"));
        }
        let version = read_u32(&mut r).map_err(|_| bad("truncated header"))?;
        if version != VERSION {
            return Err(bad(&format!("format version {version}, this build reads {VERSION}")));
        }
        let order = read_u32(&mut r).map_err(|_| bad("truncated header"))? as usize;
        if !(1..=MAX_ORDER).contains(&order) {
            return Err(bad(&format!("order {order}")));
        }
        let vocab = read_u64(&mut r).map_err(|_| bad("truncated header"))?;
        let (mut probs, mut gammas) = (vec![], vec![]);
        let file_len = std::fs::metadata(path).map_err(io)?.len();
        for k in 1..=order {
            for (kk, is_probs) in [(k, true), (k - 1, false)] {
                let n = read_u64(&mut r).map_err(|_| bad("truncated"))?;
                // A count larger than the file is corruption, not a reason to allocate.
                if n > file_len {
                    return Err(bad("entry count larger than the file"));
                }
                let nb = key_bytes(kk);
                let mut keys = vec![0u8; n as usize * nb];
                r.read_exact(&mut keys).map_err(|_| bad("truncated"))?;
                let mut vals = vec![0u8; n as usize * 4];
                r.read_exact(&mut vals).map_err(|_| bad("truncated"))?;
                let mut map: Map<f32> = Map::with_capacity_and_hasher(n as usize, Default::default());
                for (kb, vb) in keys.chunks_exact(nb.max(1)).zip(vals.chunks_exact(4)).take(n as usize) {
                    let mut b = [0u8; 16];
                    b[..nb].copy_from_slice(&kb[..nb]);
                    map.insert(u128::from_le_bytes(b), f32::from_le_bytes(vb.try_into().unwrap()));
                }
                if nb == 0 {
                    // The empty context: one entry, no key bytes.
                    map.clear();
                    if n == 1 {
                        map.insert(0, f32::from_le_bytes(vals[..4].try_into().unwrap()));
                    }
                }
                if is_probs { probs.push(map) } else { gammas.push(map) }
            }
        }
        let digest = r.hash.finalize();
        let mut stored = [0u8; 32];
        r.inner.read_exact(&mut stored).map_err(|_| bad("missing checksum"))?;
        if digest.as_bytes() != &stored {
            return Err(bad("checksum mismatch (corrupt file)"));
        }
        Ok(Model { order, vocab, probs, gammas })
    }

    /// blake3 of the model file, recorded in manifests for reproducibility.
    pub fn file_hash(path: &Path) -> Result<String, LmError> {
        let bytes = std::fs::read(path).map_err(|e| LmError::Io { path: path.to_path_buf(), source: e })?;
        Ok(blake3::hash(&bytes).to_hex().to_string())
    }
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: blake3::Hasher,
}
impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R: Read> {
    inner: R,
    hash: blake3::Hasher,
}
impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}
fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。\n白日依山盡，黃河入海流。\n欲窮千里目，更上一層樓。\n";

    fn model(order: usize) -> Model {
        let mut c = Counter::new(order, 1 << 20).unwrap();
        for _ in 0..3 {
            c.add_text(TEXT);
        }
        c.finish().unwrap()
    }

    #[test]
    fn probabilities_sum_to_one() {
        let m = model(3);
        // Over every predicted symbol in the vocabulary plus the unknown mass.
        let mut vocab: Vec<u32> = sentences(TEXT).flatten().collect();
        vocab.sort();
        vocab.dedup();
        for hist in [vec![], vec!['明' as u32], vec!['明' as u32, '月' as u32], vec!['x' as u32, '月' as u32]] {
            let mut total = 0.0;
            for &w in &vocab {
                let mut s = hist.clone();
                s.push(w);
                total += m.log_prob(&s, s.len() - 1).exp();
            }
            let unk = 1.0 - total;
            // The unknown symbol gets exactly the uniform share of the lowest order.
            let mut s = hist.clone();
            s.push('Ω' as u32);
            let p_unk = m.log_prob(&s, s.len() - 1).exp();
            assert!((unk - p_unk).abs() < 1e-4, "history {hist:?}: seen {total}, unknown {p_unk}");
        }
    }

    #[test]
    fn save_load_roundtrip_and_corruption() {
        let m = model(4);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.lm");
        m.save(&p).unwrap();
        let l = Model::load(&p).unwrap();
        assert_eq!(l.order(), 4);
        assert_eq!(l.ngrams(), m.ngrams());
        let t = "舉頭望明月";
        assert!((l.perplexity(t) - m.perplexity(t)).abs() < 1e-6);
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
        std::fs::write(&p, &bytes).unwrap();
        let e = Model::load(&p).err().unwrap().to_string();
        assert!(e.contains("checksum") || e.contains("truncated") || e.contains("larger"), "{e}");
        std::fs::write(&p, b"hello").unwrap();
        assert!(Model::load(&p).err().unwrap().to_string().contains("not an m6corpus language model"));
    }

    #[test]
    fn pruning_bounds_memory() {
        let mut c = Counter::new(5, 1024).unwrap();
        let text: String = (0..3000u32).map(|i| char::from_u32(0x4E00 + (i * 7919) % 2000).unwrap()).collect();
        c.add_text(&text);
        assert!(c.stored() <= 1024, "{}", c.stored());
        assert!(c.pruned_rounds > 0);
        let m = c.finish().unwrap();
        assert!(m.perplexity(&text[..30]).is_finite());
    }

    #[test]
    fn bad_order() {
        assert!(matches!(Counter::new(0, 10), Err(LmError::Order(0))));
        assert!(matches!(Counter::new(7, 10), Err(LmError::Order(7))));
    }
}
