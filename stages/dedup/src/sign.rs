//! What dedup knows about one row, and the per-kind seams every phase goes through:
//! a row is signed once into a fixed-size *body* (text: exact hash + MinHash values;
//! images and pairs: exact key, seven window pHashes, a 48×48 verification thumbnail
//! and, for pairs, the caption hash — see [`image_verify::PAYLOAD_LEN`]); its LSH band
//! keys ([`band_keys`]), the candidate check ([`verify`]) and the audit explanation
//! ([`explain`]) are all functions of bodies. Because band keys are derived from the
//! body, a body stored in an earlier run's `signatures` side dataset is all that
//! `--against` needs: the old text or image is never read again.

use arrow::array::{Array, RecordBatch};
use m6_pipeline::BoxError;
use m6_schemas::{column, Bin, Kind, Str, U32};
use rayon::prelude::*;

use crate::minhash::{band_key, fmix64, hash_str, MinHasher};
use crate::normalize::Normalizer;
use crate::image_hash::{self, ImageSig};
use crate::image_verify;
use crate::phash::pixel_key;
use crate::{DedupConfig, ImageExact, KeepRule, PairPolicy, Shingle};

/// Band key flags: exact keys need no verification, near keys do.
pub const EXACT: u8 = 1;
pub const NEAR: u8 = 0;
const TAG_EXACT: u64 = 0xe7ac_0000_0000_0001;
const TAG_BLOCK: u64 = 0xb10c_0000_0000_0000;
const TAG_CAPTION: u64 = 0xca97_0000_0000_0001;

/// Bumped whenever a body's layout or meaning changes: bodies of another version
/// cannot be compared, so `--against` refuses them. v2: keys come from m6-text's
/// folding (OpenCC 1.4.2 characters and phrases, idempotent lower-casing), which maps
/// some texts differently from v1's table, so a v1 key may miss its v2 duplicate.
pub const SIGNATURE_FORMAT: &str = "m6-dedup-signature-v2";
/// The same for image and pair bodies: v2 holds the window hashes over the
/// border-trimmed frame and the verification thumbnail (v1 held one pHash); v3 keys
/// pair captions with m6-text's folding (as text v2); v4 hashes BT.601 grey (JPEG's
/// own Y plane) instead of Rec. 709 grey, which moves hashes and thumbnails a little;
/// v5 trims flat borders with levels that scale with the picture's contrast, which
/// moves the frame (and so every hash and the thumbnail) of low-contrast pictures,
/// shows transparent pixels on white, and (under `image_exact = "pixels"`) keys the
/// picture as its EXIF orientation shows it.
pub const IMAGE_SIGNATURE_FORMAT: &str = "m6-dedup-image-signature-v5";

/// Bytes of one row's body.
pub fn body_len(cfg: &DedupConfig, kind: Kind) -> usize {
    match kind {
        Kind::Document => 8 + 4 * cfg.num_perm,
        _ => image_verify::PAYLOAD_LEN,
    }
}

/// The settings a body depends on. Two runs can compare bodies only when these are
/// equal (band layout, threshold and keep rule may differ: they are applied to bodies).
pub fn signing_settings(cfg: &DedupConfig, kind: Kind) -> serde_json::Value {
    match kind {
        Kind::Document => serde_json::json!({
            "format": SIGNATURE_FORMAT, "kind": kind.name(), "fold_traditional": cfg.fold_traditional,
            "shingle": cfg.shingle, "ngram": cfg.ngram, "word_ngram": cfg.word_ngram, "num_perm": cfg.num_perm, "seed": cfg.seed,
        }),
        // The hashing geometry (windows, work side, thumbnail side) is fixed by the
        // format version; what a config can change is listed.
        _ => serde_json::json!({
            "format": IMAGE_SIGNATURE_FORMAT, "kind": kind.name(), "fold_traditional": cfg.fold_traditional,
            "image_exact": cfg.image_exact, "near": cfg.near,
            "windows": image_hash::WINDOWS, "work_side": image_hash::WORK_SIDE, "thumb": image_hash::THUMB,
        }),
    }
}

/// One signed row.
pub struct Signed {
    /// Characters (text) or pixels (images, pairs), for the keep rule.
    pub size: u32,
    /// The keep rule's score: documents under `keep = "quality"`, the meta quality
    /// field; images and pairs, [`image_score`], which breaks ties between equal-sized
    /// copies; `-inf` when the row has none.
    pub score: f32,
    pub body: Vec<u8>,
}

