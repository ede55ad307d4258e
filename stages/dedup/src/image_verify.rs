//! Verification of image near-duplicate candidates, and the fixed-size image payload
//! the dedup work files store per row.
//!
//! A candidate pair (two rows that share an LSH band key of any of their window
//! hashes) is accepted only when one thumbnail, cropped by at most `max_crop` per side,
//! lines up with the other pixel for pixel:
//!
//! 1. quick rejections: the closest pair of window hashes is within `max_hamming`
//!    bits, and the content frames' aspect ratios differ by no more than such a crop
//!    allows;
//! 2. a coarse search over crops of either picture (0, ½ and all of `max_crop` per
//!    side, only crops whose aspect matches the other picture), ranked by how well the
//!    cropped column and row profiles (mean grey level of each column / row,
//!    contrast-normalised) match the other picture's: left/right and top/bottom are
//!    judged separately, so it costs 36 short line comparisons, not 162 grids;
//! 3. the best few are refined by coordinate descent over finer crop steps on 16×16
//!    grids, then polished and scored on 32×32 grids by the share of pixels that
//!    disagree by more than [`TAU`]
//!    standard deviations, where one strip along a horizontal edge and one along a
//!    vertical edge (each up to 1/8 of the picture) may be left out: that is where
//!    logos and text banners go. Scattered differences (another photo of the same
//!    scene, another screen of the same program) are not excused.
//!
//! Levels are normalised by the mean and spread of the central part of each grid, so
//! brightness/contrast changes and watermarks at the edges do not shift them.
//!
//! 4. an accepted alignment must also agree block by block ([`layout`]): levels and
//!    texture energy of 4×4 blocks, no anti-correlated block, and every block with
//!    texture in grey levels in both pictures positively correlated
//!    ([`BLOCK_MIN_TEXTURED_CORRELATION`]) however faint it is beside the rest;
//! 5. a pair rejected in 3-4 with under [`THOROUGH_BELOW`] × `max_diff` of pixels
//!    differing is aligned again, thoroughly (moves of two and four sides at once as
//!    well as one, repeated until the descent stops moving), and accepted when that
//!    alignment is within [`THOROUGH_ACCEPT`] × `max_diff` (or the texture allowance)
//!    and passes the layout check;
//! 6. a pair still rejected, at its better alignment under [`TONE_BELOW`] of pixels
//!    differing, is scored again after one picture's grey levels are put through the
//!    tone curve that gives them the other's distribution ([`tone_matched`]: copies
//!    equalised, brightened until they clip, gamma-corrected, posterised), held to
//!    [`THOROUGH_ACCEPT`] × `max_diff` and to stricter block rules.

use crate::image_hash::{ImageSig, THUMB, WINDOWS};

/// Payload layout shared by image and pair rows (little-endian):
/// `[0..8)` exact key, `[8..16)` whole-frame pHash, `[16..24)` decoded flag,
/// `[24..32)` caption hash (pairs; 0 for images), `[32..36)` frame aspect f32,
/// `[36..40)` area inside bars and padding in source pixels f32
/// (`image_hash::unpadded_frame`; 0 in bodies signed before it was recorded: the keep
/// rule then counts the header's pixels), then the other window
/// hashes, then the thumbnail.
pub const OFF_ASPECT: usize = 32;
pub const OFF_FRAME_PIXELS: usize = 36;
pub const OFF_WINDOWS: usize = 40;
pub const OFF_THUMB: usize = OFF_WINDOWS + 8 * (WINDOWS - 1);
pub const PAYLOAD_LEN: usize = OFF_THUMB + THUMB * THUMB;

/// Bumped whenever the verdict on the same two bodies changes (the bodies' own format
/// is `sign::IMAGE_SIGNATURE_FORMAT`): it is part of the dedup stage's settings and of
/// its work folder's fingerprint, so a rerun after an upgrade recomputes rather than
/// keeping, or mixing in, verdicts of the older verifier. v5: pairs whose pixels agree
/// closely and whose blocks stay correlated are accepted with their block levels
/// changed ([`recoloured`]). v4: pairs the plain check
/// rejects close to a match are compared with their tones matched ([`tone_matched`]).
/// v3: one close pair of window hashes at the limit needs a second ([`near_enough`]).
/// v2: the textured-block correlation of the layout check
/// ([`BLOCK_MIN_TEXTURED_CORRELATION`]).
pub const VERIFY_VERSION: &str = "m6-image-verify-v5";

/// Grey-level disagreement (in standard deviations) that makes a pixel count as different.
pub const TAU: f32 = 0.75;

/// Writes the image payload (`sig` is `None` for an image that did not decode;
/// `flawed` for one the filter would drop for what it is, see [`flawed`]).
pub fn encode_payload(exact: u64, sig: Option<&ImageSig>, flawed: bool, caption: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&exact.to_le_bytes());
    out.extend_from_slice(&sig.map_or(0, |s| s.hashes[0]).to_le_bytes());
    // The upper half holds a lossless file's sharpness, the finest measure of its
    // pixels the body has room for (`picture_key`).
    let lossless = sig.and_then(|s| s.lossless.map(|colour| 4 | (colour as u64) << 3 | (s.sharpness.to_bits() as u64) << 32)).unwrap_or(0);
    let grey = sig.is_some_and(|s| s.grey) as u64;
    // Tenths of a level, 1 added so that 0 stays "unknown" (255: 25.4 levels or more;
    // the keep rule's thresholds are a level or two).
    let variety = sig.and_then(|s| s.variety).map_or(0, |v| (v * 10.0).round().clamp(0.0, 254.0) as u64 + 1);
    out.extend_from_slice(&(sig.is_some() as u64 | (flawed as u64) << 1 | lossless | grey << GREY_BIT | variety << VARIETY_SHIFT).to_le_bytes());
    out.extend_from_slice(&caption.to_le_bytes());
    out.extend_from_slice(&sig.map_or(0.0, |s| s.aspect).to_le_bytes());
    out.extend_from_slice(&sig.map_or(0.0, |s| s.frame_pixels).to_le_bytes());
    for w in 1..WINDOWS {
        out.extend_from_slice(&sig.map_or(0, |s| s.hashes[w]).to_le_bytes());
    }
    match sig {
        Some(s) => out.extend_from_slice(&s.thumb),
        None => out.resize(PAYLOAD_LEN, 0),
    }
    debug_assert_eq!(out.len(), PAYLOAD_LEN);
}

fn u64_at(p: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(p[off..off + 8].try_into().unwrap())
}

/// The window hashes stored in a payload (whole frame first).
pub fn hashes(p: &[u8]) -> [u64; WINDOWS] {
    let mut h = [0u64; WINDOWS];
    h[0] = u64_at(p, 8);
    for (w, v) in h.iter_mut().enumerate().skip(1) {
        *v = u64_at(p, OFF_WINDOWS + 8 * (w - 1));
    }
    h
}

/// The payload's flags word: bit 0 decoded, bit 1 flawed, bit 2 lossless, bit 3 the
/// lossless file stores colour, bit 4 ([`GREY_BIT`]) the picture holds no colour, bits
/// 8-15 ([`VARIETY_SHIFT`]) its colour variety, bits 32-63 a lossless file's sharpness
/// (f32 bits). Bodies written before the flawed, grey or variety bits (same signature
/// format) hold 0 there, which reads as "not flawed", "not lossless", "not known to be
/// grey" and "variety unknown": such a body only loses the keep rule's preferences for
/// whole copies, for the smaller of lossless files, for colour and for varied colour.
/// (So `--against` datasets signed before need no new signing.)
pub fn decoded(p: &[u8]) -> bool {
    u64_at(p, 16) & 1 == 1
}

/// Whether the image was cut off in transfer, is animated, is over `keep_max_pixels`
/// or was seen damaged (`m6_imaging::truncated`, `m6_imaging::animated`,
/// `ImageSig::damaged`): the filter drops such an image, so a cluster keeps one only
/// when it has no other kind.
pub fn flawed(p: &[u8]) -> bool {
    u64_at(p, 16) & 2 != 0
}

/// Bit of the flags word set when the decode saw that the picture holds no colour
/// (`ImageSig::grey`).
const GREY_BIT: u32 = 4;

/// Where the flags word holds `ImageSig::variety` (a byte: tenths of a level + 1, 0
/// unknown, 255 at least 25.4 levels).
const VARIETY_SHIFT: u32 = 8;

/// `ImageSig::variety` to a tenth of a level (at most 25.4), when the body records it.
pub fn variety(p: &[u8]) -> Option<f32> {
    match (u64_at(p, 16) >> VARIETY_SHIFT & 255) as u8 {
        0 => None,
        v => Some((v - 1) as f32 / 10.0),
    }
}

/// Whether the image's decode saw that it holds no colour (`ImageSig::grey`): the keep
/// rule puts it after copies in colour.
pub fn grey(p: &[u8]) -> bool {
    u64_at(p, 16) >> GREY_BIT & 1 != 0
}

/// The area inside bars and padding in source pixels, when the body records it.
pub fn frame_pixels(p: &[u8]) -> Option<f32> {
    let v = f32::from_le_bytes(p[OFF_FRAME_PIXELS..OFF_FRAME_PIXELS + 4].try_into().unwrap());
    (decoded(p) && v > 0.0).then_some(v)
}

fn aspect(p: &[u8]) -> f32 {
    f32::from_le_bytes(p[OFF_ASPECT..OFF_ASPECT + 4].try_into().unwrap())
}

pub fn thumb(p: &[u8]) -> &[u8] {
    &p[OFF_THUMB..OFF_THUMB + THUMB * THUMB]
}

/// For a lossless file (`ImageSig::lossless`), a key of its picture: its thumbnail's
/// grey levels, its work picture's sharpness (variance of the Laplacian, to the bit),
/// its frame's size and whether it stores colour. Lossless copies with the same key
/// hold the same picture, whatever their format and file size (a BMP, PNG and WebP
/// of one icon); a grey copy of a colour picture, or one quantised to a palette
/// (dithering moves the sharpness), gets another key. `None` for a lossy or
/// undecoded file.
pub fn picture_key(p: &[u8]) -> Option<u64> {
    // The grey bit and the variety are left out: they follow from the pixels the key
    // already holds, and bodies signed before them have them at 0.
    let flags = u64_at(p, 16) & !(1 << GREY_BIT) & !(255 << VARIETY_SHIFT);
    if flags & 5 != 5 {
        return None;
    }
    let mut h = blake3::Hasher::new();
    h.update(thumb(p));
    h.update(&(flags >> 3).to_le_bytes());
    h.update(&p[OFF_FRAME_PIXELS..OFF_FRAME_PIXELS + 4]);
    Some(u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes")))
}

/// A thumbnail's grey levels as floats: the alignment samples every pixel many times
/// (dozens of crops), so it converts each once (the same values `v as f32` gives).
/// Stored column by column (`[x * THUMB + y]`): [`sample`] interpolates along x for a
/// run of rows at once, which then reads contiguous columns.
type Thumb = [f32; THUMB * THUMB];

fn to_f32(t: &[u8]) -> Box<Thumb> {
    let mut out = Box::new([0f32; THUMB * THUMB]);
    for (y, row) in t.chunks_exact(THUMB).enumerate() {
        for (x, &v) in row.iter().enumerate() {
            out[x * THUMB + y] = v as f32;
        }
    }
    out
}

/// Fewest differing bits between any window hash of `a` and any of `b`.
///
/// This runs for every pair of rows that meet in a bucket (most of them far apart),
/// so it uses the POPCNT instruction where the CPU has it: the baseline x86-64 build
/// otherwise counts bits in a dozen instructions per word.
pub fn min_hamming(a: &[u64; WINDOWS], b: &[u64; WINDOWS]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vpopcntdq") {
        // SAFETY: the CPU supports both (checked just above).
        return unsafe { min_hamming_avx512(a, b) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU supports POPCNT (checked just above).
        return unsafe { min_hamming_popcnt(a, b) };
    }
    min_hamming_any(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn min_hamming_popcnt(a: &[u64; WINDOWS], b: &[u64; WINDOWS]) -> u32 {
    min_hamming_any(a, b)
}

/// All 49 distances at once where the CPU counts bits in vector lanes (AVX-512
/// VPOPCNTDQ: Ice Lake and later, Zen 4): `b` in seven of eight lanes (the eighth
/// repeats `b[0]`, which cannot change a minimum), each hash of `a` against all of
/// them per step. Integer minimum: the same value as the scalar loop.
/// (It was 3% of the CPU of dedup on the benchmark's JPEGs: most rows that meet in a
/// bucket are far apart and get all 49 distances computed.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
unsafe fn min_hamming_avx512(a: &[u64; WINDOWS], b: &[u64; WINDOWS]) -> u32 {
    use std::arch::x86_64::*;
    const { assert!(WINDOWS <= 8) };
    let mut lanes = [b[0] as i64; 8];
    for (l, &v) in lanes.iter_mut().zip(b) {
        *l = v as i64;
    }
    // SAFETY: `lanes` is 8 i64s (64 bytes); loadu has no alignment requirement.
    let bv = unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) };
    let mut best = _mm512_set1_epi64(64);
    for &x in a {
        best = _mm512_min_epu64(best, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64(x as i64), bv)));
    }
    let mut out = [0u64; 8];
    // SAFETY: `out` is 64 bytes; storeu has no alignment requirement.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), best) };
    out.into_iter().min().unwrap_or(64) as u32
}

