//! A fastText-style text quality classifier, trained and scored in Rust.
//!
//! A document becomes a bag of hashed features: character n-grams (lengths
//! `char_min..=char_max`, ASCII lower-cased, digits folded to `0`, whitespace runs as
//! one space) and jieba word n-grams (unigrams up to `word_ngrams`-grams). Each feature
//! picks one row of an embedding table (`buckets` × `dim`); the document vector is the
//! mean of its rows, and a linear layer (2 × `dim`) with a softmax gives the probability
//! that the document belongs to the positive (reference) class — the architecture of
//! fastText's supervised mode (Joulin et al., "Bag of Tricks for Efficient Text
//! Classification", 2017).
//!
//! Training is plain SGD on the cross-entropy with fastText's linearly decaying
//! learning rate, on one thread, with every random choice (output-layer init, the
//! example order of each epoch) drawn from a SplitMix64 stream seeded by `seed`: the
//! same data, parameters and seed give the same model bytes. (fastText itself trains
//! Hogwild on several threads and is not reproducible.) The embedding table starts at
//! zero so that rows no feature touched stay zero and the file stores only the rows
//! that were learned.
//!
//! Scoring never reads the embedding table: the logit gap of the two classes is linear
//! in the document vector, so each bucket's row is folded into one float on load
//! (`gap[r] = (output[0] − output[1]) · emb[r]`, kept as 16-bit fixed point) and a
//! document's score is the logistic of minus the mean `gap` of its features — one
//! 2-byte read per feature from a 1 MB table (at 2^19 buckets) that stays in cache,
//! instead of a 64-byte row of a 32 MB one. The features are hashed as the text streams
//! past, without a feature list. Scores equal the dense computation (mean row, both
//! output rows, softmax; what training uses) up to the fixed point's rounding (see
//! [`Model::score_features`]); the file and training are unchanged.
//!
//! # File format (version 1), integers and floats little-endian
//! ```text
//! magic       8 bytes  "M6QUALTY"
//! version     u32      1
//! dim         u32      embedding size
//! buckets     u32      rows of the embedding table (features are hashed into them)
//! char_min    u32      shortest character n-gram (0: no character features)
//! char_max    u32      longest character n-gram
//! word_ngrams u32      longest jieba word n-gram (0: no word features)
//! max_chars   u32      only the first max_chars characters are featurised (0: all)
//! epochs      u32      training epochs (a record; not needed to score)
//! lr          f32      initial learning rate (a record)
//! seed        u64      seed (a record)
//! output      2 × dim × f32   row 0 = negative class, row 1 = positive class
//! rows        u32      number of stored (non-zero) embedding rows
//! rows × { index u32, dim × f32 }   in increasing index order
//! blake3      32 bytes of everything above
//! ```
//! The hash functions are part of the format: features are FNV-1a-style products over
//! the characters' scalar values (characters) or the words' UTF-8 bytes (words) with a
//! per-kind salt, finished with SplitMix64's mixer, modulo `buckets`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"M6QUALTY";
pub const VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum QualityError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an m6corpus quality model ({detail})")]
    Format { path: PathBuf, detail: String },
    #[error("invalid parameter: {0}")]
    Params(String),
    #[error("training needs examples of both classes (got {positive} positive, {negative} negative)")]
    OneClass { positive: usize, negative: usize },
}

/// The workspace's one jieba segmenter (m6-text's), re-exported for callers of this crate.
pub use m6_text::jieba;

/// Model shape, features and training settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Embedding size. Default 16 (fastText's quality classifiers use 10–256; on our
    /// benchmark 16 matched 64 in accuracy at a quarter of the cost).
    pub dim: usize,
    /// Hash buckets. Default 2^19.
    pub buckets: usize,
    /// Character n-gram lengths. Default 1..=3.
    pub char_min: usize,
    pub char_max: usize,
    /// Word n-grams up to this length (1 = unigrams only, 0 = none). Default 2.
    pub word_ngrams: usize,
    /// Featurise only the first this many characters (0: all). Default 5000: the head
    /// of a document says as much about its quality as the rest, at bounded cost.
    pub max_chars: usize,
    /// Passes over the training set. Default 10.
    pub epochs: usize,
    /// Initial learning rate, decayed linearly to 0. Default 0.5 (on the handbook
    /// prose-vs-junk set, 10 epochs at 0.2 left the word-salad negatives at 62%
    /// held-out; 0.5 reached 97% overall, as 20 epochs at 0.2 did at twice the cost).
    pub lr: f32,
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params { dim: 16, buckets: 1 << 19, char_min: 1, char_max: 3, word_ngrams: 2, max_chars: 5000, epochs: 10, lr: 0.5, seed: 1 }
    }
}