/// The exact key of a text whose normalised form is `normalised`: blake3 of that form.
/// Text with no letter or digit (emoji, symbols, punctuation alone) normalises to
/// nothing, and keying that would make every such text an exact duplicate of every
/// other and of an empty one; it is keyed by its own characters (whitespace left out),
/// tagged apart from normalised forms. Text of whitespace alone keeps the empty key.
/// Bodies written before hold the empty key for such text, so against them it is not
/// found (a missed duplicate of text with no words), and only a new text of whitespace
/// alone can match them (nothing is lost): the signature format keeps its version.
pub fn text_key(normalised: &str, raw: &str) -> u64 {
    if !normalised.is_empty() {
        return u64_of(blake3::hash(normalised.as_bytes()).as_bytes());
    }
    let mut h = blake3::Hasher::new();
    h.update(b"m6-dedup-unnormalised\0");
    let mut any = false;
    let mut buf = [0u8; 4];
    for c in raw.chars().filter(|c| !c.is_whitespace()) {
        any = true;
        h.update(c.encode_utf8(&mut buf).as_bytes());
    }
    if !any {
        return u64_of(blake3::hash(b"").as_bytes());
    }
    u64_of(h.finalize().as_bytes())
}

pub fn u64_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// blake3 of an id, as a u64: the tie-break that makes choices independent of sharding.
pub fn id_hash(id: &str) -> u64 {
    u64_of(blake3::hash(id.as_bytes()).as_bytes())
}

/// Computes bodies of one kind of row; one per thread (holds scratch buffers).
pub struct Signer<'a> {
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