#[inline(always)]
fn min_hamming_any(a: &[u64; WINDOWS], b: &[u64; WINDOWS]) -> u32 {
    let mut best = 64;
    for x in a {
        for y in b {
            best = best.min((x ^ y).count_ones());
        }
    }
    best
}

/// Window-hash distance below `max_hamming` from which one close pair of windows is
/// enough (see [`near_enough`]). pHash sets exactly half its bits, so distances are
/// even: 2 is one step.
const CORROBORATE_BELOW: u32 = 2;

/// The distance of two images' closest pair of window hashes when it makes them a
/// candidate worth aligning: it is within `max_hamming`, and if only within the last
/// [`CORROBORATE_BELOW`] bits of it (14 of 14 by default), a second pair of windows is
/// within `max_hamming` too. `None` otherwise.
///
/// One pair of windows at the limit is weak evidence, and it grows common with the
/// corpus: at 20,000 mosaics of the photos (`bench/scale_run.py make_mosaics`, seed 11)
/// 172,820 of the 252,558 alignments were pairs at distance 14, and 1 of them was a
/// duplicate; among all pairs of 5,000 of them, 12,381 of the 14,931 at 14 had no
/// second close pair of windows, and none of the 14,931 was a duplicate. The photo
/// benchmark, where every picture has a dozen copies, has 70 true pairs at 14, 34 of
/// them with one close pair of windows; all but one of those copies are still linked
/// to their original through other pairs (a padded copy of the brick texture, whose
/// only link was its 96 px thumbnail, is lost: photo recall 0.9715 → 0.9684). Checked
/// against a second pair within 16 instead of 14 (keeps 8,607 of the 14,931 mosaic
/// pairs, and 65 of the 70 true ones) and a third within 16 (4,828; 49).
pub fn near_enough(a: &[u64; WINDOWS], b: &[u64; WINDOWS], max_hamming: u32) -> Option<u32> {
    let m = min_hamming(a, b);
    if m > max_hamming {
        return None;
    }
    if m + CORROBORATE_BELOW <= max_hamming {
        return Some(m);
    }
    let mut close = 0;
    for x in a {
        for y in b {
            close += ((x ^ y).count_ones() <= max_hamming) as u32;
        }
    }
    (close >= 2).then_some(m)
}

/// Verification settings (from the dedup config).
#[derive(Debug, Clone, Copy)]
pub struct VerifyParams {
    /// Candidates whose closest window hashes differ in more bits are rejected unseen.
    pub max_hamming: u32,
    /// Largest crop per side, as a fraction of the side, the alignment search tries.
    pub max_crop: f32,
    /// Largest share of differing pixels (after the edge-strip allowance) of a duplicate.
    pub max_diff: f32,
}

/// The outcome of comparing two payloads.
#[derive(Debug, Clone, Copy)]
pub struct Match {
    /// Share of differing pixels at the best alignment (0 = identical).
    pub diff: f32,
    pub hamming: u32,
    /// The best alignment: which picture was cropped (`true`: the second) and how.
    pub flip: bool,
    pub crop: [f32; 4],
}

type Memo = std::collections::HashMap<MemoKey, u32, std::hash::BuildHasherDefault<KeyHasher>>;
/// The two exact keys (smaller first) and the settings.
type MemoKey = (u64, u64, [u32; 3]);
/// The verdicts [`verify`] remembers, each with the pixel score of the quick alignment
/// ([`compare`]'s, whatever step settled the verdict: so that [`similarity`], which the
/// audit rows of removed copies need, does not align the pair again and gives what it
/// would compute afresh): bit 31 the verdict, bits 0..31 the bits of the
/// share of differing pixels (non-negative, so its sign bit is free), or [`NO_DIFF`]
/// where a quick check rejected the pair unaligned. Same size as a bool entry (the key
/// pads it).
static MEMO: std::sync::OnceLock<std::sync::Mutex<Memo>> = std::sync::OnceLock::new();

const NO_DIFF: u32 = 0x7fff_ffff;

fn memo_key(p: &VerifyParams, ka: u64, kb: u64) -> MemoKey {
    // The settings are part of the key: one process may verify for runs with other
    // settings (tests do).
    let ps = [p.max_hamming, p.max_crop.to_bits(), p.max_diff.to_bits()];
    if ka <= kb { (ka, kb, ps) } else { (kb, ka, ps) }
}