impl Params {
    pub fn validate(&self) -> Result<(), QualityError> {
        let bad = |m: String| Err(QualityError::Params(m));
        if self.dim == 0 || self.dim > 1024 {
            return bad(format!("dim = {} must be between 1 and 1024", self.dim));
        }
        if self.buckets == 0 || self.buckets > (1 << 26) {
            return bad(format!("buckets = {} must be between 1 and 2^26", self.buckets));
        }
        if self.char_min > self.char_max || self.char_max > 16 {
            return bad(format!("char n-gram lengths {}..={} must satisfy char_min <= char_max <= 16", self.char_min, self.char_max));
        }
        if self.char_min == 0 && self.char_max > 0 {
            return bad("char_min = 0 turns character features off; set char_max = 0 too".into());
        }
        if self.char_max == 0 && self.word_ngrams == 0 {
            return bad("no features: both character and word n-grams are off".into());
        }
        if self.word_ngrams > 5 {
            return bad(format!("word_ngrams = {} must be at most 5", self.word_ngrams));
        }
        if !(self.lr > 0.0 && self.lr < 10.0) || self.epochs == 0 {
            return bad(format!("lr = {} must be in (0, 10) and epochs = {} at least 1", self.lr, self.epochs));
        }
        Ok(())
    }
}

/// SplitMix64: the seeded random stream and the hash finaliser.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);
impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as u128 * n as u128 >> 53) as usize
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const SALT_CHAR: u64 = 0x6368_6172; // "char"
const SALT_WORD: u64 = 0x776f_7264; // "word"

fn word_hash(w: &str) -> u64 {
    let mut h = FNV_OFFSET ^ SALT_WORD;
    for b in w.bytes() {
        h = (h ^ b.to_ascii_lowercase() as u64).wrapping_mul(FNV_PRIME);
    }
    h
}

/// jieba segments each run of [`m6_text::in_jieba_block`] characters on its own, so cutting a
/// prefix that ends where such a run ends gives the same words as cutting the whole text.
/// The end of the run that `at` falls in.
fn block_end(text: &str, at: usize) -> usize {
    match text[at..].char_indices().find(|(_, c)| !m6_text::in_jieba_block(*c)) {
        Some((i, _)) => at + i,
        None => text.len(),
    }
}


/// Turns text into feature row indices.
#[derive(Debug, Clone)]
pub struct Featurizer {
    char_min: usize,
    char_max: usize,
    word_ngrams: usize,
    max_chars: usize,
    buckets: u64,
}

impl Featurizer {
    pub fn new(p: &Params) -> Self {
        Featurizer { char_min: p.char_min, char_max: p.char_max, word_ngrams: p.word_ngrams, max_chars: p.max_chars, buckets: p.buckets as u64 }
    }

    /// Appends the features of `text` to `out` (cleared first).
    pub fn features(&self, text: &str, out: &mut Vec<u32>) {
        let words = if self.word_ngrams > 0 { jieba().cut(&text[..block_end(text, self.head(text).len())], false) } else { vec![] };
        self.features_with_words(text, &words, out)
    }

    /// Feature hash → bucket. A power-of-two table (the default) takes the low bits:
    /// the same bucket as the modulo without a 64-bit division per feature.
    fn bucket_fn(&self) -> impl Fn(u64) -> u32 {
        let buckets = self.buckets;
        let mask = if buckets.is_power_of_two() { buckets - 1 } else { 0 };
        move |h: u64| if mask != 0 { (mix(h) & mask) as u32 } else { (mix(h) % buckets) as u32 }
    }