impl<'a> Signer<'a> {
    pub fn new(cfg: &'a DedupConfig, kind: Kind) -> Self {
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

    pub fn text(&mut self, text: &str) -> Signed {
        let cfg = self.cfg;
        self.norm.normalize_both(text, &mut self.chars, &mut self.utf8);
        let exact = text_key(&self.utf8, text);
        let has_sig = match cfg.shingle {
            Shingle::Char => self.mh.char_ngrams(&self.chars, cfg.ngram, &mut self.sig),
            Shingle::Word => {
                self.words.clear();
                self.words.extend(m6_text::jieba().cut(&self.utf8, false).into_iter().map(|w| hash_str(w, cfg.seed)));
                self.mh.word_ngrams(&self.words, cfg.word_ngram, &mut self.sig)
            }
        };
        let mut body = Vec::with_capacity(8 + 4 * cfg.num_perm);
        body.extend_from_slice(&exact.to_le_bytes());
        for i in 0..cfg.num_perm {
            // No shingles at all: every bin empty, which band_keys reads as "no near keys".
            let v = if has_sig { self.sig[i] } else { u32::MAX };
            body.extend_from_slice(&v.to_le_bytes());
        }
        Signed { size: self.chars.len() as u32, score: f32::NEG_INFINITY, body }
    }

    /// Image (and pair) identity: exact key and, when near duplicates are wanted and
    /// the image decodes, its crop-tolerant signature (JPEGs decoded at 1/8–1/2 scale).
    fn image_keys(&self, bytes: &[u8]) -> (u64, Option<ImageSig>) {
        let bytes_key = || u64_of(blake3::hash(bytes).as_bytes());
        if self.cfg.image_exact == ImageExact::Pixels {
            // Exact pixel identity needs every pixel: one full decode serves both keys.
            return match m6_imaging::load(bytes) {
                Ok(mut img) => {
                    // Both keys of the picture as shown (EXIF orientation applied), as the
                    // default path signs it: the stored pixels of a phone photo are turned,
                    // and the same pixels under another tag are another picture.
                    img.apply_orientation(m6_imaging::exif::orientation(bytes));
                    let sig = self.cfg.near.then(|| image_hash::sign_gray(&image_hash::shrink(&image_hash::full_gray(&img), image_hash::WORK_SIDE), img.width(), img.height(), 1));
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

    /// Whether an image of `pixels` (its header's) is cut off, animated, over
    /// `keep_max_pixels` or seen damaged when signed, when a copy that is not
    /// byte-identical could share its cluster (near keys, or pixel keys); see
    /// `image_verify::flawed`.
    fn flawed(&self, bytes: &[u8], pixels: u32, sig: Option<&ImageSig>) -> bool {
        if !self.cfg.near && self.cfg.image_exact != ImageExact::Pixels {
            return false;
        }
        pixels as u64 > self.cfg.keep_max_pixels
            || sig.is_some_and(|s| s.damaged)
            || image::guess_format(bytes).is_ok_and(|f| m6_imaging::truncated(f, bytes).is_some() || m6_imaging::animated(f, bytes))
    }

    pub fn image(&self, bytes: &[u8], size: u32) -> Signed {
        let (exact, sig) = self.image_keys(bytes);
        let mut body = Vec::with_capacity(image_verify::PAYLOAD_LEN);
        image_verify::encode_payload(exact, sig.as_ref(), self.flawed(bytes, size, sig.as_ref()), 0, &mut body);
        let score = image_score(bytes.len(), size, sig.as_ref());
        Signed { size, score, body }
    }

    pub fn pair(&mut self, bytes: &[u8], caption: &str, size: u32) -> Signed {
        let (exact, sig) = self.image_keys(bytes);
        let cap = text_key(&self.norm.normalize(caption), caption);
        let mut body = Vec::with_capacity(image_verify::PAYLOAD_LEN);
        image_verify::encode_payload(exact, sig.as_ref(), self.flawed(bytes, size, sig.as_ref()), cap, &mut body);
        let score = image_score(bytes.len(), size, sig.as_ref());
        Signed { size, score, body }
    }

    /// Signs every row of a batch (of [`sign_columns`]); returns ids and bodies.
    pub fn sign_batch(&mut self, b: &RecordBatch) -> Result<(Vec<String>, Vec<Signed>), BoxError> {
        use m6_schemas::{document as d, image as i, pair as p};
        let n = b.num_rows();
        let id_col = match self.kind {
            Kind::Document => d::ID,
            Kind::Image => i::ID,
            _ => p::ID,
        };
        let ids = column::<Str>(b, id_col)?;
        let mut out = Vec::with_capacity(n);
        match self.kind {
            Kind::Document => {
                let text = column::<Str>(b, d::TEXT)?;
                let meta = if self.cfg.keep == KeepRule::Quality { Some(column::<Str>(b, d::META)?) } else { None };
                for r in 0..n {
                    let mut s = self.text(text.value(r));
                    if let Some(m) = meta.filter(|m| m.is_valid(r)) {
                        s.score = quality_score(m.value(r), &self.cfg.quality_field);
                    }
                    out.push(s);
                }
            }
            Kind::Image => {
                let (bytes, w, h) = (column::<Bin>(b, i::BYTES)?, column::<U32>(b, i::WIDTH)?, column::<U32>(b, i::HEIGHT)?);
                // Decoding dominates; rows of a batch are independent.
                out = (0..n).into_par_iter().map(|r| self.image(bytes.value(r), w.value(r).saturating_mul(h.value(r)))).collect();
            }
            _ => {
                let (bytes, w, h, cap) = (column::<Bin>(b, p::IMAGE_BYTES)?, column::<U32>(b, p::WIDTH)?, column::<U32>(b, p::HEIGHT)?, column::<Str>(b, p::CAPTION)?);
                let cfg = self.cfg;
                let kind = self.kind;
                out = (0..n)
                    .into_par_iter()
                    .map(|r| Signer::new(cfg, kind).pair(bytes.value(r), cap.value(r), w.value(r).saturating_mul(h.value(r))))
                    .collect();
            }
        }
        Ok(((0..n).map(|r| ids.value(r).to_string()).collect(), out))
    }
}

/// How good a copy of an image is, for the keep rule among copies of equal pixel count:
/// encoded bytes per pixel times the square root of the sharpness (variance of the
/// Laplacian of the work picture, + 1 so flat pictures still compare by bytes).
/// Sharpness alone preferred JPEG q40 copies to their q92 originals (3 of 4 photos:
/// blocking adds edges at the work size), while a q40 copy has a third of the bytes
/// and about the same sharpness; a blurred copy loses both, so a blurred copy saved at
/// a higher quality than its original still ranks below it. `-inf` for an image that
/// did not decode.
pub fn image_score(encoded_bytes: usize, pixels: u32, sig: Option<&ImageSig>) -> f32 {
    sig.map_or(f32::NEG_INFINITY, |s| encoded_bytes as f32 / pixels.max(1) as f32 * (s.sharpness.max(0.0) + 1.0).sqrt())
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
pub fn sign_columns(cfg: &DedupConfig, kind: Kind) -> &'static [&'static str] {
    use m6_schemas::{document as d, image as i, pair as p};
    match kind {
        Kind::Document if cfg.keep == KeepRule::Quality => &[d::ID, d::TEXT, d::META],
        Kind::Document => &[d::ID, d::TEXT],
        Kind::Image => &[i::ID, i::BYTES, i::WIDTH, i::HEIGHT],
        _ => &[p::ID, p::IMAGE_BYTES, p::WIDTH, p::HEIGHT, p::CAPTION],
    }
}

/// One band key of a row: the key, the order inside its bucket, and [`EXACT`]/[`NEAR`].
#[derive(Debug, Clone, Copy)]
pub struct BandKey {
    pub key: u64,
    pub order: u64,
    pub flag: u8,
}

fn block_bands(cfg: &DedupConfig, ph: u64, salt: u64, out: &mut Vec<BandKey>) {
    let nb = cfg.hash_blocks;
    let mut start = 0u32;
    for b in 0..nb {
        let width = (64 - start as usize) / (nb - b);
        let val = if width == 0 { 0 } else { (ph << start) >> (64 - width) };
        // Sorting a bucket by the hash rotated past this block puts close hashes together.
        let order = ph.rotate_left(start + width as u32);
        out.push(BandKey { key: fmix64(TAG_BLOCK ^ ((b as u64) << 40) ^ fmix64(val ^ salt)), order, flag: NEAR });
        start += width as u32;
    }
}

/// The LSH band keys of a row, from its body (`idhash` orders text buckets).
pub fn band_keys(cfg: &DedupConfig, kind: Kind, body: &[u8], idhash: u64, scratch: &mut Vec<u32>, out: &mut Vec<BandKey>) {
    out.clear();
    let exact = u64_of(body);
    match kind {
        Kind::Document => {
            if cfg.exact {
                out.push(BandKey { key: fmix64(TAG_EXACT ^ exact), order: idhash, flag: EXACT });
            }
            scratch.clear();
            scratch.extend(body[8..].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())));
            // Densification fills every bin once any is filled, so bin 0 tells.
            if cfg.near && scratch.first().is_some_and(|&v| v != u32::MAX) {
                for b in 0..cfg.bands {
                    out.push(BandKey { key: band_key(scratch, b, cfg.rows, cfg.seed), order: idhash, flag: NEAR });
                }
            }
        }
        Kind::Image => {
            if cfg.exact {
                out.push(BandKey { key: fmix64(TAG_EXACT ^ exact), order: idhash, flag: EXACT });
            }
            if cfg.near && image_verify::decoded(body) {
                // Every window hash goes into the same buckets: a crop's whole frame
                // meets the original's matching window.
                for h in image_verify::hashes(body) {
                    block_bands(cfg, h, 0, out);
                }
            }
        }
        _ => {
            let (decoded, cap) = (image_verify::decoded(body), u64_of(&body[24..]));
            let image_only = cfg.same_image_different_caption == PairPolicy::Drop;
            let salt = if image_only { 0 } else { cap };
            if cfg.exact {
                out.push(BandKey { key: fmix64(TAG_EXACT ^ fmix64(exact ^ salt)), order: idhash, flag: EXACT });
            }
            if cfg.near && decoded {
                for h in image_verify::hashes(body) {
                    block_bands(cfg, h, salt, out);
                }
            }
            if cfg.same_caption_different_image == PairPolicy::Drop {
                out.push(BandKey { key: fmix64(TAG_CAPTION ^ cap), order: idhash, flag: EXACT });
            }
        }
    }
}

/// Estimated Jaccard of two text bodies: the fraction of equal MinHash slots, compared
/// in place (this runs once per candidate pair).
fn sig_jaccard(a: &[u8], b: &[u8]) -> f32 {
    let (a, b) = (&a[8..], &b[8..]);
    let eq = a.chunks_exact(4).zip(b.chunks_exact(4)).filter(|(x, y)| x == y).count();
    eq as f32 / (a.len() / 4).max(1) as f32
}

/// Whether two rows that share a near band key are duplicates, from their bodies.
pub fn verify(cfg: &DedupConfig, kind: Kind, a: &[u8], b: &[u8]) -> bool {
    match kind {
        Kind::Document => sig_jaccard(a, b) >= cfg.threshold,
        Kind::Image => image_verify::verify(&cfg.image_verify_params(), a, b),
        _ => {
            // The caption check is cheap; the thumbnail alignment is not.
            (cfg.same_image_different_caption == PairPolicy::Drop || u64_of(&a[24..]) == u64_of(&b[24..]))
                && image_verify::verify(&cfg.image_verify_params(), a, b)
        }
    }
}

/// Why `a` was removed in favour of `kept`, and how similar they are (from bodies).
pub fn explain(cfg: &DedupConfig, kind: Kind, a: &[u8], kept: &[u8]) -> (f32, &'static str) {
    let same_exact = u64_of(a) == u64_of(kept);
    match kind {
        Kind::Document => {
            if same_exact {
                (1.0, "exact_text")
            } else {
                (sig_jaccard(a, kept), "near_text")
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