/// Forgets every remembered verdict (tests: to see what a pair met first in the
/// other order would get).
#[doc(hidden)]
pub fn clear_memo_for_tests() {
    if let Some(m) = MEMO.get() {
        m.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Whether two image payloads are near duplicates (see the module comment).
///
/// A pair that shares several band keys meets in several buckets, often in key ranges
/// that different threads verify; the verdict is remembered process-wide (by the two
/// exact keys, so byte-identical rows share it) so that the alignment runs once. (A
/// memo per thread made 2 threads verify many pairs twice: 25% more CPU than one
/// thread on the benchmark.) The memo is cleared when it reaches 2^20 pairs (about
/// 40 MiB), which bounds memory at the cost of an occasional repeat.
pub fn verify(p: &VerifyParams, a: &[u8], b: &[u8]) -> bool {
    // Most rows that meet in a bucket are far apart: the hash check is cheaper than
    // the memo, and keeping rejected pairs out of it keeps it small.
    if !decoded(a) || !decoded(b) || near_enough(&hashes(a), &hashes(b), p.max_hamming).is_none() {
        return false;
    }
    let (ka, kb) = (u64_at(a, 0), u64_at(b, 0));
    let key = memo_key(p, ka, kb);
    let memo = MEMO.get_or_init(Default::default);
    // A verdict is a pure function of the two payloads: a poisoned lock (a panic
    // elsewhere) leaves nothing half-written that matters.
    if let Some(v) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied() {
        return v >> 31 == 1;
    }
    // The alignment search is not symmetric (ties, the descent's starting points), and
    // the memo answers for both orders: verifying in one canonical order keeps the
    // verdict — and so the output — independent of which thread met the pair first.
    let (a, b) = if ka <= kb { (a, b) } else { (b, a) };
    // The quick alignment's score is the one remembered, whatever later step settled
    // the verdict: it is what `similarity` computes afresh, and a dedup run whose
    // phases ran in separate processes (empty memo) must write the same audit rows as
    // one that ran them in one (it did not: the thorough and tone-matched scores of
    // two pairs at 3,000 benchmark mosaics reached the similarity column).
    let (v, _, quick) = judged_steps(p, a, b);
    let diff = match quick {
        Some(m) if m.diff >= 0.0 => m.diff.to_bits(),
        _ => NO_DIFF,
    };
    let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
    if memo.len() >= 1 << 20 {
        memo.clear();
    }
    memo.insert(key, (v as u32) << 31 | diff);
    v
}

/// [`verify`]'s verdict on two payloads (in its canonical order) and the alignment it
/// rests on, without the memo: the quick alignment first, then, for a pair it rejects
/// under [`THOROUGH_BELOW`] × `max_diff`, the thorough one (see [`align_prep`]), held
/// to [`THOROUGH_ACCEPT`] × `max_diff`; last, for a pair still rejected under
/// [`TONE_BELOW`], the tone-matched score ([`tone_matched`]), whose share of differing
/// pixels is then the one returned, and failing that the recoloured check
/// ([`recoloured`]).
pub fn judged(p: &VerifyParams, a: &[u8], b: &[u8]) -> (bool, Option<Match>) {
    let (v, m, _) = judged_steps(p, a, b);
    (v, m)
}

/// [`judged`]'s verdict and match, and the quick alignment's match ([`compare`]'s).
fn judged_steps(p: &VerifyParams, a: &[u8], b: &[u8]) -> (bool, Option<Match>, Option<Match>) {
    let quick = compare(p, a, b);
    let v = quick.is_some_and(|m| agrees(p, a, b, &m));
    let (v, m) = match quick {
        Some(q) if !v && q.diff < THOROUGH_BELOW * p.max_diff => {
            let (diff, flip, crop) = align_prep(p.max_crop, p.max_diff, &prep_of(a, p.max_crop), aspect(a), &prep_of(b, p.max_crop), aspect(b), true);
            let t = Match { diff, flip, crop, ..q };
            let strict = VerifyParams { max_diff: THOROUGH_ACCEPT * p.max_diff, ..*p };
            // The better of the two alignments goes on to the tone check.
            (agrees(&strict, a, b, &t), Some(if t.diff <= q.diff { t } else { q }))
        }
        _ => (v, quick),
    };
    match m {
        Some(q) if !v && q.diff < TONE_BELOW => match tone_matched(p, a, b, &q) {
            Some(diff) => (true, Some(Match { diff, ..q }), quick),
            None => (recoloured(p, a, b, &q), m, quick),
        },
        _ => (v, m, quick),
    }
}

/// Blocks (of the 16) that must be textured in both pictures for [`recoloured`].
const RECOLOURED_MIN_TEXTURED_BLOCKS: usize = 14;
/// Smallest correlation of a textured block that [`recoloured`] accepts (the
/// tone-matched check's bound, [`TONE_MIN_TEXTURED_CORRELATION`]).
const RECOLOURED_MIN_TEXTURED_CORRELATION: f32 = 0.5;

/// Whether an alignment that the layout check rejected is a copy whose colours were
/// changed region by region (a hue turn, red and blue swapped): its pixels agree
/// within [`THOROUGH_ACCEPT`] × `max_diff`, at least
/// [`RECOLOURED_MIN_TEXTURED_BLOCKS`] blocks are textured in both pictures, and every
/// textured block the layout check keeps is correlated at
/// [`RECOLOURED_MIN_TEXTURED_CORRELATION`] or more. The block levels and spreads are
/// then not compared.
///
/// The verifier sees grey levels only. A hue turn changes each colour's grey level by
/// its own amount (a red flower on green leaves may turn darker than them, or
/// lighter), so block levels and spreads move apart while the arrangement within each
/// block stays; no single tone curve undoes that, so [`tone_matched`] does not help.
/// The level/texture test exists for pictures that share part of their area and hold
/// content of lower contrast elsewhere (half-shared mosaics): their unshared blocks
/// are uncorrelated, or flat in one picture, which the bounds here still reject (a
/// mosaic sharing three quadrants has at most 12 blocks in common).
///
/// Made after the camera photos of `bench/dedup_images_stress.py --wallpapers` (26
/// photos, 1280-5312 px) lost 6 of their 26 hue-shifted copies: four aligned with
/// 0.008-0.034 of pixels differing, their textured blocks correlated at 0.35-0.88 and
/// block levels apart by up to 0.66 spreads, which the level/texture test rejected;
/// this finds three of them (paint brushes, a block at 0.35, stay lost), while a dune
/// and a fig differ in 18% and 31% of pixels. The bounds were not tuned: 0.5 is the
/// tone-matched check's, and the copies had 15-16 textured blocks. Checked after: the
/// same removals on the scikit-image photo, stress and tone sets but the colour wheel
/// turned 35° (found), no new false removal on 20,000 mosaics of seed 11 (2 more copies
/// found) and 30,000 of seed 12 (the same removals).
fn recoloured(p: &VerifyParams, a: &[u8], b: &[u8], m: &Match) -> bool {
    if m.diff > THOROUGH_ACCEPT * p.max_diff {
        return false;
    }
    let l = aligned_layout(&prep_of(a, p.max_crop), &prep_of(b, p.max_crop), m);
    l.correlation >= BLOCK_MIN_CORRELATION && l.textured_blocks >= RECOLOURED_MIN_TEXTURED_BLOCKS && l.textured_correlation >= RECOLOURED_MIN_TEXTURED_CORRELATION
}

/// Rejected alignments under this share of differing pixels are scored again with
/// their grey levels matched ([`tone_matched`]): the bound of the thorough alignment
/// ([`THOROUGH_BELOW`] × the default `max_diff`). On the scikit-image photos with 18
/// colour and tone edits each (`bench/dedup_images_tone.py`) the copies the plain check
/// rejected were aligned at 0.00-0.32, most under 0.1, where the layout check, not
/// the pixel score, had turned them down. At 0.35 the 20,000 benchmark mosaics
/// (`bench/scale_run.py make_mosaics`, seed 11) took 56,502 tone checks instead of
/// 1,412 and about 17% more CPU (one thread), and found no more copies.
const TONE_BELOW: f32 = 0.15;

/// The pixel score of an alignment after the grey levels of one picture are put
/// through the tone curve that gives them the other's distribution
/// ([`match_levels`]), when that score is within [`THOROUGH_ACCEPT`] × `max_diff` and
/// the matched grids pass the layout check and [`tone_layout_agrees`]; `None`
/// otherwise.
///
/// Grids are normalised by mean and spread, which undoes a linear change of tone
/// (brightness, contrast) but not a curved one: equalised, gamma-corrected, clipped or
/// posterised copies differ from their originals by more than [`TAU`] where the curve
/// bends away from a line, and their blocks' levels and spreads shift beyond the
/// layout check's tolerances. A monotone curve keeps the order of levels; another
/// picture does not keep the arrangement of them, so the pixel score and the block
/// correlations still tell it apart. Matching tones is a freedom the plain check does
/// not give, so a match is held to the thorough alignment's stricter pixel score and
/// to the stricter block rules of [`tone_layout_agrees`]: at `max_diff` the two views
/// of the stereo pair at 1024 px merged (`stereo_views_stay_apart_through_their_cropped_copies`).
///
/// What it cannot tell apart: a picture whose grey levels depend on the distance from
/// its centre (scikit-image's colour wheel) looks, cropped to its centre, like itself
/// with another tone curve; the stress set's centre 40% of the wheel merged with the
/// wheel cut 15% per side (`bench/dedup_images_stress.py`, its only false removal).
fn tone_matched(p: &VerifyParams, a: &[u8], b: &[u8], m: &Match) -> Option<f32> {
    let (pa, pb) = (prep_of(a, p.max_crop), prep_of(b, p.max_crop));
    let (ps, pd) = if m.flip { (&pb, &pa) } else { (&pa, &pb) };
    let (mut s, mut d) = (Vec::new(), Vec::new());
    sample(&ps.t, &m.crop, FINE, &mut s);
    sample(&pd.t, &[0.0; 4], FINE, &mut d);
    let (rs, rd) = (ranked(&s), ranked(&d));
    // Either grid may take the other's levels, and the closer result is kept: where a
    // curve stretched a crowded range (equalisation of a flat background), the
    // stretched picture's noise is stretched too; taking the other picture's levels
    // squeezes it back, while the reverse would spread the original's near-equal
    // levels over the whole stretched range. Matched one way only (the grid with more
    // distinct levels taking the other's), the equalised phantom and the posterised
    // microaneurysms of `tone_curved_copies_are_found_and_parts_kept_apart` were lost.
    let mut best: Option<(f32, Vec<f32>, f32, Vec<f32>, f32)> = None;
    for from_s in [true, false] {
        let (mut ms, mut md) = (s.clone(), d.clone());
        if from_s {
            match_levels(&mut ms, &rs, &rd);
        } else {
            match_levels(&mut md, &rd, &rs);
        }
        let (sd_s, sd_d) = (normalise(&mut ms, FINE, 2), normalise(&mut md, FINE, 2));
        let diff = strip_score(&ms, &md, FINE);
        if best.as_ref().is_none_or(|b| diff < b.0) {
            best = Some((diff, ms, sd_s, md, sd_d));
        }
    }
    let (diff, ms, sd_s, md, sd_d) = best?;
    (diff <= THOROUGH_ACCEPT * p.max_diff && tone_layout_agrees(&layout_of(&ms, sd_s, &md, sd_d))).then_some(diff)
}

/// Smallest correlation of a block textured in both pictures that a tone-matched pair
/// may have (the plain check asks [`BLOCK_MIN_TEXTURED_CORRELATION`]). Two mosaics of
/// the scale benchmark that share a chessboard and a page of text (30,000, seed 12)
/// matched at 0.08 and 0.27 (the two orders); the copies matched on the photos and
/// their edits (stress and tone sets, 578 pairs) 0.55 and over.
const TONE_MIN_TEXTURED_CORRELATION: f32 = 0.5;
/// Blocks (of the 16) that must be textured in both pictures. A tone curve is taken
/// from the whole picture: where most of it is flat (screenshots: a plain window and
/// a title bar) the curve maps the flat areas onto each other and little is left to
/// compare; 4 pairs of different screenshots of the photo benchmark matched so, with 1
/// to 4 such blocks. The copies matched on the photos: 5 to 16 (98% 8 or more).
const TONE_MIN_TEXTURED_BLOCKS: usize = 8;
/// Largest |ln| ratio of the spreads of two blocks of a tone-matched pair: a factor of
/// 1.65. The plain check lets one block's spread differ by any amount when the block
/// levels agree within [`BLOCK_MEAN_TOL`]; a tone curve can bring levels together, so
/// here the spreads must agree too. Two mosaics sharing a phantom and a chessboard
/// (30,000, seed 13), the rest a motorcycle and a blurred clock against the moon,
/// matched at 0.93 (levels at 0.14); the photos' copies 98% under 0.33.
const TONE_MAX_TEXTURE: f32 = 0.5;

/// The layout check of tone-matched grids: the plain one, and the stricter bounds
/// above.
fn tone_layout_agrees(l: &Layout) -> bool {
    layout_agrees(l) && l.textured_correlation >= TONE_MIN_TEXTURED_CORRELATION && l.textured_blocks >= TONE_MIN_TEXTURED_BLOCKS && l.texture <= TONE_MAX_TEXTURE
}

/// A grid's cells in order of level: each as its level's bits (grey levels are
/// non-negative, so the bits order like the floats) above its index.
fn ranked(v: &[f32]) -> Vec<u64> {
    let mut r: Vec<u64> = v.iter().enumerate().map(|(i, x)| (x.to_bits() as u64) << 32 | i as u64).collect();
    r.sort_unstable();
    r
}

/// Bins of grey levels (8 levels each) a tone curve is estimated over.
const TONE_BINS: usize = 32;

/// Puts `from` (ranked as `rf`) through the monotone tone curve that gives it the
/// other grid's levels (ranked as `rt`, same length): per bin of [`TONE_BINS`] of
/// `from`'s levels, the mean level of its cells goes to the mean of the other grid's
/// levels of the same ranks, and levels between bin means are interpolated. A curve,
/// as an edit applies, rather than a rank-by-rank exchange: cells of one level stay at
/// one level, where an exchange would spread a flat area's near-equal levels, ordered
/// by noise, over whatever the other picture holds at those ranks.
fn match_levels(from: &mut [f32], rf: &[u64], rt: &[u64]) {
    debug_assert_eq!(rf.len(), rt.len());
    let level = |r: u64| f32::from_bits((r >> 32) as u32);
    let bin = |v: f32| (v as usize * TONE_BINS / 256).min(TONE_BINS - 1);
    let mut curve: Vec<(f32, f32)> = Vec::with_capacity(TONE_BINS);
    let mut i = 0;
    while i < rf.len() {
        let b = bin(level(rf[i]));
        let mut j = i + 1;
        while j < rf.len() && bin(level(rf[j])) == b {
            j += 1;
        }
        let n = (j - i) as f32;
        let x = rf[i..j].iter().map(|&r| level(r)).sum::<f32>() / n;
        let y = rt[i..j].iter().map(|&r| level(r)).sum::<f32>() / n;
        curve.push((x, y));
        i = j;
    }
    // The cells in order of level walk the curve's segments in order.
    let mut k = 0;
    for &r in rf {
        let v = level(r);
        while k + 1 < curve.len() && curve[k + 1].0 <= v {
            k += 1;
        }
        let (x0, y0) = curve[k];
        from[r as u32 as usize] = match curve.get(k + 1) {
            Some(&(x1, y1)) if v > x0 => y0 + (y1 - y0) * (v - x0) / (x1 - x0),
            _ => y0,
        };
    }
}

/// Pixel score and layout check of an alignment of two decoded payloads.
fn agrees(p: &VerifyParams, a: &[u8], b: &[u8], m: &Match) -> bool {
    // compare just prepared both thumbnails: the layout check reuses their floats and grids.
    let (pa, pb) = (prep_of(a, p.max_crop), prep_of(b, p.max_crop));
    // The texture allowance of each thumbnail is computed once per preparation (a
    // picture meets many candidates), not twice per accepted-or-textured pair.
    accept_with(p, m, || pa.texture().min(pb.texture())) && layout_agrees(&aligned_layout(&pa, &pb, m))
}

/// [`layout`] of an alignment of two prepared payloads (in the order `m` was aligned
/// in), from the floats and grids their preparations already hold.
fn aligned_layout(pa: &Prep, pb: &Prep, m: &Match) -> Layout {
    let (ps, pd) = if m.flip { (pb, pa) } else { (pa, pb) };
    layout_grids(&ps.t, &m.crop, &pd.g32, pd.sd32)
}

/// Quick alignments rejected under this many times `max_diff` of differing pixels are
/// aligned again, thoroughly. The quick descent moves one side at a time from the two
/// best coarse hypotheses and stops at half of `max_diff`: where seams or edges make
/// the score jagged in the crop, it stops off the crop, or close enough for the pixel
/// score but with blocks a fraction of a cell apart, which the layout check rejects.
/// On 10,000 mosaics (bench/scale_run.py make_mosaics, seed 12) it rejected 24 of 241
/// cropped copies so; an exhaustive search over crops in steps of 1/24 of 1.25
/// `max_crop` aligned 28 of the 29 missed copies there at 0.00-0.02 of pixels
/// differing, and 26 of them then passed the layout check. Most thorough attempts are
/// of pairs that are no copies: of 11,908 at 20,000 mosaics under 0.25 (the texture
/// allowance's ceiling), 10,456 were over 0.15 and 3 of them were accepted; the photo
/// benchmark (mostly screenshots), 6,863 of 8,790 and 16 of 191. At 0.15 (twice
/// `max_diff`) the whole dedup of the photo benchmark's 1,392 images costs 8% more CPU
/// than without the thorough pass, at 0.25 21%.
const THOROUGH_BELOW: f32 = 2.0;
/// Share of `max_diff` the thorough alignment must reach: what the quick descent calls
/// a clear match. The thorough search tries many more crops, so it also brings other
/// pictures closer: at `max_diff` itself it merged the stereo pair of the benchmark
/// (motorcycle_left/right, photos at 1024 px, 0.074) and two mosaics sharing a
/// chessboard quadrant (20,000 mosaics, 0.071), while the copies it aligned there
/// scored 0.00-0.04 but one (0.066) (screenshots spread to 0.075, copies and other
/// screens alike).
/// Effect with both bounds, choosing on 20,000 mosaics of seed 11 (the set the other
/// defaults were chosen on): copies missed 34 → 14 of 1,967, no false removal; seed
/// 12, 10,000: 29 → 10 of 961, none; the photo benchmark, the same precision.
/// Descending thoroughly from the quick alignment only (not from the two best coarse
/// hypotheses again) cost 2% instead of 8% but missed 18 and 11.
const THOROUGH_ACCEPT: f32 = 0.5;

/// The verdict on an aligned pair: its share of differing pixels is within `max_diff`,
/// or, for fine-textured pictures (brick, grass, gravel, stars), within a fraction of
/// what the picture's own texture gives under a half-cell shift. A copy of a texture
/// that is aligned to within a fraction of a grid cell still disagrees on many pixels
/// (measured 0.08-0.25), while another photo of a smooth scene differs in far fewer
/// pixels than a texture moved by half a cell does (so it is not excused).
pub fn accept(p: &VerifyParams, m: &Match, ta: &[u8], tb: &[u8]) -> bool {
    accept_with(p, m, || texture(ta).min(texture(tb)))
}

/// [`accept`] with the pair's smaller [`texture`] given lazily (only pairs over
/// `max_diff` and within [`TEXTURE_MAX`] need it).
fn accept_with(p: &VerifyParams, m: &Match, texture_min: impl FnOnce() -> f32) -> bool {
    if m.diff <= p.max_diff {
        return true;
    }
    if m.diff > TEXTURE_MAX {
        return false;
    }
    m.diff <= TEXTURE_RATIO * texture_min()
}

/// Blocks per side of the layout check.
const BLOCKS: usize = 4;
/// Floor on a block's spread (in units of the picture's spread): in the texture ratio,
/// and below it in both pictures a block is flat (its correlation means nothing).
const BLOCK_FLOOR: f32 = 0.1;

/// The layout check's measures of an aligned pair (see [`layout`]).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Largest difference of block means, in units of the picture's spread.
    pub mean: f32,
    /// Largest |ln| ratio of block spreads.
    pub texture: f32,
    /// Smallest correlation of a block's cells between the pictures (1 for a block
    /// flat in both, 0 for one flat in one only).
    pub correlation: f32,
    /// Smallest correlation over the blocks with at least [`BLOCK_TEXTURE_LEVELS`] of
    /// grey-level spread in both pictures, however flat they are beside the rest of
    /// the picture (1 when there are none).
    pub textured_correlation: f32,
    /// How many of the [`BLOCKS`]² blocks are textured in grey levels in both pictures
    /// (those [`Layout::textured_correlation`] is taken over).
    pub textured_blocks: usize,
}

/// The layout check's measures over the aligned 32×32 grids, cut into
/// [`BLOCKS`]×[`BLOCKS`] blocks, after leaving out the blocks of one edge row and one
/// edge column (where watermarks go), the pair of edges that leaves the least
/// (chosen jointly for mean and texture, separately for correlation).
///
/// The pixel score counts pixels that differ by more than [`TAU`] in units of the
/// whole picture's spread; two pictures that share half their area can pass it when
/// the other half holds content of lower contrast (a brick wall against a moon surface
/// beside a high-contrast colour wheel or chessboard): at 20,000 mosaics of the photos
/// that share quadrants, the pixel score alone merged 14% wrongly. Such blocks differ
/// in level and texture energy, or their cells are not positively correlated, which a
/// recompressed, resized or slightly misaligned copy keeps.
pub fn layout(ta: &[u8], tb: &[u8], m: &Match) -> Layout {
    let (ts, td) = if m.flip { (tb, ta) } else { (ta, tb) };
    let mut b = Vec::new();
    sample(&to_f32(td), &[0.0; 4], FINE, &mut b);
    let sd_b = normalise(&mut b, FINE, 2);
    layout_grids(&to_f32(ts), &m.crop, &b, sd_b)
}

/// [`layout`] from the cropped picture's grey levels (`src`, cut by `crop`) and the
/// other picture's uncropped normalised 32×32 grid (`dst`) and the grey-level spread
/// it was divided by: [`verify`] passes what its [`Prep`] cache already holds for both.
fn layout_grids(src: &Thumb, crop: &Crop, b: &[f32], sd_b: f32) -> Layout {
    let mut a = Vec::new();
    sample(src, crop, FINE, &mut a);
    let sd_a = normalise(&mut a, FINE, 2);
    layout_of(&a, sd_a, b, sd_b)
}

/// [`layout`] of two aligned, normalised [`FINE`]×[`FINE`] grids and the grey-level
/// spreads they were divided by.
fn layout_of(a: &[f32], sd_a: f32, b: &[f32], sd_b: f32) -> Layout {
    let (mut dm, mut dt, mut dc) = ([[0f32; BLOCKS]; BLOCKS], [[0f32; BLOCKS]; BLOCKS], [[0f32; BLOCKS]; BLOCKS]);
    // Correlation of blocks textured in grey levels in both pictures (1 elsewhere).
    let mut dg = [[1f32; BLOCKS]; BLOCKS];
    let mut textured = 0;
    for by in 0..BLOCKS {
        for bx in 0..BLOCKS {
            let BlockStats { ma, mb, va, vb, cov } = block_stats(a, b, by, bx);
            dm[by][bx] = (ma - mb).abs();
            dt[by][bx] = ((va.sqrt() + BLOCK_FLOOR) / (vb.sqrt() + BLOCK_FLOOR)).ln().abs();
            let f = BLOCK_FLOOR * BLOCK_FLOOR;
            let corr = || cov / (va * vb).sqrt();
            dc[by][bx] = match (va < f, vb < f) {
                (true, true) => 1.0,
                (true, false) | (false, true) => 0.0,
                _ => corr(),
            };
            if va.sqrt() * sd_a >= BLOCK_TEXTURE_LEVELS && vb.sqrt() * sd_b >= BLOCK_TEXTURE_LEVELS {
                dg[by][bx] = corr();
                textured += 1;
            }
        }
    }
    let kept = |er: Option<usize>, ec: Option<usize>| (0..BLOCKS * BLOCKS).map(move |i| (i / BLOCKS, i % BLOCKS)).filter(move |&(y, x)| Some(y) != er && Some(x) != ec);
    let edges = [None, Some(0), Some(BLOCKS - 1)];
    let mut out = Layout { mean: f32::MAX, texture: f32::MAX, correlation: f32::MIN, textured_correlation: f32::MIN, textured_blocks: textured };
    for er in edges {
        for ec in edges {
            let wm = kept(er, ec).map(|(y, x)| dm[y][x]).fold(0.0, f32::max);
            let wt = kept(er, ec).map(|(y, x)| dt[y][x]).fold(0.0, f32::max);
            // One choice of edges for both: the one with the smaller sum of ratios.
            if wm / BLOCK_MEAN_TOL + wt / BLOCK_TEX_TOL < out.mean / BLOCK_MEAN_TOL + out.texture / BLOCK_TEX_TOL {
                (out.mean, out.texture) = (wm, wt);
            }
            out.correlation = out.correlation.max(kept(er, ec).map(|(y, x)| dc[y][x]).fold(f32::MAX, f32::min));
            out.textured_correlation = out.textured_correlation.max(kept(er, ec).map(|(y, x)| dg[y][x]).fold(f32::MAX, f32::min));
        }
    }
    out
}

/// Per-block measures of an aligned pair for choosing the layout check's rules (the
/// bench tool prints them): for each of the [`BLOCKS`]² blocks, row-major, the spread
/// of either grid (units of the picture's spread), the difference of means, the
/// correlation of the cells (NaN where either block is flat), and the spreads in grey
/// levels.
#[doc(hidden)]
pub fn layout_blocks(ta: &[u8], tb: &[u8], m: &Match) -> Vec<[f32; 6]> {
    let (ts, td) = if m.flip { (tb, ta) } else { (ta, tb) };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    sample(&to_f32(td), &[0.0; 4], FINE, &mut b);
    sample(&to_f32(ts), &m.crop, FINE, &mut a);
    let (sd_b, sd_a) = (normalise(&mut b, FINE, 2), normalise(&mut a, FINE, 2));
    let mut out = Vec::with_capacity(BLOCKS * BLOCKS);
    for by in 0..BLOCKS {
        for bx in 0..BLOCKS {
            let BlockStats { ma, mb, va, vb, cov } = block_stats(&a, &b, by, bx);
            let c = if va * vb > 0.0 { cov / (va * vb).sqrt() } else { f32::NAN };
            out.push([va.sqrt(), vb.sqrt(), ma - mb, c, va.sqrt() * sd_a, vb.sqrt() * sd_b]);
        }
    }
    out
}

/// Means, variances and covariance of the cells of block (`by`, `bx`) of two
/// [`FINE`]×[`FINE`] grids.
struct BlockStats {
    ma: f32,
    mb: f32,
    va: f32,
    vb: f32,
    cov: f32,
}

fn block_stats(a: &[f32], b: &[f32], by: usize, bx: usize) -> BlockStats {
    let k = FINE / BLOCKS;
    let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f32, 0f32, 0f32, 0f32, 0f32);
    for y in by * k..(by + 1) * k {
        for x in bx * k..(bx + 1) * k {
            let (p, q) = (a[y * FINE + x], b[y * FINE + x]);
            sa += p;
            sb += q;
            saa += p * p;
            sbb += q * q;
            sab += p * q;
        }
    }
    let n = (k * k) as f32;
    let (ma, mb) = (sa / n, sb / n);
    BlockStats { ma, mb, va: (saa / n - ma * ma).max(0.0), vb: (sbb / n - mb * mb).max(0.0), cov: sab / n - ma * mb }
}