    /// Calls `f` with the hash of every word 1..=`word_ngrams`-gram of the words that
    /// start inside the featurised head (its first `head_len` bytes of `full`; the
    /// words are slices of `full`, so their pointer offsets say where they start).
    fn word_features(&self, full: &str, head_len: usize, words: &[&str], mut f: impl FnMut(u64)) {
        if self.word_ngrams == 0 {
            return;
        }
        let mut hist = [0u64; 5];
        let mut seen = 0usize;
        let base = full.as_ptr() as usize;
        for &w in words {
            let at = (w.as_ptr() as usize).wrapping_sub(base);
            if at >= head_len {
                break;
            }
            if w.chars().all(char::is_whitespace) {
                continue;
            }
            let h = if w.bytes().all(|b| b.is_ascii_digit()) { word_hash("0") } else { word_hash(w) };
            hist.rotate_right(1);
            hist[0] = h;
            seen += 1;
            // n-gram hash: fastText's combination h = h * 116049371 + next, salted by n.
            let mut g = 0u64;
            for n in 1..=self.word_ngrams.min(seen) {
                g = g.wrapping_mul(116_049_371).wrapping_add(hist[n - 1]);
                f(g ^ (n as u64).wrapping_mul(0x9E37_79B9));
            }
        }
    }

    /// The part of `text` that is featurised.
    fn head<'t>(&self, text: &'t str) -> &'t str {
        match self.max_chars {
            0 => text,
            m => match text.char_indices().nth(m) {
                Some((end, _)) => &text[..end],
                None => text,
            },
        }
    }

    /// Like [`Featurizer::features`], with the jieba segmentation of `text` (or of a
    /// prefix of it) already made — the filter's word n-gram rules cut the same text, so
    /// the classifier reuses their words instead of segmenting twice. Words that start
    /// past the featurised head are ignored.
    pub fn features_with_words(&self, text: &str, words: &[&str], out: &mut Vec<u32>) {
        out.clear();
        let full = text;
        let text = self.head(text);
        let bucket = self.bucket_fn();
        if self.char_max > 0 {
            // Normalised characters: ASCII lower case, digits as 0, whitespace runs as ' '.
            let mut cs: Vec<u32> = Vec::with_capacity(text.len());
            let mut space = true;
            for c in text.chars() {
                if c.is_whitespace() {
                    if !space {
                        cs.push(' ' as u32);
                    }
                    space = true;
                    continue;
                }
                space = false;
                let c = if c.is_ascii_digit() { '0' } else { c.to_ascii_lowercase() };
                cs.push(c as u32);
            }
            for n in self.char_min..=self.char_max {
                if cs.len() < n {
                    break;
                }
                let salt = SALT_CHAR.wrapping_add(n as u64);
                for w in cs.windows(n) {
                    let mut h = FNV_OFFSET ^ salt;
                    for &c in w {
                        h = (h ^ c as u64).wrapping_mul(FNV_PRIME);
                    }
                    out.push(bucket(h));
                }
            }
        }
        self.word_features(full, text.len(), words, |h| out.push(bucket(h)));
    }
}

impl Featurizer {
    /// Calls `f` with the bucket of every feature of `text` that
    /// [`Featurizer::features_with_words`] gives — the same multiset of buckets, in another
    /// order — without building a feature list: the character n-grams are hashed as the
    /// characters stream past (a ring of the last `char_max` normalised characters), so
    /// scoring makes one pass over the text and allocates nothing.
    #[inline]
    pub fn for_each_feature(&self, text: &str, words: &[&str], mut f: impl FnMut(u32)) {
        let full = text;
        let text = self.head(text);
        let bucket = self.bucket_fn();
        if self.char_max > 0 {
            let (lo, hi) = (self.char_min, self.char_max);
            // ring[k % 16]: the k-th normalised character (char_max <= 16, validated).
            let mut ring = [0u32; 16];
            let mut k = 0usize;
            let mut space = true;
            let mut push = |c: u32, ring: &mut [u32; 16], k: &mut usize| {
                ring[*k & 15] = c;
                *k += 1;
                // The n-grams that end at this character, n = lo..=min(hi, k).
                for n in lo..=hi.min(*k) {
                    let mut h = FNV_OFFSET ^ SALT_CHAR.wrapping_add(n as u64);
                    for j in *k - n..*k {
                        h = (h ^ ring[j & 15] as u64).wrapping_mul(FNV_PRIME);
                    }
                    f(bucket(h));
                }
            };
            for c in text.chars() {
                if c.is_whitespace() {
                    if !space {
                        push(' ' as u32, &mut ring, &mut k);
                    }
                    space = true;
                    continue;
                }
                space = false;
                let c = if c.is_ascii_digit() { '0' } else { c.to_ascii_lowercase() };
                push(c as u32, &mut ring, &mut k);
            }
        }
        self.word_features(full, text.len(), words, |h| f(bucket(h)));
    }
}