/// Tolerances of the layout check (see [`layout`]): a pair is rejected when its worst
/// blocks differ by more than both, or some block is anti-correlated. Chosen with
/// `m6-dedup-bench image-pairs` (which prints the measures per aligned pair), simulating
/// the clusters, on the photo benchmark (true pairs reach 0.58 and 1.5 separately,
/// rarely both), its screenshots, and 3,000 mosaics of the photos that share some
/// quadrants (bench/scale_run.py make_mosaics, seed 11). Held out (looked at only
/// after the choice): 3,000 mosaics of seed 12 and the 20,000 of seed 11. Precision
/// of the pixel score alone → with this check: mosaics 0.980 → 1.0, seed 12 0.955 →
/// 0.993, 20,000 0.861 → 0.995 (recall 0.985 → 0.991); screenshots F1 0.79 → 0.81;
/// photo F1 0.9856 → 0.9839 (one copy, linked to its original by no other path, lost).
pub const BLOCK_MEAN_TOL: f32 = 0.15;
pub const BLOCK_TEX_TOL: f32 = 0.22;
/// Below this correlation of a block's cells a pair is rejected.
pub const BLOCK_MIN_CORRELATION: f32 = 0.0;
/// Grey levels of spread (0-255) from which a block counts as textured for
/// [`BLOCK_MIN_TEXTURED_CORRELATION`], whatever the rest of the picture holds.
pub const BLOCK_TEXTURE_LEVELS: f32 = 3.0;
/// Below this correlation of a block textured in both pictures a pair is rejected.
///
/// The checks above measure blocks in units of the whole picture's spread. Where half
/// a picture is high-contrast (a chessboard, a black silhouette on white) the other
/// half's textures (brick, gravel, a grey wall) fall under [`BLOCK_FLOOR`] of it and
/// count as flat, so two pictures that share only the high-contrast half were one: at
/// 50,000 mosaics of the photos (`bench/scale_run.py make_mosaics`, seed 11) 43 of the
/// 51 false removals were such direct matches (the rest chains through them), their
/// unshared blocks holding 6-15 grey levels of texture at correlations of -0.4 to 0.37.
/// A copy keeps its textures in place: of 797 sampled true removals of that run, 2
/// have a textured block under 0.2. Chosen there (3 levels / 0.2, against 5 levels and
/// 0.1-0.3), with the effect: precision 0.9896 → 0.9992, recall 0.9819 → 0.9809.
/// Held out (looked at after the choice): 30,000 mosaics of seed 12, precision 0.9908
/// → 0.9983, recall 0.9813 → 0.9793; the photo benchmark and the stress set, same
/// removals as before (pair by pair, it rejects 53 of 4,986 accepted true pairs there,
/// mostly screenshots of thin text, and 8 of 6,007, each linked to its group by
/// other pairs).
pub const BLOCK_MIN_TEXTURED_CORRELATION: f32 = 0.2;

/// Whether an accepted alignment also passes the layout check.
fn layout_agrees(l: &Layout) -> bool {
    !(l.mean > BLOCK_MEAN_TOL && l.texture > BLOCK_TEX_TOL) && l.correlation >= BLOCK_MIN_CORRELATION && l.textured_correlation >= BLOCK_MIN_TEXTURED_CORRELATION
}

/// Largest share of differing pixels the texture allowance can excuse.
const TEXTURE_MAX: f32 = 0.25;
/// A textured pair is accepted up to this fraction of its texture's half-cell score.
const TEXTURE_RATIO: f32 = 0.6;

/// Share of differing pixels between a thumbnail and itself moved by half a cell of
/// the 32x32 grid diagonally: how much a sub-cell misalignment alone costs it.
fn texture(t: &[u8]) -> f32 {
    texture_f32(&to_f32(t))
}

/// [`texture`] of a thumbnail already converted to floats.
fn texture_f32(t: &Thumb) -> f32 {
    let d = 0.25 / FINE as f32;
    let (mut a, mut b) = (Vec::with_capacity(FINE * FINE), Vec::with_capacity(FINE * FINE));
    sample(t, &[d, d, 0.0, 0.0], FINE, &mut a);
    normalise(&mut a, FINE, 2);
    sample(t, &[0.0, 0.0, d, d], FINE, &mut b);
    normalise(&mut b, FINE, 2);
    strip_score(&a, &b, FINE)
}

/// Hasher of the verdict memo: its keys are already blake3-derived, so mixing the
/// words is enough (SipHash showed up in profiles).
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        crate::minhash::fmix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).rotate_left(29).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
}

/// Best alignment of two payloads, `None` when a quick check already rules them out.
pub fn compare(p: &VerifyParams, a: &[u8], b: &[u8]) -> Option<Match> {
    if !decoded(a) || !decoded(b) {
        return None;
    }
    let hamming = near_enough(&hashes(a), &hashes(b), p.max_hamming)?;
    let (aa, ab) = (aspect(a), aspect(b));
    let lo = 1.0 - 2.0 * p.max_crop;
    // A crop of up to max_crop per side changes the aspect by at most 1/lo either way;
    // 6% more for rounding of small pictures and of the trimmed frame.
    let r = ab / aa.max(1e-6);
    if !(r >= lo / 1.06 && r <= 1.06 / lo) {
        return None;
    }
    let (diff, flip, crop) = align_prep(p.max_crop, p.max_diff, &prep_of(a, p.max_crop), aa, &prep_of(b, p.max_crop), ab, false);
    Some(Match { diff, hamming, flip, crop })
}

/// Similarity reported in the audit rows: 1 − share of differing pixels.
///
/// A pair [`verify`] aligned in this order (its canonical one: smaller exact key
/// first) takes the score it remembered: `compare` is a pure function of the payloads
/// and settings, and `max_hamming` (raised to 64 here) only decides whether it aligns
/// at all, which it did. Other pairs are aligned here.
pub fn similarity(p: &VerifyParams, a: &[u8], b: &[u8]) -> f32 {
    let (ka, kb) = (u64_at(a, 0), u64_at(b, 0));
    if ka <= kb && decoded(a) && decoded(b) {
        let known = MEMO.get().and_then(|m| m.lock().unwrap_or_else(|e| e.into_inner()).get(&memo_key(p, ka, kb)).copied());
        if let Some(v) = known.map(|v| v & NO_DIFF).filter(|&d| d != NO_DIFF) {
            return 1.0 - f32::from_bits(v);
        }
    }
    compare(&VerifyParams { max_hamming: 64, ..*p }, a, b).map_or(0.0, |m| 1.0 - m.diff)
}

/// Cells per side of the overlay check's grid over a thumbnail (8×8 pixels each).
const OVERLAY_GRID: usize = 6;
/// A cell differs when its mean normalised difference is over this many times the
/// median cell's, and over [`OVERLAY_MIN_CELL_DIFF`].
const OVERLAY_CELL_FACTOR: f32 = 3.0;
const OVERLAY_MIN_CELL_DIFF: f32 = 0.25;
/// At most this share of cells may differ: more is a global change (tone, crop), not
/// something laid over the picture.
const OVERLAY_MAX_CELLS: usize = OVERLAY_GRID * OVERLAY_GRID / 3;
/// Edge energy one side needs over the other in the differing cells.
const OVERLAY_ENERGY_RATIO: f32 = 1.15;

/// Of two copies of one picture whose content frames match (the keep rule's copies of
/// the largest content area), whether one carries something laid over the picture — a
/// text banner, a logo, a caption — that the other does not: `Some(true)` when `a`
/// does, `Some(false)` when `b` does, `None` when neither shows (recompression and
/// tone changes differ everywhere a little, not in a few cells a lot).
///
/// Overlays add edges where they sit (letters, a logo's outline, a banner's border), so
/// of the few cells where the normalised thumbnails differ, the copy with clearly more
/// edge energy there — relative to the two copies' ratio in the cells that agree — is
/// the overlaid one. Chosen on `bench/dedup_images.py`: a prototype on 48 px
/// thumbnails of its 87 pictures (Pillow's box resize, not the work picture's frame;
/// without the relative measure) named the banner copy in 74 and the logo copy in 74,
/// the original in 3 each, and no JPEG q30 copy. The relative measure is a guard added
/// afterwards: a copy that lost detail everywhere (q40, a blur) has less energy most
/// where the original has most, which the plain measure could read as an overlay on
/// the original (its effect alone was not measured: the bench figures in the stage
/// README are with it).
/// The keep rule's score (bytes per pixel × sharpness) had preferred the overlaid
/// copies, whose letters add both.
pub fn overlay_between(a: &[u8], b: &[u8]) -> Option<bool> {
    if !decoded(a) || !decoded(b) {
        return None;
    }
    let norm = |t: &[u8]| -> Vec<f32> {
        let n = t.len() as f32;
        let mean = t.iter().map(|&v| v as f32).sum::<f32>() / n;
        let sd = (t.iter().map(|&v| (v as f32 - mean).powi(2)).sum::<f32>() / n).sqrt().max(1.0);
        t.iter().map(|&v| (v as f32 - mean) / sd).collect()
    };
    let (za, zb) = (norm(thumb(a)), norm(thumb(b)));
    const CELLS: usize = OVERLAY_GRID * OVERLAY_GRID;
    let side = THUMB / OVERLAY_GRID;
    let cell = |x: usize, y: usize| (y / side) * OVERLAY_GRID + x / side;
    let (mut diff, mut ea, mut eb) = ([0f32; CELLS], [0f32; CELLS], [0f32; CELLS]);
    for y in 0..THUMB {
        for x in 0..THUMB {
            let i = y * THUMB + x;
            let c = cell(x, y);
            diff[c] += (za[i] - zb[i]).abs();
            if x + 1 < THUMB && y + 1 < THUMB {
                ea[c] += (za[i + 1] - za[i]).abs() + (za[i + THUMB] - za[i]).abs();
                eb[c] += (zb[i + 1] - zb[i]).abs() + (zb[i + THUMB] - zb[i]).abs();
            }
        }
    }
    for d in &mut diff {
        *d /= (side * side) as f32;
    }
    let mut sorted = diff;
    sorted.sort_by(f32::total_cmp);
    let median = (sorted[CELLS / 2 - 1] + sorted[CELLS / 2]) / 2.0;
    let bar = (OVERLAY_CELL_FACTOR * median).max(OVERLAY_MIN_CELL_DIFF);
    let differing: Vec<usize> = (0..CELLS).filter(|&c| diff[c] > bar).collect();
    if differing.is_empty() || differing.len() > OVERLAY_MAX_CELLS {
        return None;
    }
    let (sa, sb): (f32, f32) = (differing.iter().map(|&c| ea[c]).sum(), differing.iter().map(|&c| eb[c]).sum());
    // Measured against the cells that agree: a copy that lost detail everywhere (JPEG
    // q40, a blur) has less energy in every cell, most where there was most detail; an
    // overlay adds energy where it sits only.
    let (ra, rb): (f32, f32) = (0..CELLS).filter(|c| !differing.contains(c)).fold((0.0, 0.0), |(x, y), c| (x + ea[c], y + eb[c]));
    let rest = (ra.max(1e-3) / rb.max(1e-3)).max(1e-3);
    let local = sa.max(1e-3) / sb.max(1e-3);
    if local > OVERLAY_ENERGY_RATIO * rest {
        Some(true)
    } else if local * OVERLAY_ENERGY_RATIO < rest {
        Some(false)
    } else {
        None
    }
}

/// A crop of the source picture, as (left, top, right, bottom) fractions cut away.
type Crop = [f32; 4];

const COARSE: usize = 16;
const FINE: usize = 32;

/// Bilinear samples of `t` (THUMB×THUMB) over the crop's rectangle onto an n×n grid
/// of cell centres.
fn sample(t: &Thumb, c: &Crop, n: usize, out: &mut Vec<f32>) {
    out.clear();
    let s = THUMB as f32;
    let (x0, y0, x1, y1) = (c[0], c[1], 1.0 - c[2], 1.0 - c[3]);
    // Coordinates are clamped non-negative, so truncation is floor (and avoids a libm
    // call per sample on baseline x86-64).
    // n is a power of two (16 or 32), so multiplying by 1/n is exact scaling: the same
    // bits as dividing by n, without a division per coordinate.
    debug_assert!(n.is_power_of_two());
    let inv_n = 1.0 / n as f32;
    let coord = |lo: f32, hi: f32, i: usize| -> (usize, usize, f32) {
        let v = ((lo + (hi - lo) * (i as f32 + 0.5) * inv_n) * s - 0.5).clamp(0.0, s - 1.0);
        let f = v as usize;
        (f, (f + 1).min(THUMB - 1), v - f as f32)
    };
    let mut ys = [(0usize, 0usize, 0f32); FINE];
    for (j, y) in ys.iter_mut().enumerate().take(n) {
        *y = coord(y0, y1, j);
    }
    // Each output is `top + (bot - top) * fy` of the x-interpolations `a0 + (a1 - a0) *
    // fx` of its two source rows (the plain bilinear form, so the same bits). The
    // x-interpolations are made first for every output column over the run of source
    // rows the grid spans, reading two thumbnail columns contiguously, which
    // vectorises; then each output picks its two rows from them.
    let r0 = ys[..n].iter().map(|y| y.0).min().unwrap_or(0);
    let r1 = ys[..n].iter().map(|y| y.1 + 1).max().unwrap_or(1);
    let rows = r1 - r0;
    // Uninitialised: zeroing its 6 KiB cost more than a third of what this saves;
    // only the first `rows` cells of the first n columns are written, and only they
    // are read.
    let mut h = [[std::mem::MaybeUninit::<f32>::uninit(); THUMB]; FINE];
    for (i, hi) in h.iter_mut().enumerate().take(n) {
        let (xa, xb, fx) = coord(x0, x1, i);
        let ca = &t[xa * THUMB + r0..xa * THUMB + r1];
        let cb = &t[xb * THUMB + r0..xb * THUMB + r1];
        for ((o, &a0), &a1) in hi[..rows].iter_mut().zip(ca).zip(cb) {
            o.write(a0 + (a1 - a0) * fx);
        }
    }
    out.resize(n * n, 0.0);
    for (o, &(ya, yb, fy)) in out.chunks_exact_mut(n).zip(&ys[..n]) {
        let (ka, kb) = (ya - r0, yb - r0);
        for (o, hi) in o.iter_mut().zip(&h[..n]) {
            // r0 and r1 bound every row of ys, which `coord` clamps to the
            // thumbnail: ka and kb are below `rows` <= THUMB.
            debug_assert!(ka < rows && kb < rows);
            // SAFETY: ka and kb are below `rows` (see above), and the first `rows`
            // cells of each of the first n columns were written.
            let (top, bot) = unsafe { (hi.get_unchecked(ka).assume_init(), hi.get_unchecked(kb).assume_init()) };
            *o = top + (bot - top) * fy;
        }
    }
}

/// Column and row means of a thumbnail (its horizontal and vertical profiles).
fn profiles(t: &[u8]) -> ([f32; THUMB], [f32; THUMB]) {
    let (mut cols, mut rows) = ([0u32; THUMB], [0f32; THUMB]);
    for (y, r) in t.chunks_exact(THUMB).enumerate() {
        let mut s = 0u32;
        for (c, &v) in cols.iter_mut().zip(r) {
            *c += v as u32;
            s += v as u32;
        }
        rows[y] = s as f32 / THUMB as f32;
    }
    (cols.map(|c| c as f32 / THUMB as f32), rows)
}

/// Points a profile is resampled to for the coarse search.
const PROFILE: usize = 24;

/// A profile's stretch [lo, 1 − hi) linearly resampled to [`PROFILE`] points and
/// normalised like a grid (its central 3/4 sets mean and spread).
fn profile_crop(p: &[f32; THUMB], lo: f32, hi: f32) -> [f32; PROFILE] {
    let s = THUMB as f32;
    let mut out = [0f32; PROFILE];
    for (i, o) in out.iter_mut().enumerate() {
        let v = ((lo + (1.0 - hi - lo) * (i as f32 + 0.5) / PROFILE as f32) * s - 0.5).clamp(0.0, s - 1.0);
        let f = v as usize;
        let g = (f + 1).min(THUMB - 1);
        *o = p[f] + (p[g] - p[f]) * (v - f as f32);
    }
    normalise(&mut out, PROFILE, 1);
    out
}

/// Mean absolute difference of two normalised profiles, the worst eighth of points
/// left out (a banner or logo along one edge bends a profile there).
fn profile_err(a: &[f32; PROFILE], b: &[f32; PROFILE]) -> f32 {
    // Absolute differences are non-negative (and finite: grids are divided by a spread
    // of at least 4), and such floats order like their bit patterns: an integer sort
    // gives the order total_cmp gave, faster.
    let mut d = [0u32; PROFILE];
    for ((o, x), y) in d.iter_mut().zip(a).zip(b) {
        *o = (x - y).abs().to_bits();
    }
    d.sort_unstable();
    let keep = PROFILE - PROFILE / 8;
    d[..keep].iter().map(|&v| f32::from_bits(v)).sum::<f32>() / keep as f32
}

/// [1 2 1]/4 smoothing in both directions (edges repeated), for the coarse ranking:
/// fine texture (grass, gravel, star fields) then does not steer the search into the
/// wrong crop.
fn smooth(v: &mut [f32], n: usize) {
    // Only the coarse grid is smoothed (16×16 scratch: a 32×32 one cost a 4 KiB memset
    // per call, 162 calls per flat pair), so its side is a constant, and the edge cells
    // are done apart from the interior ones: the loops then vectorise. Each cell is the
    // same expression on the same neighbours as with clamped indices: the same bits.
    assert_eq!(n, COARSE);
    const N: usize = COARSE;
    let v: &mut [f32; N * N] = v.try_into().unwrap();
    let mut tmp = [0f32; N * N];
    for (r, t) in v.chunks_exact(N).zip(tmp.chunks_exact_mut(N)) {
        t[0] = (r[0] + 2.0 * r[0] + r[1]) / 4.0;
        for x in 1..N - 1 {
            t[x] = (r[x - 1] + 2.0 * r[x] + r[x + 1]) / 4.0;
        }
        t[N - 1] = (r[N - 2] + 2.0 * r[N - 1] + r[N - 1]) / 4.0;
    }
    for y in 0..N {
        let (u, d) = (y.saturating_sub(1), (y + 1).min(N - 1));
        for x in 0..N {
            v[y * N + x] = (tmp[u * N + x] + 2.0 * tmp[y * N + x] + tmp[d * N + x]) / 4.0;
        }
    }
}

#[cfg(test)]
fn mean_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