/// A trained classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub params: Params,
    /// 2 × dim: row 0 negative, row 1 positive.
    output: Vec<f32>,
    /// buckets × dim.
    emb: Vec<f32>,
    /// Per bucket, the row's contribution to the logit gap: `gap[r] = (output[0] −
    /// output[1]) · emb[r]`. The two-class softmax depends on the document vector only
    /// through `(output[0] − output[1]) · h`, and `h` is the mean of the feature rows, so
    /// the gap is the mean of the features' `gap` values: scoring reads one i16 per
    /// feature (a 1 MB table at the default 2^19 buckets, cache-resident) instead of a
    /// `dim`-float row of the 32 MB embedding table. Fixed point: the gap is
    /// `gap[r] × gap_scale`, `gap_scale` = the largest |gap| / 32767 (rounding moves a
    /// document's mean gap by at most `gap_scale / 2`); the integer sum is exact, so the
    /// score does not depend on the order of the features. Derived (at training's end
    /// and on load), not stored in the file.
    gap: Vec<i16>,
    gap_scale: f64,
    featurizer: Featurizer,
}

impl PartialEq for Featurizer {
    fn eq(&self, o: &Self) -> bool {
        (self.char_min, self.char_max, self.word_ngrams, self.max_chars, self.buckets) == (o.char_min, o.char_max, o.word_ngrams, o.max_chars, o.buckets)
    }
}

/// One training document: its features and whether it is positive.
#[derive(Debug, Clone)]
pub struct Example {
    pub features: Vec<u32>,
    pub positive: bool,
}

/// Held-out evaluation at a 0.5 threshold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Eval {
    pub examples: usize,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    /// Mean cross-entropy (nats).
    pub log_loss: f64,
}

impl Model {
    fn blank(params: Params) -> Result<Model, QualityError> {
        params.validate()?;
        let featurizer = Featurizer::new(&params);
        Ok(Model { output: vec![0.0; 2 * params.dim], emb: vec![0.0; params.buckets * params.dim], gap: vec![0; params.buckets], gap_scale: 1.0, featurizer, params })
    }

    /// Fills [`Model::gap`] from the output layer and the embedding table (f64 dot
    /// products, then fixed point).
    /// `rows`: the rows that may be non-zero (the others' gap stays 0).
    fn derive_gap(&mut self, rows: impl Iterator<Item = usize> + Clone) {
        let d = self.params.dim;
        let w: Vec<f64> = (0..d).map(|t| self.output[t] as f64 - self.output[d + t] as f64).collect();
        let emb = &self.emb;
        let exact = |r: usize| -> f64 { emb[r * d..(r + 1) * d].iter().zip(&w).map(|(&x, &y)| x as f64 * y).sum() };
        let max = rows.clone().fold(0f64, |m, r| m.max(exact(r).abs()));
        self.gap_scale = if max > 0.0 { max / i16::MAX as f64 } else { 1.0 };
        let mut gap = std::mem::take(&mut self.gap);
        gap.iter_mut().for_each(|g| *g = 0);
        for r in rows {
            gap[r] = (exact(r) / self.gap_scale).round() as i16;
        }
        self.gap = gap;
    }

    pub fn featurizer(&self) -> &Featurizer {
        &self.featurizer
    }