/// `mean_abs(grids[k], dst)` for every k, into `out[k]`. Each sum is one chain of
/// dependent float additions (its order fixes its bits, so it cannot be split), which
/// made the flat pictures' coarse search wait on add latency; eight grids are summed
/// side by side instead, each in its own accumulator and in the same order as alone,
/// so every result has the same bits.
fn mean_abs_batch(grids: &[&[f32; COARSE * COARSE]], dst: &[f32], out: &mut [f32]) {
    const LANES: usize = 8;
    let dst: &[f32; COARSE * COARSE] = dst.try_into().unwrap();
    for (g, o) in grids.chunks(LANES).zip(out.chunks_mut(LANES)) {
        // A short last batch repeats its first grid in the unused lanes.
        let mut lanes = [g[0]; LANES];
        lanes[..g.len()].copy_from_slice(g);
        // -0.0: where `Sum for f32` starts (every term is non-negative, so 0.0 would
        // give the same bits too).
        let mut acc = [-0.0f32; LANES];
        for (i, &d) in dst.iter().enumerate() {
            for (a, l) in acc.iter_mut().zip(&lanes) {
                *a += (l[i] - d).abs();
            }
        }
        for (o, a) in o.iter_mut().zip(acc) {
            *o = a / (COARSE * COARSE) as f32;
        }
    }
}

/// Normalises in place by the mean and standard deviation of the central region
/// (the middle 3/4 of each side; `dims` 1: of a line of n points), so edge
/// watermarks do not move the scale.
fn normalise(v: &mut [f32], n: usize, dims: usize) -> f32 {
    let (lo, hi) = (n / 8, n - n / 8);
    let (mut s, mut s2, mut k) = (0f64, 0f64, 0f64);
    let rows = if dims == 1 { 0..1 } else { lo..hi };
    for y in rows {
        for x in lo..hi {
            let p = v[y * n + x] as f64;
            s += p;
            s2 += p * p;
            k += 1.0;
        }
    }
    let m = s / k;
    // Floor on the spread: near-flat pictures are compared in grey levels / 4 rather
    // than having their noise blown up to unit variance.
    let sd = ((s2 / k - m * m).max(0.0).sqrt()).max(4.0);
    for p in v.iter_mut() {
        *p = ((*p as f64 - m) / sd) as f32;
    }
    sd as f32
}

/// Share of pixels differing by more than TAU, allowing one horizontal edge strip
/// (top or bottom) and one vertical edge strip (left or right), each at most n/8, to
/// be left out.
fn strip_score(a: &[f32], b: &[f32], n: usize) -> f32 {
    // The grid side as a constant: the per-pixel loop then vectorises (it runs once per
    // scored crop, ~500,000 times on the image benchmark). Only these two sides occur.
    match n {
        COARSE => strip_score_n::<COARSE>(a, b),
        FINE => strip_score_n::<FINE>(a, b),
        _ => panic!("strip_score of a {n}x{n} grid"),
    }
}

fn strip_score_n<const N: usize>(a: &[f32], b: &[f32]) -> f32 {
    let n = N;
    let (mut rows, mut cols) = ([0u32; N], [0u32; N]);
    let mut total = 0u32;
    for (y, (ra, rb)) in a.chunks_exact(N).zip(b.chunks_exact(N)).enumerate() {
        let (ra, rb): (&[f32; N], &[f32; N]) = (ra.try_into().unwrap(), rb.try_into().unwrap());
        let mut r = 0u32;
        for x in 0..N {
            let d = ((ra[x] - rb[x]).abs() > TAU) as u32;
            r += d;
            cols[x] += d;
        }
        rows[y] = r;
        total += r;
    }
    let mut best = total as f32 / (n * n) as f32;
    if total == 0 {
        return 0.0;
    }
    let e = n / 8;
    let ers = [e / 2, e];
    let ecs = [0, e / 2, e];
    // Bad pixels where an excluded row strip meets a column strip (counted once): for
    // each corner (top, left) and strip widths (ers[i], ecs[j]), from one pass over the
    // corner's e×e cells (distances dy, dx from its edges) instead of one per pair of
    // widths. Integer counts: the same as counting each rectangle separately.
    let mut corner = [[[[0u32; 3]; 2]; 2]; 2];
    for (ti, top) in [true, false].into_iter().enumerate() {
        for (li, left) in [true, false].into_iter().enumerate() {
            let k = &mut corner[ti][li];
            for dy in 0..e {
                let y = if top { dy } else { n - 1 - dy };
                for dx in 0..e {
                    let x = if left { dx } else { n - 1 - dx };
                    if (a[y * n + x] - b[y * n + x]).abs() > TAU {
                        for (i, &er) in ers.iter().enumerate() {
                            for (j, &ec) in ecs.iter().enumerate() {
                                k[i][j] += (dy < er && dx < ec) as u32;
                            }
                        }
                    }
                }
            }
        }
    }
    for (i, &er) in ers.iter().enumerate() {
        for (ti, top) in [true, false].into_iter().enumerate() {
            let rr = if top { 0..er } else { n - er..n };
            let row_bad: u32 = rows[rr].iter().sum();
            for (j, &ec) in ecs.iter().enumerate() {
                for (li, left) in [true, false].into_iter().enumerate() {
                    let cc = if left { 0..ec } else { n - ec..n };
                    let col_bad: u32 = cols[cc].iter().sum();
                    let left_bad = total - row_bad - col_bad + corner[ti][li][i][j];
                    let area = n * n - er * n - ec * n + er * ec;
                    best = best.min(left_bad as f32 / area as f32);
                }
            }
        }
    }
    // Columns alone (no row strip).
    for ec in [e / 2, e] {
        for left in [true, false] {
            let cc = if left { 0..ec } else { n - ec..n };
            let col_bad: u32 = cols[cc].iter().sum();
            best = best.min((total - col_bad) as f32 / (n * n - ec * n) as f32);
        }
    }
    best
}

/// Spread (standard deviation) of the central 3/4 of a profile, in grey levels.
fn spread(p: &[f32; THUMB]) -> f32 {
    let c = &p[THUMB / 8..THUMB - THUMB / 8];
    let m = c.iter().sum::<f32>() / c.len() as f32;
    (c.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / c.len() as f32).sqrt()
}

/// Below this spread (grey levels) a profile says nothing about a crop (a chessboard's
/// columns all average to one grey): the coarse search then compares whole grids.
/// Chosen on the benchmark's all-pairs list (`m6-dedup-bench image-pairs`): 6 sent
/// most screenshots to the grid search (alignment 1.5x slower) and found fewer copies;
/// 1 let 27% more false screenshot pairs through.
const FLAT_PROFILE: f32 = 3.0;

/// Smallest share of differing pixels over crops of either picture onto the other.
///
/// The coarse search is separable: a crop's left/right cut is judged on the column
/// profiles and its top/bottom cut on the row profiles (0, ½ and all of `max_crop` per
/// side, both directions): 2 × 18 one-dimensional comparisons instead of 2 × 81 grids.
/// Pictures with a flat profile (periodic patterns) fall back to comparing smoothed
/// 16×16 grids of every crop. The best few whole crops (whose shape matches the other
/// picture), and the uncropped one, are refined by coordinate descent on 16×16 grids,
/// then polished and scored on 32×32 grids.
/// What the alignment needs of one thumbnail whatever it is compared with: its grey
/// levels as floats, whether a profile is flat, its profiles cropped at the coarse
/// steps, and its uncropped grids. A row meets many candidates (a picture's copies
/// meet each other in many buckets), so [`compare`] keeps these per thread by exact
/// key instead of recomputing them for every pair; they are pure functions of the
/// thumbnail and `max_crop`, so the verdicts are the same.
struct Prep {
    t: Box<Thumb>,
    flat: bool,
    /// Column and row profiles cropped by (steps[i], steps[j]); [0][0] is uncropped.
    cols: [[[f32; PROFILE]; 3]; 3],
    rows: [[[f32; PROFILE]; 3]; 3],
    /// Uncropped normalised grids: 16×16, 32×32, and 16×16 smoothed (flat pictures).
    g16: Vec<f32>,
    g32: Vec<f32>,
    g16s: Vec<f32>,
    /// The grey-level spread `g32` was divided by (block spreads back in grey levels).
    sd32: f32,
    /// Flat pictures' coarse search compares smoothed 16×16 grids of the 81 crops on
    /// the coarse steps: each filled in when first needed (by (l, r, t, b) step index).
    crops: std::cell::RefCell<Vec<Option<Box<[f32; COARSE * COARSE]>>>>,
    /// [`texture`] of the thumbnail, computed when a pair first needs it.
    texture: std::cell::Cell<Option<f32>>,
}

impl Prep {
    fn new(t8: &[u8], max_crop: f32) -> Prep {
        let steps = [0.0, max_crop / 2.0, max_crop];
        let (pc, pr) = profiles(t8);
        let t = to_f32(t8);
        let flat = spread(&pc) < FLAT_PROFILE || spread(&pr) < FLAT_PROFILE;
        let (mut cols, mut rows) = ([[[0f32; PROFILE]; 3]; 3], [[[0f32; PROFILE]; 3]; 3]);
        for (i, &lo) in steps.iter().enumerate() {
            for (j, &hi) in steps.iter().enumerate() {
                cols[i][j] = profile_crop(&pc, lo, hi);
                rows[i][j] = profile_crop(&pr, lo, hi);
            }
        }
        let (mut g16, mut g32, mut g16s) = (Vec::new(), Vec::new(), Vec::new());
        sample(&t, &[0.0; 4], COARSE, &mut g16);
        // The smoothed grid starts from the same samples.
        g16s.extend_from_slice(&g16);
        normalise(&mut g16, COARSE, 2);
        sample(&t, &[0.0; 4], FINE, &mut g32);
        let sd32 = normalise(&mut g32, FINE, 2);
        smooth(&mut g16s, COARSE);
        normalise(&mut g16s, COARSE, 2);
        Prep { t, flat, cols, rows, g16, g32, g16s, sd32, crops: std::cell::RefCell::new(vec![None; 81]), texture: std::cell::Cell::new(None) }
    }

    /// [`texture`] of the thumbnail (the same value: it is a function of the floats).
    fn texture(&self) -> f32 {
        if let Some(t) = self.texture.get() {
            return t;
        }
        let t = texture_f32(&self.t);
        self.texture.set(Some(t));
        t
    }

    /// The smoothed, normalised 16×16 grid of crop `c`, whose sides are the coarse
    /// steps with indices `idx` (left, right, top, bottom).
    /// Heap and inline bytes this preparation can come to: a flat picture's crop
    /// grids are filled in as pairs need them, and are counted in full from the start
    /// (so the cache's budget is an upper bound).
    fn max_bytes(&self) -> usize {
        let grids = self.g16.capacity() + self.g32.capacity() + self.g16s.capacity();
        let crops = 81 * std::mem::size_of::<Option<Box<[f32; COARSE * COARSE]>>>() + if self.flat { 81 * std::mem::size_of::<[f32; COARSE * COARSE]>() } else { 0 };
        std::mem::size_of::<Prep>() + std::mem::size_of::<Thumb>() + 4 * grids + crops
    }

    /// Fills in (when missing) and returns the index in `crops` of that grid.
    fn ensure_crop(&self, c: &Crop, idx: [usize; 4], src: &mut Vec<f32>) -> usize {
        let i = ((idx[0] * 3 + idx[1]) * 3 + idx[2]) * 3 + idx[3];
        if self.crops.borrow()[i].is_none() {
            sample(&self.t, c, COARSE, src);
            smooth(src, COARSE);
            normalise(src, COARSE, 2);
            self.crops.borrow_mut()[i] = Some(Box::new(src[..].try_into().unwrap()));
        }
        i
    }
}

/// [`Prep`] of a payload's thumbnail, from this thread's cache (by exact key and
/// `max_crop`; at most [`PREP_CACHE_BYTES`] of preparations, emptied when full).
fn prep_of(p: &[u8], max_crop: f32) -> std::rc::Rc<Prep> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::hash::BuildHasherDefault;
    use std::rc::Rc;
    thread_local! {
        /// The preparations and the bytes they may hold (see [`Prep::max_bytes`]).
        static PREPS: RefCell<(HashMap<(u64, u32), Rc<Prep>, BuildHasherDefault<KeyHasher>>, usize)> = RefCell::new(Default::default());
    }
    let key = (u64_at(p, 0), max_crop.to_bits());
    if let Some(v) = PREPS.with(|m| m.borrow().0.get(&key).cloned()) {
        return v;
    }
    let v = Rc::new(Prep::new(thumb(p), max_crop));
    PREPS.with(|m| {
        let (m, bytes) = &mut *m.borrow_mut();
        if *bytes + v.max_bytes() > PREP_CACHE_BYTES {
            m.clear();
            *bytes = 0;
        }
        *bytes += v.max_bytes();
        m.insert(key, v.clone());
    });
    v
}

/// Bytes of the per-thread [`Prep`] cache, the same as the pairs phase's body cache
/// (`work_mb`'s default). It was 512 entries (9 MiB of ordinary pictures, 51 MiB if
/// all were flat); 32 MiB hold 1,850 ordinary pictures or 320 flat ones (whose
/// coarse-search grids take 83 KiB more). On the image benchmark (1,392 images, one
/// thread) 512 entries prepared each picture 7.6 times and the flat pictures' crop
/// grids 178,000 times; with this budget the whole dedup took 3.48 instead of 3.78
/// CPU-s (24 MiB: 3.55) and its peak RSS did not grow (106 MiB; it peaks in other
/// phases). Outputs are the same: the cache only decides what is recomputed.
const PREP_CACHE_BYTES: usize = 32 << 20;

/// [`align_prep`] of two bare thumbnails (the tests' entry).
#[cfg(test)]
fn align(max_crop: f32, max_diff: f32, ta: &[u8], aa: f32, tb: &[u8], ab: f32) -> f32 {
    align_prep(max_crop, max_diff, &Prep::new(ta, max_crop), aa, &Prep::new(tb, max_crop), ab, false).0
}

/// The alignment: (share of differing pixels, whether the second picture is the
/// cropped one, the crop).
fn align_prep(max_crop: f32, max_diff: f32, pa: &Prep, aa: f32, pb: &Prep, ab: f32, thorough: bool) -> (f32, bool, Crop) {
    let (ta, tb) = (&*pa.t, &*pb.t);
    let steps = [0.0, max_crop / 2.0, max_crop];
    let flat = pa.flat || pb.flat;
    // The three best hypotheses, ties in push order (what a stable sort of all of them
    // and a truncate gave), kept as they are pushed.
    let mut top: Vec<(f32, bool, Crop)> = Vec::with_capacity(4);
    let mut pushed = false;
    let mut push = |c: (f32, bool, Crop)| {
        pushed = true;
        let at = top.iter().position(|t| c.0.total_cmp(&t.0) == std::cmp::Ordering::Less).unwrap_or(top.len());
        if at < 3 {
            top.insert(at, c);
            top.truncate(3);
        }
    };
    let mut src = Vec::new();
    // Flat pictures' candidate crops of one direction: (crop, index of its grid).
    let mut cands: Vec<(Crop, usize)> = Vec::with_capacity(81);
    let mut errs = [0f32; 81];
    for flip in [false, true] {
        let (ps, as_, pd, ad) = if flip { (pb, ab, pa, aa) } else { (pa, aa, pb, ab) };
        let (dc, dr) = (&pd.cols[0][0], &pd.rows[0][0]);
        let (mut ex, mut ey) = ([[0f32; 3]; 3], [[0f32; 3]; 3]);
        let dst = &pd.g16s;
        if !flat {
            for i in 0..3 {
                for j in 0..3 {
                    ex[i][j] = profile_err(&ps.cols[i][j], dc);
                    ey[i][j] = profile_err(&ps.rows[i][j], dr);
                }
            }
        }
        for (li, &l) in steps.iter().enumerate() {
            for (ri, &r) in steps.iter().enumerate() {
                for (ti, &t) in steps.iter().enumerate() {
                    for (bi, &b) in steps.iter().enumerate() {
                        // The cropped source must have the destination's shape.
                        let crop_aspect = as_ * (1.0 - l - r) / (1.0 - t - b);
                        let q = crop_aspect / ad.max(1e-6);
                        if !(0.9..=1.0 / 0.9).contains(&q) {
                            continue;
                        }
                        let c = [l, t, r, b];
                        if flat {
                            cands.push((c, ps.ensure_crop(&c, [li, ri, ti, bi], &mut src)));
                        } else {
                            push((ex[li][ri] + ey[ti][bi], flip, c));
                        }
                    }
                }
            }
        }
        if flat && !cands.is_empty() {
            let crops = ps.crops.borrow();
            let grids: Vec<&[f32; COARSE * COARSE]> = cands.iter().map(|&(_, i)| &**crops[i].as_ref().unwrap()).collect();
            mean_abs_batch(&grids, dst, &mut errs[..cands.len()]);
            for (&(c, _), &e) in cands.iter().zip(&errs) {
                push((e, flip, c));
            }
            cands.clear();
        }
    }
    if !pushed {
        return (1.0, false, [0.0; 4]);
    }
    let mut coarse = top;
    // Copies that were only resized, recompressed, padded or re-toned need no crop; a
    // profile bent by a watermark must not hide that hypothesis.
    if !coarse.iter().any(|c| c.2 == [0.0; 4]) {
        coarse.push((0.0, false, [0.0; 4]));
    }
    let step = max_crop / 4.0;
    // Destination grids of both directions, small and fine.
    let dsts: [[&[f32]; 2]; 2] = [[&pb.g16, &pb.g32], [&pa.g16, &pa.g32]];
    // Scores already computed in this call, by (direction, crop, grid): the descent
    // steps back onto crops it has scored (a move by -step makes +step the old crop),
    // and the fine pass starts where the small one stopped. Bitwise-equal crops give
    // the same score, so looking them up changes nothing but the cost.
    let mut memo: Vec<(bool, Crop, usize, f32)> = Vec::with_capacity(64);
    let eval = |flip: bool, c: &Crop, k: usize, src: &mut Vec<f32>, memo: &mut Vec<(bool, Crop, usize, f32)>| -> f32 {
        if let Some(m) = memo.iter().find(|m| m.0 == flip && m.2 == k && m.1.map(f32::to_bits) == c.map(f32::to_bits)) {
            return m.3;
        }
        let n = [COARSE, FINE][k];
        sample(if flip { tb } else { ta }, c, n, src);
        normalise(src, n, 2);
        let s = strip_score(src, dsts[flip as usize][k], n);
        memo.push((flip, *c, k, s));
        s
    };
    // Coordinate descent over the four sides; a clear match needs no polishing (unless
    // thorough: a pair that failed the layout check may be a clear match off by a
    // fraction of a cell).
    let descend = |flip: bool, c: &mut Crop, cur: &mut f32, steps: &[f32], k: usize, src: &mut Vec<f32>, memo: &mut Vec<(bool, Crop, usize, f32)>| {
        for &step in steps {
            if *cur <= max_diff / 2.0 && !thorough {
                break;
            }
            for _ in 0..if thorough { THOROUGH_PASSES } else { 1 } {
                let mut moved = false;
                for mv in &MOVES[..if thorough { MOVES.len() } else { 4 }] {
                    for d in [-step, step] {
                        let mut t = *c;
                        for (side, &w) in mv.iter().enumerate() {
                            t[side] = (t[side] + d * w).clamp(0.0, max_crop * 1.25);
                        }
                        if t == *c {
                            continue;
                        }
                        let s = eval(flip, &t, k, src, memo);
                        if s < *cur {
                            *cur = s;
                            *c = t;
                            moved = true;
                        }
                    }
                }
                if !moved {
                    break;
                }
            }
        }
    };
    let mut src = Vec::new();
    // Every hypothesis is scored on the small grid; the descent starts from the two
    // best of them only.
    let mut starts: Vec<(f32, bool, Crop)> = coarse.iter().map(|&(_, flip, c)| (eval(flip, &c, 0, &mut src, &mut memo), flip, c)).collect();
    starts.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut best = (1.0f32, false, [0.0f32; 4]);
    for &(s0, flip, c0) in starts.iter().take(2) {
        let (mut c, mut cur) = (c0, s0);
        // Small grid: one pass at a quarter of max_crop, one at an eighth (a third pass
        // found nothing more on the benchmark and cost 10% of the alignment time).
        descend(flip, &mut c, &mut cur, &[step, step / 2.0], 0, &mut src, &mut memo);
        if cur > HOPELESS {
            if cur < best.0 {
                best = (cur, flip, c);
            }
            continue;
        }
        let mut fine = eval(flip, &c, 1, &mut src, &mut memo);
        // A 16-cell grid cannot resolve the last sixteenth of a crop: pairs near the
        // threshold get one pass at that step on the fine grid.
        if fine < 2.0 * max_diff {
            descend(flip, &mut c, &mut fine, &[step / 4.0], 1, &mut src, &mut memo);
        }
        if fine < best.0 {
            best = (fine, flip, c);
        }
        if best.0 <= max_diff / 2.0 {
            break;
        }
    }
    best
}

/// The descent's moves of a crop (left, top, right, bottom), by one step each way: one
/// side at a time, then (thorough only) a shift along either axis, and all four sides
/// at once (a change of scale). One side at a time, a crop that is off in position
/// cannot move: either side alone changes the scale too and scores worse.
const MOVES: [[f32; 4]; 7] = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0], [1.0, 1.0, 1.0, 1.0]];
/// Passes of the thorough descent at each step (it stops early when a pass moves nothing).
const THOROUGH_PASSES: usize = 4;