    /// Trains on `examples` (in this order, reshuffled each epoch from the seed).
    pub fn train(params: Params, examples: &[Example]) -> Result<Model, QualityError> {
        let positive = examples.iter().filter(|e| e.positive).count();
        let negative = examples.len() - positive;
        if positive == 0 || negative == 0 {
            return Err(QualityError::OneClass { positive, negative });
        }
        let mut m = Model::blank(params)?;
        let d = m.params.dim;
        let mut rng = SplitMix(m.params.seed);
        // fastText draws its input embeddings from U(-1/dim, 1/dim) and zeros the output
        // layer; the roles are swapped here so untouched embedding rows stay zero.
        for w in m.output.iter_mut() {
            *w = rng.unit() / d as f32;
        }
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let total = (m.params.epochs * examples.len()) as f64;
        let mut step = 0usize;
        let mut h = vec![0.0f32; d];
        let mut grad = vec![0.0f32; d];
        for _ in 0..m.params.epochs {
            for i in (1..order.len()).rev() {
                let j = rng.below(i + 1);
                order.swap(i, j);
            }
            for &k in &order {
                let lr = m.params.lr * (1.0 - step as f64 / total) as f32;
                step += 1;
                let ex = &examples[k];
                if ex.features.is_empty() {
                    continue;
                }
                m.hidden(&ex.features, &mut h);
                let p = m.prob(&h);
                grad.iter_mut().for_each(|g| *g = 0.0);
                for (label, pl) in [(0usize, 1.0 - p), (1, p)] {
                    let y = (ex.positive as usize == label) as u8 as f32;
                    let alpha = lr * (y - pl);
                    let row = &mut m.output[label * d..(label + 1) * d];
                    for t in 0..d {
                        grad[t] += alpha * row[t];
                        row[t] += alpha * h[t];
                    }
                }
                let scale = 1.0 / ex.features.len() as f32;
                for &f in &ex.features {
                    let row = &mut m.emb[f as usize * d..(f as usize + 1) * d];
                    for t in 0..d {
                        row[t] += grad[t] * scale;
                    }
                }
            }
        }
        m.derive_gap(0..m.params.buckets);
        Ok(m)
    }

    /// Mean embedding of the features.
    fn hidden(&self, features: &[u32], h: &mut [f32]) {
        let d = self.params.dim;
        h.iter_mut().for_each(|x| *x = 0.0);
        for &f in features {
            let row = &self.emb[f as usize * d..(f as usize + 1) * d];
            for t in 0..d {
                h[t] += row[t];
            }
        }
        let s = 1.0 / features.len().max(1) as f32;
        h.iter_mut().for_each(|x| *x *= s);
    }

    /// P(positive | hidden): the two-class softmax, as a logistic of the logit gap.
    fn prob(&self, h: &[f32]) -> f32 {
        let d = self.params.dim;
        let (mut z0, mut z1) = (0.0f32, 0.0f32);
        for t in 0..d {
            z0 += self.output[t] * h[t];
            z1 += self.output[d + t] * h[t];
        }
        1.0 / (1.0 + (z0 - z1).exp())
    }

    /// P(positive) from the sum of the features' logit gaps (see [`Model::gap`]) and
    /// their number: 0.5 without features.
    #[inline]
    fn prob_of_gap(&self, sum: i64, n: usize) -> f32 {
        if n == 0 {
            return 0.5;
        }
        (1.0 / (1.0 + (sum as f64 * self.gap_scale / n as f64).exp())) as f32
    }

    /// Probability (in [0, 1]) that pre-computed features come from the positive class.
    /// Equals [`Model::score_features_dense`] up to the gap table's fixed-point rounding:
    /// the mean gap moves by at most `gap_scale / 2`, the probability by at most a quarter
    /// of that (max |gap| / 262,136; 1.3e-3 for the bench model, whose largest |gap| is
    /// 343, and far less in practice as the roundings cancel; below 1e-4 in the tests).
    pub fn score_features(&self, features: &[u32]) -> f32 {
        let sum: i64 = features.iter().map(|&f| self.gap[f as usize] as i64).sum();
        self.prob_of_gap(sum, features.len())
    }

    /// The reference computation of [`Model::score_features`], as training sees the
    /// model: the mean embedding row, both output rows, the softmax.
    pub fn score_features_dense(&self, features: &[u32]) -> f32 {
        if features.is_empty() {
            return 0.5;
        }
        // dim is at most 1024 (validated): no allocation per document.
        let mut h = [0.0f32; 1024];
        let h = &mut h[..self.params.dim];
        self.hidden(features, h);
        self.prob(h)
    }

    /// [`Model::score`] with the jieba words of `text` already cut (see
    /// [`Featurizer::features_with_words`]).
    pub fn score_with_words(&self, text: &str, words: &[&str]) -> f32 {
        let (mut sum, mut n) = (0i64, 0usize);
        let gap = &self.gap[..];
        self.featurizer.for_each_feature(text, words, |f| {
            sum += gap[f as usize] as i64;
            n += 1;
        });
        self.prob_of_gap(sum, n)
    }

    /// Whether scoring needs jieba words.
    pub fn uses_words(&self) -> bool {
        self.params.word_ngrams > 0
    }

    /// Probability (in [0, 1]) that `text` resembles the positive class.
    pub fn score(&self, text: &str) -> f32 {
        let f = &self.featurizer;
        let words = if f.word_ngrams > 0 { jieba().cut(&text[..block_end(text, f.head(text).len())], false) } else { vec![] };
        self.score_with_words(text, &words)
    }

    /// Accuracy, precision and recall of the positive class at 0.5, and log loss.
    pub fn evaluate(&self, examples: &[Example]) -> Eval {
        let (mut tp, mut fp, mut tn, mut fnn, mut loss) = (0usize, 0usize, 0usize, 0usize, 0f64);
        for e in examples {
            let p = self.score_features(&e.features) as f64;
            let pc = if e.positive { p } else { 1.0 - p };
            loss -= pc.max(1e-7).ln();
            match (p >= 0.5, e.positive) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, false) => tn += 1,
                (false, true) => fnn += 1,
            }
        }
        let n = examples.len().max(1) as f64;
        Eval {
            examples: examples.len(),
            accuracy: (tp + tn) as f64 / n,
            precision: tp as f64 / (tp + fp).max(1) as f64,
            recall: tp as f64 / (tp + fnn).max(1) as f64,
            log_loss: loss / n,
        }
    }

    /// The model file's bytes (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = &self.params;
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        for v in [VERSION, p.dim as u32, p.buckets as u32, p.char_min as u32, p.char_max as u32, p.word_ngrams as u32, p.max_chars as u32, p.epochs as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&p.lr.to_le_bytes());
        b.extend_from_slice(&p.seed.to_le_bytes());
        for w in &self.output {
            b.extend_from_slice(&w.to_le_bytes());
        }
        let d = p.dim;
        let rows: Vec<usize> = (0..p.buckets).filter(|&r| self.emb[r * d..(r + 1) * d].iter().any(|x| *x != 0.0)).collect();
        b.extend_from_slice(&(rows.len() as u32).to_le_bytes());
        for r in rows {
            b.extend_from_slice(&(r as u32).to_le_bytes());
            for w in &self.emb[r * d..(r + 1) * d] {
                b.extend_from_slice(&w.to_le_bytes());
            }
        }
        let hash = blake3::hash(&b);
        b.extend_from_slice(hash.as_bytes());
        b
    }

    /// Writes the model atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), QualityError> {
        let io = |e| QualityError::Io { path: path.to_path_buf(), source: e };
        let tmp = path.with_extension("tmp-write");
        {
            let f = std::fs::File::create(&tmp).map_err(io)?;
            let mut w = BufWriter::new(f);
            w.write_all(&self.to_bytes()).map_err(io)?;
            w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    pub fn from_bytes(b: &[u8], path: &Path) -> Result<Model, QualityError> {
        let bad = |d: &str| QualityError::Format { path: path.to_path_buf(), detail: d.to_string() };
        if b.len() < 8 + 4 * 8 + 4 + 8 + 4 + 32 || &b[..8] != MAGIC {
            return Err(bad("wrong magic or too short"));
        }
        let (body, hash) = b.split_at(b.len() - 32);
        if blake3::hash(body).as_bytes() != hash {
            return Err(bad("checksum mismatch: the file is truncated or corrupt"));
        }
        let mut r = body;
        r = &r[8..];
        let mut u32s = [0u32; 8];
        for v in u32s.iter_mut() {
            *v = take_u32(&mut r).ok_or_else(|| bad("short header"))?;
        }
        let [version, dim, buckets, char_min, char_max, word_ngrams, max_chars, epochs] = u32s;
        if version != VERSION {
            return Err(bad(&format!("version {version}, this build reads {VERSION}")));
        }
        let lr = f32::from_bits(take_u32(&mut r).ok_or_else(|| bad("short header"))?);
        let seed = take_u64(&mut r).ok_or_else(|| bad("short header"))?;
        let params = Params {
            dim: dim as usize,
            buckets: buckets as usize,
            char_min: char_min as usize,
            char_max: char_max as usize,
            word_ngrams: word_ngrams as usize,
            max_chars: max_chars as usize,
            epochs: epochs as usize,
            lr,
            seed,
        };
        let mut m = Model::blank(params).map_err(|e| bad(&e.to_string()))?;
        let d = m.params.dim;
        for w in m.output.iter_mut() {
            *w = f32::from_bits(take_u32(&mut r).ok_or_else(|| bad("short output layer"))?);
        }
        let rows = take_u32(&mut r).ok_or_else(|| bad("short row count"))? as usize;
        if r.len() != rows * 4 * (d + 1) {
            return Err(bad(&format!("{rows} rows of dim {d} do not fill the remaining {} bytes", r.len())));
        }
        let mut last = None;
        let mut present = Vec::with_capacity(rows);
        for _ in 0..rows {
            let i = take_u32(&mut r).unwrap() as usize;
            present.push(i);
            if i >= m.params.buckets || last.is_some_and(|l| l >= i) {
                return Err(bad(&format!("row index {i} out of order or range")));
            }
            last = Some(i);
            for t in 0..d {
                m.emb[i * d + t] = f32::from_bits(take_u32(&mut r).unwrap());
            }
        }
        m.derive_gap(present.into_iter());
        Ok(m)
    }

    pub fn load(path: &Path) -> Result<Model, QualityError> {
        // fs::read sizes the buffer from the file's length (no regrowing copies).
        let b = std::fs::read(path).map_err(|e| QualityError::Io { path: path.to_path_buf(), source: e })?;
        Model::from_bytes(&b, path)
    }

    /// blake3 of the file, for run properties.
    pub fn file_hash(path: &Path) -> Result<String, QualityError> {
        let b = std::fs::read(path).map_err(|e| QualityError::Io { path: path.to_path_buf(), source: e })?;
        Ok(blake3::hash(&b).to_hex().to_string())
    }
}