/// A share of differing pixels on the small grid, after its descent, from which no
/// duplicate on the benchmark came back under the threshold on the fine grid.
const HOPELESS: f32 = 0.3;

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(n: usize, f: impl Fn(usize, usize) -> bool) -> f32 {
        let a: Vec<f32> = (0..n * n).map(|i| if f(i % n, i / n) { 5.0 } else { 0.0 }).collect();
        strip_score(&a, &vec![0.0; n * n], n)
    }

    /// A thumbnail of the rectangle of the unit square left after cutting `c`
    /// (left, top, right, bottom fractions) from a picture drawn by `f`.
    fn draw(c: Crop, f: fn(f32, f32) -> f32) -> Vec<u8> {
        (0..THUMB * THUMB)
            .map(|i| {
                let (x, y) = ((i % THUMB) as f32 + 0.5, (i / THUMB) as f32 + 0.5);
                let u = c[0] + (1.0 - c[0] - c[2]) * x / THUMB as f32;
                let v = c[1] + (1.0 - c[1] - c[3]) * y / THUMB as f32;
                f(u, v).clamp(0.0, 255.0) as u8
            })
            .collect()
    }

    fn scene(u: f32, v: f32) -> f32 {
        128.0 + 60.0 * (7.0 * u + 2.0 * v * v).sin() + 40.0 * (5.0 * v - 3.0 * u * u).cos() + 20.0 * (13.0 * u * v).sin()
    }

    fn chessboard(u: f32, v: f32) -> f32 {
        if ((u * 8.0) as i32 + (v * 8.0) as i32) % 2 == 0 { 40.0 } else { 210.0 }
    }

    fn aspect_of(c: Crop) -> f32 {
        (1.0 - c[0] - c[2]) / (1.0 - c[1] - c[3])
    }

    #[test]
    fn off_grid_crops_are_aligned_both_ways_and_other_parts_are_not() {
        let orig = draw([0.0; 4], scene);
        // Not on the coarse steps (0, 5%, 10%): the descent has to find it.
        let c = [0.07, 0.02, 0.03, 0.09];
        let copy = draw(c, scene);
        assert!(align(0.1, 0.075, &orig, 1.0, &copy, aspect_of(c)) < 0.03);
        assert!(align(0.1, 0.075, &copy, aspect_of(c), &orig, 1.0) < 0.03);
        let (l, r) = ([0.0, 0.0, 0.45, 0.0], [0.45, 0.0, 0.0, 0.0]);
        assert!(align(0.1, 0.075, &draw(l, scene), aspect_of(l), &draw(r, scene), aspect_of(r)) > 0.2);
    }

    #[test]
    fn periodic_pictures_fall_back_to_the_grid_search() {
        let orig = draw([0.0; 4], chessboard);
        let (cols, rows) = profiles(&orig);
        assert!(spread(&cols) < FLAT_PROFILE && spread(&rows) < FLAT_PROFILE, "a chessboard's profiles are flat");
        let c = [0.1, 0.05, 0.0, 0.05];
        assert!(align(0.1, 0.075, &orig, 1.0, &draw(c, chessboard), aspect_of(c)) < 0.03);
    }

    /// A fine texture (grass-like: detail at the thumbnail's pixel scale).
    fn grain(u: f32, v: f32) -> f32 {
        let h = |x: f32, y: f32| ((x * 12.9898 + y * 78.233).sin() * 43758.547).fract();
        let (x, y) = (u * THUMB as f32, v * THUMB as f32);
        let (fx, fy) = (x.fract(), y.fract());
        let (x0, y0) = (x.floor(), y.floor());
        let l = |a: f32, b: f32, t: f32| a + (b - a) * t;
        40.0 + 170.0 * l(l(h(x0, y0), h(x0 + 1.0, y0), fx), l(h(x0, y0 + 1.0), h(x0 + 1.0, y0 + 1.0), fx), fy)
    }

    #[test]
    fn fine_textures_are_excused_their_subcell_misalignment_and_smooth_scenes_are_not() {
        assert!(texture(&draw([0.0; 4], grain)) > 3.0 * texture(&draw([0.0; 4], scene)), "grain {} scene {}", texture(&draw([0.0; 4], grain)), texture(&draw([0.0; 4], scene)));
        let p = VerifyParams { max_hamming: 64, max_crop: 0.1, max_diff: 0.075 };
        // The same pair score is excused for the texture only.
        let (g, s) = (draw([0.0; 4], grain), draw([0.0; 4], scene));
        let d = (0.5 * texture(&g)).min(TEXTURE_MAX);
        assert!(d > p.max_diff, "the grain allowance reaches past max_diff ({d}, texture {})", texture(&g));
        let m = Match { diff: d, hamming: 0, flip: false, crop: [0.0; 4] };
        assert!(accept(&p, &m, &g, &g));
        assert!(!accept(&p, &m, &s, &s));
        assert!(!accept(&p, &m, &g, &s), "the smoother picture of a pair decides");
        assert!(!accept(&p, &Match { diff: TEXTURE_MAX + 0.01, hamming: 0, flip: false, crop: [0.0; 4] }, &g, &g));
        // Another part of the same texture is no copy.
        let (l, r) = ([0.0, 0.0, 0.45, 0.0], [0.45, 0.0, 0.0, 0.0]);
        let (tl, tr) = (draw(l, grain), draw(r, grain));
        let d = align(0.1, 0.075, &tl, aspect_of(l), &tr, aspect_of(r));
        assert!(!accept(&p, &Match { diff: d, hamming: 0, flip: false, crop: [0.0; 4] }, &tl, &tr), "other part scored {d}");
    }

    /// The payload of a drawn picture (cut by `c`) under exact key `key`, with no hashes.
    fn payload(key: u64, c: Crop, f: fn(f32, f32) -> f32) -> Vec<u8> {
        let sig = ImageSig { hashes: [0; WINDOWS], thumb: draw(c, f), aspect: aspect_of(c), frame_pixels: 10_000.0, width: 100, height: 100, decode_scale: 1, sharpness: 0.0, damaged: false, lossless: None, grey: false, variety: None };
        let mut out = vec![];
        encode_payload(key, Some(&sig), false, 0, &mut out);
        out
    }

    /// `compare` takes each thumbnail's [`Prep`] from a per-thread cache: cold or warm,
    /// and in either order, it scores a pair exactly as the uncached alignment does.
    #[test]
    fn cached_preparation_scores_exactly_like_a_fresh_one() {
        let p = VerifyParams { max_hamming: 64, max_crop: 0.1, max_diff: 0.075 };
        let c = [0.07, 0.02, 0.03, 0.09];
        let cases = [(payload(11, [0.0; 4], scene), payload(12, c, scene)), (payload(13, [0.0; 4], chessboard), payload(14, [0.1, 0.05, 0.0, 0.05], chessboard)), (payload(15, [0.0; 4], grain), payload(16, c, scene))];
        for (a, b) in &cases {
            let fresh = align(p.max_crop, p.max_diff, thumb(a), aspect(a), thumb(b), aspect(b));
            for _ in 0..2 {
                assert_eq!(compare(&p, a, b).unwrap().diff.to_bits(), fresh.to_bits());
            }
            let back = align(p.max_crop, p.max_diff, thumb(b), aspect(b), thumb(a), aspect(a));
            assert_eq!(compare(&p, b, a).unwrap().diff.to_bits(), back.to_bits());
        }
        // Another max_crop is another preparation, not the cached one.
        let q = VerifyParams { max_crop: 0.05, ..p };
        let (a, b) = &cases[0];
        assert_eq!(compare(&q, a, b).unwrap().diff.to_bits(), align(0.05, p.max_diff, thumb(a), aspect(a), thumb(b), aspect(b)).to_bits());
    }

    /// The straightforward forms `sample`, `smooth` and `strip_score` had before they were made
    /// faster: the fast ones must give the same bits (verdicts may not move).
    fn sample_ref(t: &Thumb, c: &Crop, n: usize) -> Vec<f32> {
        let s = THUMB as f32;
        let (x0, y0, x1, y1) = (c[0], c[1], 1.0 - c[2], 1.0 - c[3]);
        let coord = |lo: f32, hi: f32, i: usize| -> (usize, usize, f32) {
            let v = ((lo + (hi - lo) * (i as f32 + 0.5) / n as f32) * s - 0.5).clamp(0.0, s - 1.0);
            let f = v as usize;
            (f, (f + 1).min(THUMB - 1), v - f as f32)
        };
        let mut out = vec![0f32; n * n];
        for j in 0..n {
            let (ya, yb, fy) = coord(y0, y1, j);
            for i in 0..n {
                let (xa, xb, fx) = coord(x0, x1, i);
                let (a0, a1, b0, b1) = (t[ya * THUMB + xa], t[ya * THUMB + xb], t[yb * THUMB + xa], t[yb * THUMB + xb]);
                let top = a0 + (a1 - a0) * fx;
                let bot = b0 + (b1 - b0) * fx;
                out[j * n + i] = top + (bot - top) * fy;
            }
        }
        out
    }

    fn smooth_ref(v: &mut [f32], n: usize) {
        let mut tmp = vec![0f32; n * n];
        for y in 0..n {
            for x in 0..n {
                let l = v[y * n + x.saturating_sub(1)];
                let r = v[y * n + (x + 1).min(n - 1)];
                tmp[y * n + x] = (l + 2.0 * v[y * n + x] + r) / 4.0;
            }
        }
        for y in 0..n {
            for x in 0..n {
                let u = tmp[y.saturating_sub(1) * n + x];
                let d = tmp[(y + 1).min(n - 1) * n + x];
                v[y * n + x] = (u + 2.0 * tmp[y * n + x] + d) / 4.0;
            }
        }
    }

    fn strip_score_ref(a: &[f32], b: &[f32], n: usize) -> f32 {
        let bad = |i: usize| (a[i] - b[i]).abs() > TAU;
        let total = (0..n * n).filter(|&i| bad(i)).count() as u32;
        let count = |ys: std::ops::Range<usize>, xs: std::ops::Range<usize>| ys.map(|y| xs.clone().filter(|&x| bad(y * n + x)).count() as u32).sum::<u32>();
        let mut best = total as f32 / (n * n) as f32;
        if total == 0 {
            return 0.0;
        }
        let e = n / 8;
        for er in [e / 2, e] {
            for top in [true, false] {
                let rr = if top { 0..er } else { n - er..n };
                for ec in [0, e / 2, e] {
                    for left in [true, false] {
                        let cc = if left { 0..ec } else { n - ec..n };
                        let left_bad = total - count(rr.clone(), 0..n) - count(0..n, cc.clone()) + count(rr.clone(), cc.clone());
                        best = best.min(left_bad as f32 / (n * n - er * n - ec * n + er * ec) as f32);
                    }
                }
            }
        }
        for ec in [e / 2, e] {
            for left in [true, false] {
                let cc = if left { 0..ec } else { n - ec..n };
                best = best.min((total - count(0..n, cc)) as f32 / (n * n - ec * n) as f32);
            }
        }
        best
    }

    /// A small xorshift: reproducible pseudo-random thumbnails, crops and grids.
    fn xorshift(mut st: u64) -> impl FnMut() -> u64 {
        move || {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            st
        }
    }

    #[test]
    fn fast_sampling_and_scoring_give_the_reference_bits() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let mut rnd = move || (next() >> 40) as f32 / (1u64 << 24) as f32;
        for round in 0..200 {
            let t8: Vec<u8> = (0..THUMB * THUMB).map(|_| (rnd() * 256.0) as u8).collect();
            let t = to_f32(&t8);
            let rows: Box<Thumb> = Box::new(std::array::from_fn(|i| t8[i] as f32));
            // Crops on and off the search's steps, up to 1.25 max_crop, and some zero sides.
            let c: Crop = std::array::from_fn(|_| if rnd() < 0.2 { 0.0 } else { rnd() * 0.125 });
            for n in [COARSE, FINE] {
                let mut got = vec![];
                sample(&t, &c, n, &mut got);
                let want = sample_ref(&rows, &c, n);
                assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "round {round} crop {c:?} n {n}");
                if n == COARSE {
                    let (mut fast, mut plain) = (got.clone(), got.clone());
                    smooth(&mut fast, n);
                    smooth_ref(&mut plain, n);
                    assert_eq!(fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "smooth, round {round}");
                }
                // Grids that disagree in a varying share of pixels, edges and corners included.
                let p = rnd();
                let other: Vec<f32> = got.iter().map(|&v| if rnd() < p { v + 2.0 * TAU } else { v + 0.5 * TAU }).collect();
                assert_eq!(strip_score(&got, &other, n).to_bits(), strip_score_ref(&got, &other, n).to_bits(), "round {round} n {n}");
            }
        }
    }

    #[test]
    fn batched_mean_abs_gives_each_grids_bits() {
        let mut next = xorshift(0x1234_5678_9ABC_DEF1);
        let mut rnd = move || (next() >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 3.0;
        let dst: Vec<f32> = (0..COARSE * COARSE).map(|_| rnd()).collect();
        let grids: Vec<[f32; COARSE * COARSE]> = (0..19).map(|_| std::array::from_fn(|_| rnd())).collect();
        for n in [1, 7, 8, 9, 19] {
            let refs: Vec<&[f32; COARSE * COARSE]> = grids[..n].iter().collect();
            let mut out = vec![0f32; n];
            mean_abs_batch(&refs, &dst, &mut out);
            for (g, o) in grids.iter().zip(&out) {
                assert_eq!(o.to_bits(), mean_abs(g, &dst).to_bits());
            }
        }
    }

    #[test]
    fn min_hamming_matches_the_scalar_loop() {
        let mut rnd = xorshift(0x2545_F491_4F6C_DD1D);
        for _ in 0..2000 {
            let a: [u64; WINDOWS] = std::array::from_fn(|_| rnd());
            // Near copies too: a few bits flipped in one window.
            let mut b: [u64; WINDOWS] = std::array::from_fn(|_| rnd());
            let (i, j) = ((rnd() % WINDOWS as u64) as usize, (rnd() % WINDOWS as u64) as usize);
            b[i] = a[j] ^ (rnd() & rnd() & rnd() & rnd());
            assert_eq!(min_hamming(&a, &b), min_hamming_any(&a, &b));
        }
        assert_eq!(min_hamming(&[0; WINDOWS], &[0; WINDOWS]), 0);
        assert_eq!(min_hamming(&[0; WINDOWS], &[u64::MAX; WINDOWS]), 64);
    }

    /// `n` of the low bits set: a hash at distance `n` from another when XORed in.
    fn bits(n: u32) -> u64 {
        (1u64 << n) - 1
    }

    #[test]
    fn one_window_pair_at_the_limit_needs_a_second() {
        let mut rnd = xorshift(0x9E37_79B9_7F4A_7C15);
        let max = 14;
        for _ in 0..200 {
            let a: [u64; WINDOWS] = std::array::from_fn(|_| rnd());
            let mut b: [u64; WINDOWS] = std::array::from_fn(|_| rnd());
            // Unrelated random hashes are ~32 bits apart; skip the rare draw that is not.
            if min_hamming(&a, &b) <= max + 4 {
                continue;
            }
            let far = b;
            b[2] = a[5] ^ bits(max + 2);
            assert_eq!(near_enough(&a, &b, max), None, "over the limit");
            b[2] = a[5] ^ bits(max);
            assert_eq!(near_enough(&a, &b, max), None, "one pair at the limit alone");
            b[4] = a[0] ^ bits(max).rotate_left(20);
            assert_eq!(near_enough(&a, &b, max), Some(max), "two pairs at the limit");
            let mut c = far;
            c[3] = a[3] ^ bits(max - CORROBORATE_BELOW);
            assert_eq!(near_enough(&a, &c, max), Some(max - CORROBORATE_BELOW), "one pair under the margin");
            assert_eq!(min_hamming(&a, &c), max - CORROBORATE_BELOW);
        }
    }

    /// `similarity` takes the score `verify` remembered only where that is the score it
    /// would compute: same order, same settings.
    #[test]
    fn remembered_scores_are_the_similarity_of_the_pair() {
        let p = VerifyParams { max_hamming: 3, max_crop: 0.1, max_diff: 0.075 };
        let fresh = |a: &[u8], b: &[u8]| compare(&VerifyParams { max_hamming: 64, ..p }, a, b).map_or(0.0, |m| 1.0 - m.diff);
        let c = [0.07, 0.02, 0.03, 0.09];
        // A copy (accepted) and another picture (rejected after aligning), keys both ways round.
        for (a, b) in [(payload(901, [0.0; 4], scene), payload(902, c, scene)), (payload(904, [0.0; 4], scene), payload(903, [0.0; 4], grain))] {
            let before = (fresh(&a, &b).to_bits(), fresh(&b, &a).to_bits());
            verify(&p, &a, &b);
            assert_eq!((similarity(&p, &a, &b).to_bits(), similarity(&p, &b, &a).to_bits()), before);
            // Other settings are another memo entry.
            let q = VerifyParams { max_diff: 0.2, ..p };
            assert_eq!(similarity(&q, &a, &b).to_bits(), compare(&VerifyParams { max_hamming: 64, ..q }, &a, &b).map_or(0.0, |m| 1.0 - m.diff).to_bits());
        }
    }

    #[test]
    fn edge_strips_are_excused_and_centre_differences_are_not() {
        // A banner along the bottom (3 of 32 rows) is left out entirely.
        assert_eq!(strip(32, |_, y| y >= 29), 0.0);
        // A logo in the top-right corner too.
        assert_eq!(strip(32, |x, y| x >= 28 && y < 4), 0.0);
        // The same area in the middle counts.
        assert!(strip(32, |x, y| (14..18).contains(&x) && (10..22).contains(&y)) > 0.04);
    }

}