fn take_u32(r: &mut &[u8]) -> Option<u32> {
    let (a, rest) = r.split_first_chunk::<4>()?;
    *r = rest;
    Some(u32::from_le_bytes(*a))
}

fn take_u64(r: &mut &[u8]) -> Option<u64> {
    let (a, rest) = r.split_first_chunk::<8>()?;
    *r = rest;
    Some(u64::from_le_bytes(*a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Params {
        Params { buckets: 1 << 12, epochs: 20, ..Default::default() }
    }

    fn examples(p: &Params) -> Vec<Example> {
        let f = Featurizer::new(p);
        let good = ["软件包管理系统负责安装和升级软件。", "这台服务器运行 Debian 系统，管理员每天检查日志。", "配置文件位于 /etc 目录下，修改后需要重启服务。"];
        let bad = ["首页 上一页 下一页 目录 返回顶部", "下载 免费 下载 最新 破解 下载 高速", "登录 注册 首页 帮助 关于我们"];
        let mut out = vec![];
        for (texts, positive) in [(good, true), (bad, false)] {
            for t in texts {
                let mut v = vec![];
                f.features(t, &mut v);
                out.push(Example { features: v, positive });
            }
        }
        out
    }

    #[test]
    fn learns_round_trips_and_is_deterministic() {
        let p = small();
        let ex = examples(&p);
        let m = Model::train(p.clone(), &ex).unwrap();
        assert_eq!(m.evaluate(&ex).accuracy, 1.0);
        let bytes = m.to_bytes();
        assert_eq!(Model::train(p.clone(), &ex).unwrap().to_bytes(), bytes, "same seed, same bytes");
        assert_ne!(Model::train(Params { seed: 2, ..p }, &ex).unwrap().to_bytes(), bytes, "the seed matters");
        let back = Model::from_bytes(&bytes, Path::new("m")).unwrap();
        assert_eq!(back, m);
        let mut bad = bytes.clone();
        bad[60] ^= 1;
        assert!(Model::from_bytes(&bad, Path::new("m")).unwrap_err().to_string().contains("checksum"));
        assert!(Model::from_bytes(&bytes[..bytes.len() - 1], Path::new("m")).is_err());
    }

    #[test]
    fn one_class_and_bad_params_are_refused() {
        let p = small();
        let ex: Vec<Example> = examples(&p).into_iter().filter(|e| e.positive).collect();
        assert!(matches!(Model::train(p, &ex), Err(QualityError::OneClass { .. })));
        assert!(Params { char_min: 3, char_max: 2, ..Default::default() }.validate().is_err());
        assert!(Params { char_max: 0, char_min: 0, word_ngrams: 0, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn reused_words_give_the_same_features() {
        let f = Featurizer::new(&Params { max_chars: 12, ..small() });
        let t = "软件包管理系统负责安装和升级软件，配置文件位于 /etc 目录下。";
        let (mut a, mut b) = (vec![], vec![]);
        f.features(t, &mut a);
        f.features_with_words(t, &jieba().cut(t, false), &mut b);
        assert_eq!(a, b);
        // The cut ends past the head, where jieba's block ends.
        assert_eq!(block_end("软件包管理，系统", 6), "软件包管理".len());
    }

    #[test]
    fn streamed_features_and_gap_scores_match_the_reference() {
        let texts = [
            "",
            " ",
            "软",
            "  软件包管理系统负责安装和升级软件。\n\n 这台服务器运行 Debian 12 系统，管理员每天检查日志。  ",
            "首页 上一页 下一页 目录 返回顶部",
            "Port 8080  open\tand CLOSED\r\n123 456",
            "配置文件位于 /etc 目录下，修改后需要重启服务。配置文件位于 /etc 目录下，修改后需要重启服务。配置文件位于 /etc 目录下。",
        ];
        for p in [
            small(),
            Params { max_chars: 9, ..small() },
            Params { buckets: 1000, char_min: 2, char_max: 5, word_ngrams: 3, ..small() },
            Params { char_min: 0, char_max: 0, ..small() },
            Params { word_ngrams: 0, char_min: 1, char_max: 16, ..small() },
        ] {
            let m = Model::train(p.clone(), &examples(&p)).unwrap();
            let f = m.featurizer();
            for t in texts {
                let words = jieba().cut(t, false);
                let mut want = vec![];
                f.features_with_words(t, &words, &mut want);
                let mut got = vec![];
                f.for_each_feature(t, &words, |b| got.push(b));
                want.sort_unstable();
                got.sort_unstable();
                assert_eq!(got, want, "{p:?} {t:?}");
                let mut v = vec![];
                f.features(t, &mut v);
                let dense = m.score_features_dense(&v);
                let s = m.score_features(&v);
                assert!((s - dense).abs() < 1e-4, "{s} vs {dense}: {p:?} {t:?}");
                // The streamed paths give exactly the same score (integer sums).
                assert_eq!(m.score(t).to_bits(), s.to_bits());
                assert_eq!(m.score_with_words(t, &words).to_bits(), s.to_bits());
            }
        }
    }

    #[test]
    fn features_fold_case_digits_and_spaces() {
        let f = Featurizer::new(&Params { word_ngrams: 0, ..small() });
        let (mut a, mut b) = (vec![], vec![]);
        f.features("Port 8080  open", &mut a);
        f.features("port 1234 open", &mut b);
        assert_eq!(a, b);
        // 1..=3-grams over 14 normalised characters.
        assert_eq!(a.len(), 14 + 13 + 12);
    }
}
