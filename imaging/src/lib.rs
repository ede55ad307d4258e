//! Image decoding at the scale each step needs, shared by dedup, filter and tokenize.
//!
//! A 64-bit hash needs a 32×32 picture and a blank-image rule a 64×64 one, yet a
//! full decode of a 12-megapixel JPEG costs about as much as everything else the
//! stage does. JPEG stores 8×8 DCT blocks, so [`decode_gray`] asks jpeg-decoder for
//! a reduced-size inverse DCT (1/2, 1/4 or 1/8: 4×4, 2×2 or 1×1 outputs per block);
//! every entropy-coded bit is still read, so a stream whose codes break still fails
//! (most damage does not break them: [`jpeg_dc`] looks further). Where 1/2, 1/4
//! or 1/8 is enough and the grey may be JPEG's own luma, [`jpeg_dc`] reads baseline
//! and progressive files itself, keeping only the luma coefficients those scales
//! need, and at 1/2 too. JPEGs too small for a 1/2 cut decode only their luma plane,
//! at full size, in one thread (zune-jpeg). Other formats decode in full and are box-averaged down. [`probe`] reads only the header.

#[doc(hidden)]
pub mod alloc_probe;
pub mod exif;
pub mod jpeg_dc;
pub mod quality;
pub mod tones;

use std::io::Cursor;

/// A grey picture, row-major, values 0–255.
#[derive(Debug, Clone)]
pub struct Gray {
    pub w: usize,
    pub h: usize,
    pub px: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("image is empty ({0}x{1})")]
    Empty(u32, u32),
    /// Entropy-coded JPEG data that decoders would read through, filling the picture
    /// with garbage from the damage on ([`jpeg_dc`]'s module note says what is found).
    #[error("JPEG data is damaged: {0}")]
    Damaged(String),
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.len() > 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
}

/// For an encoded image that stores its pixels losslessly (PNG, BMP, lossless WebP: a
/// `VP8L` bitstream, bare or in an extended file), whether it stores colour: `false`
/// for grey PNGs (with or without alpha), `true` for the rest (a palette may hold
/// colours; lossless WebP is always ARGB). `None` for lossy formats, GIF among them (a
/// photo saved as GIF has lost colours to its palette), and for anything else. Two
/// lossless files of the same picture and the same kind differ only in how well
/// their encoders packed it.
pub fn lossless(bytes: &[u8]) -> Option<bool> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        // IHDR first: colour type at byte 25; bit 1 set for RGB, palette and RGBA.
        return bytes.get(25).map(|t| t & 2 != 0);
    }
    if bytes.starts_with(b"BM") && bytes.len() >= 26 {
        return Some(true);
    }
    if bytes.len() < 20 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return None;
    }
    // Chunks after the 12-byte header: a four-byte tag, a little-endian size, the
    // payload padded to even length. The first image bitstream decides.
    let mut at = 12usize;
    while let Some(head) = bytes.get(at..at + 8) {
        match &head[..4] {
            b"VP8L" => return Some(true),
            b"VP8 " => return None,
            _ => {}
        }
        let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        at = at.saturating_add(8).saturating_add(len).saturating_add(len & 1);
    }
    None
}

/// Decodes to grey at reduced size: the result's longer side is at most `max_side`
/// (box-averaged). JPEGs whose longer side is at least 4 × `max_side` are decoded by
/// the DCT-domain scaler at 1/4 or 1/8 (the smallest that leaves `max_side` pixels);
/// smaller JPEGs are decoded at full size in one thread. Returns the picture, the full
/// (header) size and the decoder's scale factor (1 for a full-size decode).
pub fn decode_gray(bytes: &[u8], max_side: usize) -> Result<(Gray, u32, u32, u32), DecodeError> {
    decode_gray_as(bytes, max_side, JpegGrey::Rec709)
}

/// [`decode_gray`] with the grey of `grey` on every path: with [`JpegGrey::Luma`],
/// small JPEGs give their own Y plane (no chroma upsampling, colour conversion or RGB
/// buffer: dedup's signing 15% cheaper), large ones and every other format the same
/// BT.601 weights computed from RGB, so a JPEG and a PNG of one picture still get
/// the same grey (up to rounding).
pub fn decode_gray_as(bytes: &[u8], max_side: usize, grey: JpegGrey) -> Result<(Gray, u32, u32, u32), DecodeError> {
    gray_seen(bytes, max_side, grey, false).map(|(r, _)| r)
}

/// What [`decode_gray_seen`] saw besides the picture.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    /// Damage a JPEG's luma read found in its entropy-coded data (see
    /// [`decode_gray_seen`]).
    pub damage: Option<String>,
    /// Whether the picture holds colour: `Some(false)` when every chroma value the
    /// decode had in hand is within [`GREY_LEVELS`] of neutral grey (a grey file; a
    /// grey picture saved as RGB, palette or three-component JPEG), `Some(true)` when one
    /// is not, `None` where the decode did not see chroma (a progressive JPEG whose
    /// chroma DC comes in scans of its own, the fallback decoders' JPEGs, 16-bit PNGs).
    /// Dedup's keep rule puts copies without colour after those with it.
    pub colour: Option<bool>,
    /// How varied the picture's colours are at one brightness ([`tones::Tones::variety`],
    /// in levels): 0 for a grey picture, near 0 for a tinted one (sepia, duotone: under
    /// 1.5), 0.5-40 for colour photos. From a JPEG's MCU DC means where `colour` is
    /// known from them; from 16×16 pixel blocks of a decoded picture. `None` where
    /// `colour` is, and where no brightness bin has 8 blocks (always under 8 blocks,
    /// about 48×48 px). Dedup's keep rule puts a copy far less varied than its
    /// cluster's most varied one after the others.
    pub variety: Option<f32>,
}

/// Grey levels a chroma value may stray from neutral in a picture without colour
/// ([`Seen::colour`]): a grey picture converted to YCbCr has chroma at exactly neutral
/// (JPEG's and WebP's chroma weights sum to 0), and its lossy WebP decodes to channels
/// a level or so apart; a photo holds blocks (JPEG: a chroma block's mean) tens of
/// levels from neutral.
pub const GREY_LEVELS: f32 = 3.0;

/// Whether a pixel's R or B is more than [`GREY_LEVELS`] from its G, of interleaved
/// 8-bit pixels whose first three channels are R, G, B; with alpha (four channels) as
/// shown on white (the distance scaled by the alpha). Stops at the first run of pixels
/// that shows colour: a photo shows it in its first pixels.
fn shows_colour(px: &[u8], channels: usize) -> bool {
    let limit = GREY_LEVELS as u32;
    // Runs of pixels at a time: the max over a run vectorises; the test between runs
    // stops a colour picture early.
    px.chunks(channels * 256).any(|run| {
        let peak = match channels {
            3 => run.chunks_exact(3).map(|c| c[0].abs_diff(c[1]).max(c[2].abs_diff(c[1])) as u32).max(),
            _ => run.chunks_exact(channels).map(|c| (c[0].abs_diff(c[1]).max(c[2].abs_diff(c[1])) as u32 * c[3] as u32 + 127) / 255).max(),
        };
        peak.unwrap_or(0) > limit
    })
}

/// [`Seen`] without damage from what a JPEG's luma read saw of chroma.
fn seen_of(c: jpeg_dc::ChromaSeen) -> Seen {
    Seen { damage: None, colour: c.spread.map(|s| s > GREY_LEVELS), variety: c.variety }
}

/// [`decode_gray_as`], also giving what the decode saw ([`Seen`]): the damage that a
/// JPEG's luma read ([`jpeg_dc`]: at 1/2, 1/4 or 1/8 from 2× `max_side`, at full size
/// below) showed in its entropy-coded data (the picture is then the full decoders',
/// which read through damage; `None` where the file was read another way, for which no
/// check is made: see [`decode_jpeg_gray_fast`] for one that always checks), and
/// whether the picture holds colour.
pub fn decode_gray_seen(bytes: &[u8], max_side: usize, grey: JpegGrey) -> Result<((Gray, u32, u32, u32), Seen), DecodeError> {
    gray_seen(bytes, max_side, grey, true)
}

/// The body of [`decode_gray_seen`]; without `check_colour`, [`Seen::colour`] is left
/// `None` where finding it would cost a pass over the pixels (PNG, the image crate's
/// formats): [`decode_gray_as`]'s callers (the filter) do not use it.
fn gray_seen(bytes: &[u8], max_side: usize, grey: JpegGrey, check_colour: bool) -> Result<((Gray, u32, u32, u32), Seen), DecodeError> {
    let mut damage = None;
    if is_jpeg(bytes) {
        // Where jpeg-decoder's DCT-domain scaler can cut by 4 or 8 it wins; at 1/2 its
        // slower entropy decoding and per-component worker threads (it starts them
        // for outputs over 128 px wide) cost more than a single-threaded full-size
        // luma-only decode (measured on 512 px photos: 1.7x faster signing).
        let long = jpeg_size(bytes).map_or(0, |(w, h)| w.max(h) as usize);
        // At 2×, 4× or 8× `max_side` and more, JPEG's own Y at 1/2, 1/4 or 1/8 scale is
        // enough, and jpeg_dc's is the cheapest decode there is (so only for `Luma`).
        if grey == JpegGrey::Luma {
            match reduced_luma(bytes, long, max_side, check_colour) {
                Ok((r, chroma)) => return Ok((r, seen_of(chroma))),
                // Below 2× `max_side`: jpeg_dc's full-size luma, whose read is the check
                // and which costs what zune-jpeg's decode does on such small files
                // (session 21, `m6-decode-bench` modes `full` and `zune_luma_full` on 141
                // JPEGs of 128-255 px at 128 px: 0.057 against 0.048-0.057 ms).
                Err(None) if long > 0 && long < 2 * max_side => match full_luma(bytes, max_side, check_colour) {
                    Ok((g, w, h, chroma)) => return Ok(((g, w, h, 1), seen_of(chroma))),
                    Err(jpeg_dc::Unread::Damaged(d)) => damage = Some(d),
                    Err(jpeg_dc::Unread::Unhandled) => {}
                },
                Err(found) => damage = found,
            }
        }
        let big = long >= 4 * max_side;
        let r = if big { decode_jpeg_scaled_as(bytes, max_side, grey) } else { decode_jpeg_full(bytes, max_side, 4 * max_side, grey) };
        if let Ok(r) = r {
            return Ok((r, Seen { damage, colour: None, variety: None }));
        }
        // Fall through: the image crate's decoder forgives more broken files.
    }
    // PNG rows streamed into the work picture: no full-size RGB(A) picture or grey copy
    // (dedup on the image benchmark's 1,392 images, most of them PNG screenshots: peak
    // RSS 182 -> 138 MiB, CPU about 1% less). Errors fall through to the image crate,
    // as for JPEG, and so do 16-bit PNGs, so that the picture stays the one the image
    // crate's decode gives.
    if let Some(Ok((g, w, h, (colour, variety)))) = png_gray(bytes, max_side, grey, false, check_colour) {
        return Ok(((g, w, h, 1), Seen { damage: None, colour, variety }));
    }
    let img = load(bytes).map_err(|e| DecodeError::Decode(e.to_string()))?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(DecodeError::Empty(w, h));
    }
    // Transparency shown on white (the streamed PNG rows' and the samples' picture): a
    // logo on a transparent background and its copy flattened onto a white page are
    // one picture; dropping the alpha showed the transparent pixels' stored colour.
    let img = if img.color().has_alpha() { image::DynamicImage::ImageRgb8(rgb_on_white(img)) } else { img };
    // 8-bit RGB(A) — PNG screenshots, mostly — to grey in fixed point: the image
    // crate's conversion goes through floats and a libm round per pixel, which cost
    // more than inflating the PNG.
    let (colour, variety) = match &img {
        image::DynamicImage::ImageLuma8(_) | image::DynamicImage::ImageLuma16(_) => (Some(false), Some(0.0)),
        image::DynamicImage::ImageRgb8(rgb) if check_colour => {
            let mut t = tones::RowTones::new(w as usize, 3);
            rgb.as_raw().chunks_exact(3 * w as usize).for_each(|row| t.push(row));
            (Some(shows_colour(rgb.as_raw(), 3)), t.variety())
        }
        _ => (None, None),
    };
    let seen = Seen { damage, colour, variety };
    let grey = match (&img, grey) {
        (image::DynamicImage::ImageLuma8(g), _) => return Ok(((shrink_u8(g.as_raw(), w as usize, h as usize, max_side), w, h, 1), seen)),
        (image::DynamicImage::ImageRgb8(rgb), JpegGrey::Rec709) => grey709(rgb.as_raw(), 3),
        (image::DynamicImage::ImageRgba8(rgba), JpegGrey::Rec709) => grey709(rgba.as_raw(), 4),
        (other, JpegGrey::Rec709) => other.to_luma8().into_raw(),
        (image::DynamicImage::ImageRgb8(rgb), JpegGrey::Luma) => grey601(rgb.as_raw(), 3),
        (image::DynamicImage::ImageRgba8(rgba), JpegGrey::Luma) => grey601(rgba.as_raw(), 4),
        (other, JpegGrey::Luma) => grey601(other.to_rgb8().as_raw(), 3),
    };
    Ok(((shrink_u8(&grey, w as usize, h as usize, max_side), w, h, 1), seen))
}

/// BT.709 grey (the image crate's weights) of interleaved 8-bit pixels whose first
/// three channels are R, G, B, in 16-bit fixed point (weights sum to 65536): integer
/// lanes vectorise, a float conversion per pixel cost as much as the decode.
fn grey709(px: &[u8], channels: usize) -> Vec<u8> {
    px.chunks_exact(channels).map(|c| luma_u8(c[0], c[1], c[2]) as u8).collect()
}

/// BT.601 grey (JPEG's Y) of interleaved 8-bit pixels, first three channels R, G, B,
/// in 16-bit fixed point like [`grey709`].
pub fn grey601(px: &[u8], channels: usize) -> Vec<u8> {
    px.chunks_exact(channels).map(|c| luma601_u8(c[0], c[1], c[2]) as u8).collect()
}

/// BT.601 grey of one pixel, rounded, in 16-bit fixed point ([`grey601`]'s weights).
#[inline]
fn luma601_u8(r: u8, g: u8, b: u8) -> u32 {
    (19595 * r as u32 + 38470 * g as u32 + 7471 * b as u32 + 32768) >> 16
}

/// [`shrink`] straight from 8-bit grey: integer box sums over the same rounded cell
/// edges, without a full-size float copy or summed-area table (a decoded PNG
/// screenshot is a million pixels; its 192 px work picture is 28 thousand).
pub fn shrink_u8(px: &[u8], w: usize, h: usize, max_side: usize) -> Gray {
    let long = w.max(h);
    if long <= max_side {
        return Gray { w, h, px: px.iter().map(|&v| v as f32).collect() };
    }
    let f = max_side as f64 / long as f64;
    let (nw, nh) = (((w as f64 * f).round() as usize).max(1), ((h as f64 * f).round() as usize).max(1));
    // Cell edges as Integral::resample rounds them (source at least as large as output).
    let edges = |n: usize, src: usize| -> Vec<usize> { (0..=n).map(|i| ((i as f64 * src as f64 / n as f64).round() as usize).min(src)).collect() };
    let (xe, ye) = (edges(nw, w), edges(nh, h));
    let tallest = (0..nh).map(|j| ye[j + 1].max(ye[j] + 1).min(h) - ye[j]).max().unwrap_or(1);
    // This pass reads every decoded pixel, so it is most of the work after the decode:
    // a band of up to 257 rows sums in u16 (257 × 255 < 65536), twice the SIMD lanes
    // of u32. The sums are exact integers either way, so the picture is bit-identical.
    if tallest <= 257 {
        box_sums::<u16>(px, w, h, &xe, &ye, tallest)
    } else {
        box_sums::<u32>(px, w, h, &xe, &ye, tallest)
    }
}

/// The body of [`shrink_u8`]: per output row, the band's rows summed column by column
/// into `A` (the first row copied, not added to zeros); the band's running column sum
/// gives each cell's sum as a difference (no loop per cell, whose varying 5-or-6 trip
/// count was mispredicted), and the cell means are divided in one pass over the row.
fn box_sums<A>(px: &[u8], w: usize, h: usize, xe: &[usize], ye: &[usize], tallest: usize) -> Gray
where
    A: Copy + Default + From<u8> + Into<u32> + std::ops::AddAssign,
{
    let mut acc = vec![A::default(); w];
    // Running sums in u64 (a band's total is at most 255 × w × `tallest` rows); u32
    // where that fits, which also lets the conversion to f32 below run four at a time.
    if 255 * (w as u64) * (tallest as u64) < 1 << 31 {
        return box_sums_with::<A, u32>(px, w, h, xe, ye, &mut acc);
    }
    box_sums_with::<A, u64>(px, w, h, xe, ye, &mut acc)
}

/// Sums of cells `N` or `N + 1` columns wide starting at `x0s` ([`box_sums_with`]).
#[inline(always)]
fn cell_sums<const N: usize, A, S>(acc: &[A], x0s: &[usize], widths: &[u32], sums: &mut [S])
where
    A: Copy + Into<u32>,
    S: Sum,
{
    for ((s, &x0), &cw) in sums.iter_mut().zip(x0s).zip(widths) {
        let head: &[A; N] = acc[x0..x0 + N].try_into().expect("N columns");
        let last = acc[x0 + cw as usize - 1];
        let mut t = S::from_u32(last.into()) * S::from_u32((cw as usize > N) as u32);
        for &a in head {
            t = t + S::from_u32(a.into());
        }
        *s = t;
    }
}

/// Lossless conversion to f32 of an integer running sum ([`box_sums`]).
trait Sum: Copy + Default + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self> + std::ops::Mul<Output = Self> {
    fn from_u32(v: u32) -> Self;
    fn to_f32(self) -> f32;
}
impl Sum for u32 {
    fn from_u32(v: u32) -> Self {
        v
    }
    // Below 2^31 (checked by the caller), so the signed conversion (one SIMD
    // instruction on SSE2) rounds the same integer as the unsigned one would.
    fn to_f32(self) -> f32 {
        self as i32 as f32
    }
}
impl Sum for u64 {
    fn from_u32(v: u32) -> Self {
        v as u64
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
}

fn box_sums_with<A, S>(px: &[u8], w: usize, h: usize, xe: &[usize], ye: &[usize], acc: &mut [A]) -> Gray
where
    A: Copy + Default + From<u8> + Into<u32> + std::ops::AddAssign,
    S: Sum,
{
    let (nw, nh) = (xe.len() - 1, ye.len() - 1);
    let (x0s, x1s): (Vec<usize>, Vec<usize>) = (0..nw).map(|i| (xe[i], xe[i + 1].max(xe[i] + 1).min(w))).unzip();
    let widths: Vec<u32> = x0s.iter().zip(&x1s).map(|(a, b)| (b - a) as u32).collect();
    // Cell sums from a running column sum (a difference per cell) unless the cells
    // are all one of two adjacent widths, as rounded edges of a uniform scale give.
    let (wmin, wmax) = (widths.iter().min().copied().unwrap_or(1) as usize, widths.iter().max().copied().unwrap_or(1) as usize);
    let even = (wmax <= wmin + 1 && wmin >= 1).then_some(wmin);
    let mut run = vec![S::default(); if even.is_some() { 0 } else { w + 1 }];
    let mut sums = vec![S::default(); nw];
    let mut out = vec![0f32; nw * nh];
    for (j, orow) in out.chunks_exact_mut(nw).enumerate() {
        let (y0, y1) = (ye[j], ye[j + 1].max(ye[j] + 1).min(h));
        for (a, &v) in acc.iter_mut().zip(&px[y0 * w..(y0 + 1) * w]) {
            *a = A::from(v);
        }
        for y in y0 + 1..y1 {
            for (a, &v) in acc.iter_mut().zip(&px[y * w..(y + 1) * w]) {
                *a += A::from(v);
            }
        }
        if let Some(wmin) = even {
            // Every cell is wmin or wmin + 1 columns wide: the first wmin columns summed
            // by a loop unrolled for that width, the last one added times 0 or 1.
            match wmin {
                1 => cell_sums::<1, A, S>(acc, &x0s, &widths, &mut sums),
                2 => cell_sums::<2, A, S>(acc, &x0s, &widths, &mut sums),
                3 => cell_sums::<3, A, S>(acc, &x0s, &widths, &mut sums),
                4 => cell_sums::<4, A, S>(acc, &x0s, &widths, &mut sums),
                5 => cell_sums::<5, A, S>(acc, &x0s, &widths, &mut sums),
                6 => cell_sums::<6, A, S>(acc, &x0s, &widths, &mut sums),
                7 => cell_sums::<7, A, S>(acc, &x0s, &widths, &mut sums),
                8 => cell_sums::<8, A, S>(acc, &x0s, &widths, &mut sums),
                _ => {
                    for ((s, &x0), &cw) in sums.iter_mut().zip(&x0s).zip(&widths) {
                        *s = acc[x0..x0 + cw as usize].iter().fold(S::default(), |t, &a| t + S::from_u32(a.into()));
                    }
                }
            }
        } else {
            let mut t = S::default();
            for (r, &a) in run[1..].iter_mut().zip(acc.iter()) {
                t = t + S::from_u32(a.into());
                *r = t;
            }
            for ((s, &x0), &x1) in sums.iter_mut().zip(&x0s).zip(&x1s) {
                *s = run[x1] - run[x0];
            }
        }
        let rows = (y1 - y0) as u32;
        // The same f32 division of the same integers as one cell at a time: bit-identical.
        for ((o, &s), &cw) in orow.iter_mut().zip(&sums).zip(&widths) {
            *o = s.to_f32() / (cw * rows) as f32;
        }
    }
    Gray { w: nw, h: nh, px: out }
}

/// A JPEG decoder past its header, with the image's full size (never zero).
fn jpeg_header(bytes: &[u8]) -> Result<(jpeg_decoder::Decoder<&[u8]>, u32, u32), DecodeError> {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    d.read_info().map_err(|e| DecodeError::Decode(e.to_string()))?;
    let info = d.info().ok_or_else(|| DecodeError::Decode("no JPEG header".into()))?;
    let (w, h) = (info.width as u32, info.height as u32);
    if w == 0 || h == 0 {
        return Err(DecodeError::Empty(w, h));
    }
    // jpeg-decoder has no size limit and reads every block the header declares, real or
    // not: a 20 KB file declaring 60000×60000 cost dedup 27 s and 400 MB (stages run
    // before the filter's bomb rule sees it). The image crate's fallback refuses it too.
    if w as u64 * h as u64 > MAX_JPEG_PIXELS {
        return Err(DecodeError::Decode(format!("JPEG declares {w}x{h} pixels, over the {MAX_JPEG_PIXELS} this decoder takes (a decompression bomb or a lying header)")));
    }
    Ok((d, w, h))
}

/// The filter's default `image.bomb` limit (`max_pixels`): a header declaring more
/// pixels is refused before any is decoded. Dedup's keep rule keeps a copy over it
/// only when its cluster has no smaller one (`keep_max_pixels`), or the filter would
/// drop the copy that stands for the cluster.
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;

/// The most pixels a JPEG header may declare for the scaled decoders: 16384 × 16384,
/// the filter's default `max_side` squared (its `max_pixels` bomb rule is 50 M by
/// default, so nothing the filter keeps is refused here).
pub const MAX_JPEG_PIXELS: u64 = 16384 * 16384;

/// Offset of a JPEG's entropy-coded data (just after its first start-of-scan
/// segment), walking the marker segments before it with [`jpeg_dc`]'s parser; `None`
/// when the walk ends first (cut short, or not well-formed). Public for tests that
/// damage a JPEG's data at a chosen place.
pub fn jpeg_first_scan(bytes: &[u8]) -> Option<usize> {
    let mut p = jpeg_dc::Parser::after_soi(bytes);
    loop {
        match p.segment()? {
            (0xDA, _) => return Some(p.offset()),
            (0xD9, _) => return None,
            _ => {}
        }
    }
}

/// Whether a JPEG was cut off: no end-of-image marker after the start of its image
/// data. Decoders fill a missing tail with grey and report success. An EXIF thumbnail
/// (a whole JPEG, EOI included, inside APP1) does not count, and data after the EOI
/// does not hide it: a phone's motion photo is a complete JPEG followed by an MP4 of
/// megabytes (a search of the last few KB for the marker called it truncated). Where
/// the segments before the scan do not parse, the last 4 KB are searched.
pub fn jpeg_truncated(bytes: &[u8]) -> bool {
    let eoi = |b: &[u8]| b.windows(2).rev().any(|w| w == [0xFF, 0xD9]);
    match jpeg_first_scan(bytes) {
        Some(sos) => !eoi(&bytes[sos..]),
        None => !eoi(&bytes[bytes.len().saturating_sub(4096)..]),
    }
}

/// What shows an image was cut off in transfer, when it was: the end marker decoders
/// forgive (a JPEG that stops before its EOI, a PNG without IEND, a GIF without its
/// trailer decode with the missing part grey or absent), or a WebP shorter than its
/// RIFF header says (the WebP decoder caught a cut at the end, but decoded 8 of 24 with
/// 100 bytes lost from the middle). The filter drops such images (`image.truncated`),
/// and dedup never keeps one where a whole copy exists.
pub fn truncated(format: image::ImageFormat, bytes: &[u8]) -> Option<&'static str> {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    match format {
        // After the image data, wherever it is (a motion photo carries an MP4 after it).
        image::ImageFormat::Jpeg if jpeg_truncated(bytes) => Some("no JPEG end-of-image marker"),
        image::ImageFormat::Png if !tail.windows(4).any(|w| w == b"IEND") => Some("no PNG IEND chunk"),
        image::ImageFormat::Gif if bytes.last() != Some(&0x3B) && !tail.contains(&0x3B) => Some("no GIF trailer"),
        image::ImageFormat::WebP if webp_short(bytes) => Some("WebP shorter than its RIFF header says"),
        _ => None,
    }
}

/// Whether a RIFF/WebP file holds fewer bytes than its header's size field counts
/// (bytes 4-8: the size after them).
fn webp_short(bytes: &[u8]) -> bool {
    bytes.get(4..8).is_some_and(|s| (u32::from_le_bytes(s.try_into().expect("4 bytes")) as u64) + 8 > bytes.len() as u64)
}

/// An error for a JPEG cut off before its end-of-image marker ([`jpeg_truncated`]),
/// which decoders would fill with grey; `Ok` for anything else.
pub fn refuse_truncated_jpeg(bytes: &[u8]) -> Result<(), DecodeError> {
    if is_jpeg(bytes) && jpeg_truncated(bytes) {
        return Err(DecodeError::Decode("JPEG is truncated: no end-of-image marker after its image data".into()));
    }
    Ok(())
}

/// An error for a JPEG that is cut off ([`refuse_truncated_jpeg`]) or whose
/// entropy-coded data is damaged ([`jpeg_dc::damage`]: decoders would read through it
/// and fill the picture with garbage from there on); `Ok` for anything else, and for
/// JPEGs jpeg_dc does not read. Costs a 1/8-scale read of a JPEG (all of its entropy
/// decoding); for callers whose own decode does not already check.
pub fn refuse_damaged_jpeg(bytes: &[u8]) -> Result<(), DecodeError> {
    refuse_truncated_jpeg(bytes)?;
    match damage_within_limits(bytes) {
        Some(d) => Err(DecodeError::Damaged(d)),
        None => Ok(()),
    }
}

/// [`jpeg_dc::damage`] of a JPEG whose header declares at most [`MAX_JPEG_PIXELS`]:
/// the 1/8 picture of a lying 60000×60000 header would be 225 MB of floats, and the
/// decoders refuse such a file for its size anyway (that is the error to report).
fn damage_within_limits(bytes: &[u8]) -> Option<String> {
    let (w, h) = jpeg_size(bytes).filter(|_| is_jpeg(bytes))?;
    (w as u64 * h as u64 <= MAX_JPEG_PIXELS).then(|| jpeg_dc::damage(bytes)).flatten()
}

/// An RGB picture of a decoded image as it is shown on a white page: pixels with alpha
/// (RGBA PNG, palette PNG/GIF with a transparent colour, WebP) are composited onto
/// white. Dropping the alpha instead shows whatever colour a transparent pixel happens
/// to store, black for most encoders: a logo on a transparent background became a logo
/// on black.
pub fn rgb_on_white(img: image::DynamicImage) -> image::RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let px = rgba.as_raw().chunks_exact(4).flat_map(|p| [on_white(p[0], p[3]), on_white(p[1], p[3]), on_white(p[2], p[3])]);
    image::RgbImage::from_raw(w, h, px.collect()).expect("w*h*3 bytes")
}

/// One 8-bit channel of a pixel with alpha `a`, composited onto white, rounded.
#[inline]
pub fn on_white(c: u8, a: u8) -> u8 {
    let a = a as u32;
    ((c as u32 * a + 255 * (255 - a) + 127) / 255) as u8
}

/// PNG straight to the grey work picture (longer side at most `max_side`, the same
/// integer box cells as [`shrink_u8`], grey as the image crate's `to_luma8` rounds it):
/// rows are unfiltered one at a time, turned to grey and summed into the output row
/// they fall in, so neither the full-size RGB(A) picture nor a full-size grey copy is
/// ever held (PNG cannot be decoded at reduced scale; this saves the conversions and
/// their memory traffic). `None` for what it does not handle (not a PNG, interlaced):
/// the caller falls back to [`decode_gray`]. Returns the picture and the full size.
pub fn decode_png_gray(bytes: &[u8], max_side: usize) -> Option<Result<(Gray, u32, u32), DecodeError>> {
    decode_png_gray_as(bytes, max_side, JpegGrey::Rec709)
}

/// [`decode_png_gray`] with colour turned to grey by `grey`'s weights (`Luma`: BT.601
/// as [`grey601`] rounds it). For 8-bit PNGs the picture is bit-identical to the image
/// crate's full decode, grey conversion and [`shrink_u8`] (same integer cell sums, same
/// division); 16-bit ones are cut to 8 bits by dropping the low byte, where the image
/// crate rounds (up to one grey level apart).
pub fn decode_png_gray_as(bytes: &[u8], max_side: usize, grey: JpegGrey) -> Option<Result<(Gray, u32, u32), DecodeError>> {
    png_gray(bytes, max_side, grey, true, false).map(|r| r.map(|(g, w, h, _)| (g, w, h)))
}

/// The body of [`decode_png_gray_as`]; `None` for 16-bit PNGs unless `strip16`. With
/// `check_colour`, also [`Seen::colour`]: `Some(false)` for a grey PNG, and for an
/// RGB(A) or palette one whose shown pixels all are grey; and [`Seen::variety`]
/// (without, both `None`).
#[allow(clippy::type_complexity)]
fn png_gray(bytes: &[u8], max_side: usize, grey: JpegGrey, strip16: bool, check_colour: bool) -> Option<Result<(Gray, u32, u32, (Option<bool>, Option<f32>)), DecodeError>> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return None;
    }
    let err = |e: png::DecodingError| DecodeError::Decode(e.to_string());
    let mut d = png::Decoder::new(Cursor::new(bytes));
    // The colour profile is not used here, and inflating a hostile one costs up to the
    // PNG reader's 64 MB budget.
    d.set_ignore_iccp_chunk(true);
    d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut r = match d.read_info() {
        Ok(r) => r,
        Err(e) => return Some(Err(err(e))),
    };
    let (w, h) = (r.info().width as usize, r.info().height as usize);
    if r.info().interlaced || (!strip16 && r.info().bit_depth == png::BitDepth::Sixteen) {
        return None;
    }
    if w == 0 || h == 0 {
        return Some(Err(DecodeError::Empty(w as u32, h as u32)));
    }
    let channels = match r.output_color_type() {
        (png::ColorType::Grayscale, png::BitDepth::Eight) => 1,
        (png::ColorType::GrayscaleAlpha, png::BitDepth::Eight) => 2,
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        _ => return None,
    };
    let long = w.max(h);
    let (nw, nh) = if long <= max_side {
        (w, h)
    } else {
        let f = max_side as f64 / long as f64;
        (((w as f64 * f).round() as usize).max(1), ((h as f64 * f).round() as usize).max(1))
    };
    let edges = |n: usize, src: usize| -> Vec<usize> { (0..=n).map(|i| ((i as f64 * src as f64 / n as f64).round() as usize).min(src)).collect() };
    let (xe, ye) = (edges(nw, w), edges(nh, h));
    let mut acc = vec![0u32; nw];
    let mut out = Vec::with_capacity(nw * nh);
    let (mut j, mut rows_in_cell) = (0usize, 0usize);
    // A row's grey levels, then each output cell's columns summed from them: the grey
    // conversion runs over one channel layout at a time and the sums over contiguous
    // runs (one indexed add per pixel, through a column-to-cell table, was a sixth of
    // the filter's CPU on scikit-image's PNGs).
    let mut grey_row = vec![0u8; w];
    // Rows are checked for colour until one shows it (a grey picture's, all of them),
    // and every row goes to the tones (which sum every 4th of them).
    let mut colour = false;
    let mut tones = (check_colour && channels > 2).then(|| tones::RowTones::new(w, channels));
    for y in 0..h {
        let row = match r.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => return Some(Err(DecodeError::Decode(format!("PNG ends after {y} of {h} rows")))),
            Err(e) => return Some(Err(err(e))),
        };
        if let Some(t) = tones.as_mut() {
            let px = &row.data()[..channels * w];
            if !colour {
                colour = shows_colour(px, channels);
            }
            t.push(px);
        }
        row_grey(row.data(), channels, grey, &mut grey_row);
        // Not shrunk: every cell is one column.
        if nw == w {
            for (a, &v) in acc.iter_mut().zip(&grey_row) {
                *a += v as u32;
            }
        } else {
            for (i, a) in acc.iter_mut().enumerate() {
                *a += grey_row[xe[i]..xe[i + 1].max(xe[i] + 1).min(w)].iter().map(|&v| v as u32).sum::<u32>();
            }
        }
        rows_in_cell += 1;
        if y + 1 == ye[j + 1].max(ye[j] + 1).min(h) {
            for (i, a) in acc.iter_mut().enumerate() {
                let cw = xe[i + 1].max(xe[i] + 1).min(w) - xe[i];
                out.push(*a as f32 / (cw * rows_in_cell) as f32);
                *a = 0;
            }
            j += 1;
            rows_in_cell = 0;
            if j == nh {
                break;
            }
        }
    }
    let seen = match tones {
        Some(t) => (Some(colour), t.variety()),
        None if check_colour => (Some(false), Some(0.0)),
        None => (None, None),
    };
    Some(Ok((Gray { w: nw, h: nh, px: out }, w as u32, h as u32, seen)))
}

/// One 8-bit PNG row (`channels` per pixel: grey, grey + alpha, RGB or RGBA) as grey
/// levels, rounded as the image crate's `to_luma8` rounds them (`grey` picks the
/// weights: [`grey709`]'s or [`grey601`]'s, per row into `out`). Pixels with alpha (and
/// palette entries made transparent by tRNS, which EXPAND turns into alpha) are shown
/// on white, as `rgb_on_white` shows them.
fn row_grey(data: &[u8], channels: usize, grey: JpegGrey, out: &mut [u8]) {
    // The weights as a function item, not a pointer: each layout's loop is compiled
    // once per weighting, with the weights inlined.
    match grey {
        JpegGrey::Rec709 => row_grey_with(data, channels, out, luma_u8),
        JpegGrey::Luma => row_grey_with(data, channels, out, luma601_u8),
    }
}

#[inline(always)]
fn row_grey_with(data: &[u8], channels: usize, out: &mut [u8], luma: impl Fn(u8, u8, u8) -> u32) {
    match channels {
        1 => out.copy_from_slice(&data[..out.len()]),
        2 => {
            for (o, px) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = if px[1] != 255 { on_white(px[0], px[1]) } else { px[0] };
            }
        }
        3 => {
            for (o, px) in out.iter_mut().zip(data.chunks_exact(3)) {
                *o = luma(px[0], px[1], px[2]) as u8;
            }
        }
        _ => {
            for (o, px) in out.iter_mut().zip(data.chunks_exact(channels)) {
                *o = if px[3] != 255 { luma(on_white(px[0], px[3]), on_white(px[1], px[3]), on_white(px[2], px[3])) } else { luma(px[0], px[1], px[2]) } as u8;
            }
        }
    }
}

/// Width and height from a JPEG's frame header (SOF marker), without decoding.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let m = bytes[i + 1];
        if m == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        // SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&m) && !matches!(m, 0xC4 | 0xC8 | 0xCC) {
            let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]) as u32;
            let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]) as u32;
            return Some((w, h));
        }
        if m == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

/// How [`decode_jpeg_full`] turns colour into grey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegGrey {
    /// RGB, then the Rec. 709 weights every other path uses (the image crate's): a
    /// JPEG and a PNG of one picture give the same grey, which dedup's pixel checks need.
    Rec709,
    /// JPEG's own Y plane (BT.601 weights): no chroma upsampling or colour conversion,
    /// the cheapest decode; signals move by a few percent on saturated pictures.
    /// [`decode_gray_as`] gives other formats (and JPEGs it decodes as RGB) the same
    /// weights.
    Luma,
}

/// A JPEG decoded in full, in one thread, by zune-jpeg (SIMD IDCT), to grey and
/// box-averaged to `max_side`. For pictures too small for the DCT-domain scaler to cut
/// by much: at 1/2 (and at 1/4–1/8 of pictures a few times `max_side`) jpeg-decoder's
/// slower entropy decoding and the worker threads it starts for outputs over 128 px
/// wide cost more than this (dedup, 192 px, 512 px photos: signing 1.7x faster;
/// filter, 256 px, `--threads 1`: 52 photos at 2048 px 0.72 -> 0.45 CPU s, 104 at
/// 256-1411 px 0.32 -> 0.19). Strict: corrupt entropy-coded data is an error, as it
/// is for jpeg-decoder, so the verdict on a damaged file does not depend on the path
/// (strict and lenient decodes are byte-identical on all 528 JPEGs of dedup's image
/// benchmark). Pictures over `cap` pixels on a side are refused before any allocation
/// (a lying header). Returns the picture, the full size and scale 1.
pub fn decode_jpeg_full(bytes: &[u8], max_side: usize, cap: usize, grey: JpegGrey) -> Result<(Gray, u32, u32, u32), DecodeError> {
    use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
    let space = if grey == JpegGrey::Luma { ColorSpace::Luma } else { ColorSpace::RGB };
    let cap = cap.max(1);
    let opts = DecoderOptions::default().jpeg_set_out_colorspace(space).set_strict_mode(true).set_max_width(cap).set_max_height(cap);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts);
    let zerr = |e: zune_jpeg::errors::DecodeErrors| DecodeError::Decode(format!("{e:?}"));
    d.decode_headers().map_err(zerr)?;
    let size = d.output_buffer_size().ok_or_else(|| DecodeError::Decode("no JPEG header".into()))?;
    // The full-size pixels go into a buffer kept per thread: a fresh one per image cost
    // page faults and kernel page clearing (about 3% of `filter` on 63 KB photos). It is
    // zeroed before each decode, so a decoder that leaves pixels unwritten gives the
    // same picture whatever was decoded before (output independent of task order).
    DECODE_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.clear();
        buf.resize(size, 0);
        let r = decode_into_grey(&mut d, &mut buf, space, grey, max_side);
        if buf.capacity() > KEEP_DECODE_BUF {
            *buf = Vec::new();
        }
        r
    })
}

thread_local! {
    static DECODE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest decode buffer a thread keeps between images (a 2800 px square photo's
/// luma plane); larger ones are freed after use, so idle memory stays bounded.
const KEEP_DECODE_BUF: usize = 8 << 20;

fn decode_into_grey(d: &mut zune_jpeg::JpegDecoder<zune_core::bytestream::ZCursor<&[u8]>>, px: &mut [u8], space: zune_core::colorspace::ColorSpace, grey: JpegGrey, max_side: usize) -> Result<(Gray, u32, u32, u32), DecodeError> {
    d.decode_into(px).map_err(|e| DecodeError::Decode(format!("{e:?}")))?;
    let (w, h) = d.dimensions().ok_or_else(|| DecodeError::Decode("no JPEG header".into()))?;
    if w == 0 || h == 0 {
        return Err(DecodeError::Empty(w as u32, h as u32));
    }
    let channels = if grey == JpegGrey::Luma { 1 } else { 3 };
    if d.output_colorspace() != Some(space) || px.len() < channels * w * h {
        return Err(DecodeError::Decode("unexpected JPEG pixel buffer".into()));
    }
    let g = if grey == JpegGrey::Luma { shrink_u8(&px[..w * h], w, h, max_side) } else { shrink_u8(&grey709(&px[..3 * w * h], 3), w, h, max_side) };
    Ok((g, w as u32, h as u32, 1))
}

/// JPEG's own luma at 1/8 scale (the DC picture) when the longer side `long` is at
/// least 8× `max_side`, at 1/4 (quadrant means) from 4×, at 1/2 (2×2 cell means) from
/// 2×, box-shrunk to `max_side`; `Err(None)` below 2× or where [`jpeg_dc`] does not
/// handle the file, `Err(Some)` with the damage it found in the data. At 1/2 (session
/// 20), against zune-jpeg's full luma decode which took 2×-4× before: 0.50 against
/// 0.63 ms per image on dedup's 496 benchmark photos and 0.71 against 0.86 on the
/// filter's 260 JPEGs (all of each set at 1/2, `m6-decode-bench` mode `half`), and the
/// read is the damage check, which the filter made as a second 1/8 read there.
/// Earlier, `m6-decode-bench`,
/// per image against zune-jpeg's full luma decode: 2048 px photos at 256 px, 2.6 ms at
/// 1/8 against 5.4; 104 photos of 256-2048 px at 1/4, 1.3 ms against 1.4 (and 1.9
/// for jpeg-decoder's scaled decode, which dedup took at 4×-8× before). Progressive
/// files (the 26 photos ×4 saved progressive by Pillow), where a full decode costs
/// most: at 2048 px 1.4 ms at 1/8 against zune-jpeg's 24.9, at 1536 px 6.6 ms at 1/4
/// against 14.7.
/// Also what the read saw of chroma (`jpeg_dc::decode_luma_seen`).
fn reduced_luma(bytes: &[u8], long: usize, max_side: usize, tones: bool) -> Result<((Gray, u32, u32, u32), jpeg_dc::ChromaSeen), Option<String>> {
    let factor = if long >= 8 * max_side {
        8
    } else if long >= 4 * max_side {
        4
    } else if long >= 2 * max_side {
        2
    } else {
        return Err(None);
    };
    // A reduced picture over 16× the work size on a side (a lying or giant header)
    // goes to the usual paths and their size guards instead.
    if long / factor as usize > 16 * max_side {
        return Err(None);
    }
    match jpeg_dc::decode_luma_seen(bytes, factor, tones) {
        Ok((g, w, h, chroma)) => Ok(((jpeg_dc::shrink_reduced(&g, w, h, max_side, factor), w, h, factor), chroma)),
        Err(jpeg_dc::Unread::Damaged(d)) => Err(Some(d)),
        Err(jpeg_dc::Unread::Unhandled) => Err(None),
    }
}

/// jpeg_dc's full-size luma of a JPEG, box-shrunk to `max_side` as a decoder's 8-bit
/// pixels are ([`shrink_u8`]): the picture, and the damage check, of JPEGs under 2×
/// `max_side`. Returns the picture, the full size and what the read saw of chroma.
fn full_luma(bytes: &[u8], max_side: usize, tones: bool) -> Result<(Gray, u32, u32, jpeg_dc::ChromaSeen), jpeg_dc::Unread> {
    let (g, w, h, chroma) = jpeg_dc::decode_luma_seen(bytes, 1, tones)?;
    Ok((shrink_u8(&jpeg_dc::levels_u8(&g.px), g.w, g.h, max_side), w, h, chroma))
}

/// JPEG to the grey work picture for a caller that wants the cheapest decode at
/// `max_side` and can take JPEG's own luma (the filter's signals): from 2× `max_side`
/// on the longer side, its 1/2-, 1/4- or 1/8-scale luma ([`jpeg_dc`]); below, or where
/// jpeg_dc does not handle the file, up to 16× [`decode_jpeg_full`] straight to Y,
/// larger [`decode_jpeg_scaled`] (1/8 scale), where a full decode's memory would grow.
/// Anything zune-jpeg refuses (CMYK, 12-bit, arithmetic coding) gets [`decode_gray`],
/// whose error is the verdict.
/// With `check_damage`, damaged entropy-coded data is [`DecodeError::Damaged`]: found by
/// the reduced read itself, or below 2× `max_side` by jpeg_dc's full-size read, which
/// then is the decode (about what zune-jpeg's decode and a separate 1/8 read cost).
/// Without, zune-jpeg decodes those and reads through damage as it always did.
/// `None` when not a JPEG. Returns the picture and the full size.
pub fn decode_jpeg_gray_fast(bytes: &[u8], max_side: usize, check_damage: bool) -> Option<Result<(Gray, u32, u32), DecodeError>> {
    if !is_jpeg(bytes) {
        return None;
    }
    let Some((w, h)) = jpeg_size(bytes) else {
        return Some(decode_gray(bytes, max_side).map(|(g, w, h, _)| (g, w, h)));
    };
    if w == 0 || h == 0 {
        return Some(Err(DecodeError::Empty(w, h)));
    }
    let long = w.max(h) as usize;
    match reduced_luma(bytes, long, max_side, false) {
        Ok(((g, w, h, _), _)) => return Some(Ok((g, w, h))),
        Err(Some(d)) if check_damage => return Some(Err(DecodeError::Damaged(d))),
        // Too small to be read at 1/2: jpeg_dc's full-size luma, whose read is the
        // check. A 1/8 read before zune-jpeg's decode cost the same on small files
        // (session 20, `m6-decode-bench` mode `full` against `filter_decode`: 0.57
        // against 0.54 ms on 274 baseline JPEGs of 256-511 px, 0.67 against 0.67 on 36
        // progressive ones under 512 px; this path's 0.57 is 0.42 since session 21) but
        // read only a progressive file's DC scans; this reads luma's AC scans too. Its
        // pixels are a decoder's 8-bit output (within 0.02 grey levels on average of
        // zune-jpeg's), box-shrunk as zune-jpeg's were.
        // Files jpeg_dc does not handle go to the full decoders, whose verdict stands.
        Err(None) if check_damage && long < 2 * max_side => match full_luma(bytes, max_side, false) {
            Ok((g, w, h, _)) => return Some(Ok((g, w, h))),
            Err(jpeg_dc::Unread::Damaged(d)) => return Some(Err(DecodeError::Damaged(d))),
            Err(jpeg_dc::Unread::Unhandled) => {}
        },
        _ => {}
    }
    let r = if long > 16 * max_side { decode_jpeg_scaled(bytes, max_side) } else { decode_jpeg_full(bytes, max_side, 16 * max_side, JpegGrey::Luma) };
    Some(r.or_else(|_| decode_gray(bytes, max_side)).map(|(g, w, h, _)| (g, w, h)))
}

/// JPEG through jpeg-decoder's reduced-size IDCT.
pub fn decode_jpeg_scaled(bytes: &[u8], max_side: usize) -> Result<(Gray, u32, u32, u32), DecodeError> {
    decode_jpeg_scaled_as(bytes, max_side, JpegGrey::Rec709)
}

/// [`decode_jpeg_scaled`] with colour turned to grey by `grey`'s weights (the scaler
/// outputs RGB; `Luma`: BT.601, what JPEG's Y plane holds).
fn decode_jpeg_scaled_as(bytes: &[u8], max_side: usize, grey: JpegGrey) -> Result<(Gray, u32, u32, u32), DecodeError> {
    let err = |e: jpeg_decoder::Error| DecodeError::Decode(e.to_string());
    let (mut d, w, h) = jpeg_header(bytes)?;
    // The scaler picks the smallest factor that gives at least the request on *one*
    // axis: ask on the longer side only (the other request is unreachable).
    let req = max_side.min(u16::MAX as usize) as u16;
    let (rw, rh) = if w >= h { (req, u16::MAX) } else { (u16::MAX, req) };
    let (sw, sh) = d.scale(rw, rh).map_err(err)?;
    let raw = d.decode().map_err(err)?;
    let info = d.info().ok_or_else(|| DecodeError::Decode("no JPEG header".into()))?;
    let (sw, sh) = (sw as usize, sh as usize);
    let n = sw * sh;
    use jpeg_decoder::PixelFormat as P;
    let px: Vec<f32> = match info.pixel_format {
        P::L8 if raw.len() >= n => raw[..n].iter().map(|&v| v as f32).collect(),
        P::L16 if raw.len() >= 2 * n => raw.chunks_exact(2).take(n).map(|c| u16::from_be_bytes([c[0], c[1]]) as f32 / 257.0).collect(),
        P::RGB24 if raw.len() >= 3 * n && grey == JpegGrey::Rec709 => raw.chunks_exact(3).take(n).map(|c| luma(c[0], c[1], c[2])).collect(),
        P::RGB24 if raw.len() >= 3 * n => raw.chunks_exact(3).take(n).map(|c| 0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32).collect(),
        // CMYK (and anything else) goes through the image crate, which converts it.
        _ => return Err(DecodeError::Decode("unexpected JPEG pixel buffer".into())),
    };
    let scale = (w as usize).div_ceil(sw.max(1)).clamp(1, 8) as u32;
    let scale = [1u32, 2, 4, 8].into_iter().min_by_key(|s| s.abs_diff(scale)).unwrap_or(1);
    Ok((shrink(&Gray { w: sw, h: sh, px }, max_side), w, h, scale))
}

/// Decodes to RGB with the shorter side at least `min_short` pixels where the format
/// allows it cheaply (JPEG: DCT-domain 1/2–1/8 scale), else in full. Returns the
/// picture and the full (header) size.
/// Transparent pixels are shown on white ([`rgb_on_white`]); a JPEG cut off before its
/// end-of-image marker is an error (decoders would fill the rest with grey).
///
/// Damage in a JPEG's entropy-coded data is an error wherever the decode that makes
/// the picture checks it itself (the reduced colour picture of [`jpeg_dc_sample`]).
/// Elsewhere the decoders read through damage, so with `check_damage` a 1/8-scale
/// read ([`refuse_damaged_jpeg`]) comes first; without it that read is made only when
/// the scaled decoder gives up, before the image crate's decoder would read through.
/// The decision which decode makes the picture is made here alone, so a check is
/// never made twice nor left out.
pub fn decode_rgb_min_short(bytes: &[u8], min_short: u32, check_damage: bool) -> Result<(image::RgbImage, u32, u32), DecodeError> {
    refuse_truncated_jpeg(bytes)?;
    if is_jpeg(bytes) {
        if let Some(factor) = jpeg_dc_sample(bytes, min_short) {
            match jpeg_dc::decode_rgb_reduced(bytes, factor) {
                Ok((rgb, bw, bh, w, h)) => {
                    let img = image::RgbImage::from_raw(bw as u32, bh as u32, rgb).ok_or_else(|| DecodeError::Decode("JPEG buffer size".into()))?;
                    return Ok((img, w, h));
                }
                // Damage in the very data the picture is made of: a sample of it
                // would hold garbage.
                Err(jpeg_dc::Unread::Damaged(d)) => return Err(DecodeError::Damaged(d)),
                Err(jpeg_dc::Unread::Unhandled) => {}
            }
        }
        if check_damage {
            if let Some(d) = damage_within_limits(bytes) {
                return Err(DecodeError::Damaged(d));
            }
        }
        if let Ok(r) = decode_jpeg_rgb_scaled(bytes, min_short) {
            return Ok(r);
        }
        // Where the scaled decoder gave up, the image crate's decoder would read through
        // damage that [`jpeg_dc`] can confirm: refused rather than decoded into garbage.
        // Only on this path, so no undamaged file pays for the check (2,366 damaged
        // copies in bench/jpeg_damage.py: tokenize with `check_damage` off refused 24
        // before, 589 with it); with `check_damage` the read above has made it.
        if !check_damage {
            if let Some(d) = damage_within_limits(bytes) {
                return Err(DecodeError::Damaged(d));
            }
        }
    }
    let img = load(bytes).map_err(|e| DecodeError::Decode(e.to_string()))?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(DecodeError::Empty(w, h));
    }
    Ok((rgb_on_white(img), w, h))
}

/// The scale (8, 4 or 2) at which [`decode_rgb_min_short`] takes a JPEG's picture from
/// its reduced colour picture ([`jpeg_dc::decode_rgb_reduced`]): the smallest whose
/// shorter side still has `min_short` pixels (the scale jpeg-decoder would pick), for
/// a header that declares at most [`MAX_JPEG_PIXELS`]; `None` below 1/2 (and for
/// anything but a JPEG). That read is then the damage check of all that the picture
/// is made of (at 1/4 and 1/2 every scan; at 1/8 a progressive file's DC scans), and
/// costs a fraction of jpeg-decoder's, which decodes every scan of a progressive file
/// whatever the scale: on the 52 camera photos of `bench/lib/wallpapers.py`
/// (1280-5312 px), jpeg-decoder was 77% of `tokenize`'s CPU. At 1/2 (web photos of
/// 448-895 px on their shorter side, for 224 px samples) it replaces jpeg-decoder's
/// scaled decode at about the same CPU (`m6-decode-bench` modes `rgb_half` and
/// `rgb_jd_sample`, 26 photos of 480-768 px from bench/lib/web_photos.py: 6.3-6.9 ms
/// against 6.3-6.9) and saves the separate 1/8 damage read (0.75 ms) that
/// jpeg-decoder's decode needs; its colours are closer to a full decode's.
pub fn jpeg_dc_sample(bytes: &[u8], min_short: u32) -> Option<u32> {
    let (w, h) = jpeg_size(bytes).filter(|_| is_jpeg(bytes))?;
    if w as u64 * h as u64 > MAX_JPEG_PIXELS {
        return None;
    }
    [8, 4, 2].into_iter().find(|&f| w.min(h).div_ceil(f) >= min_short.max(1))
}

/// jpeg-decoder's DCT-scaled RGB decode with the shorter side at least `min_short`
/// pixels ([`decode_rgb_min_short`]'s picture where `jpeg_dc` does not make it); the
/// picture and the full size. Public for `m6-decode-bench`'s `rgb_jd_sample`.
pub fn decode_jpeg_rgb_scaled(bytes: &[u8], min_short: u32) -> Result<(image::RgbImage, u32, u32), DecodeError> {
    let err = |e: jpeg_decoder::Error| DecodeError::Decode(e.to_string());
    let (mut d, w, h) = jpeg_header(bytes)?;
    // Request on the shorter side only (see decode_jpeg_scaled).
    let req = min_short.min(u16::MAX as u32) as u16;
    let (rw, rh) = if w <= h { (req, u16::MAX) } else { (u16::MAX, req) };
    let (sw, sh) = d.scale(rw, rh).map_err(err)?;
    let raw = d.decode().map_err(err)?;
    let info = d.info().ok_or_else(|| DecodeError::Decode("no JPEG header".into()))?;
    let n = sw as usize * sh as usize;
    use jpeg_decoder::PixelFormat as P;
    let rgb: Vec<u8> = match info.pixel_format {
        P::RGB24 if raw.len() >= 3 * n => raw[..3 * n].to_vec(),
        P::L8 if raw.len() >= n => raw[..n].iter().flat_map(|&v| [v, v, v]).collect(),
        _ => return Err(DecodeError::Decode("unexpected JPEG pixel buffer".into())),
    };
    let img = image::RgbImage::from_raw(sw as u32, sh as u32, rgb).ok_or_else(|| DecodeError::Decode("JPEG buffer size".into()))?;
    Ok((img, w, h))
}

/// [`luma`] rounded to an integer grey level, in 16-bit fixed point (the weights times
/// 65536, summing to 65536): a float round per pixel was a fifth of the PNG path.
#[inline]
fn luma_u8(r: u8, g: u8, b: u8) -> u32 {
    (13933 * r as u32 + 46871 * g as u32 + 4732 * b as u32 + 32768) >> 16
}

#[inline]
fn luma(r: u8, g: u8, b: u8) -> f32 {
    // Rec. 709 weights, as the image crate's to_luma8 uses: both decode paths agree.
    0.2126 * r as f32 + 0.7152 * g as f32 + 0.0722 * b as f32
}

/// Box-averages so the longer side is at most `max_side` (never enlarges).
pub fn shrink(g: &Gray, max_side: usize) -> Gray {
    let long = g.w.max(g.h);
    if long <= max_side {
        return g.clone();
    }
    let f = max_side as f64 / long as f64;
    let (nw, nh) = (((g.w as f64 * f).round() as usize).max(1), ((g.h as f64 * f).round() as usize).max(1));
    box_mean(g, g.w as f32, g.h as f32, nw, nh)
}

/// The `nw`×`nh` box means of the part [0, `ex`) × [0, `ey`) of `g` (cell edges
/// rounded to whole pixels, as [`Integral::resample`] rounds them): [`shrink`], and
/// the reduced JPEG pictures, whose last row and column of blocks reach past the
/// picture's true extent ([`jpeg_dc::shrink_reduced`]).
///
/// The cells are summed directly in f64: one pass over the picture and no summed-area
/// table of the whole of it (which cost as much as the filter's three signals
/// together). On whole-number pictures (decoded pixels) both sums are exact, so the
/// result is bit-identical to the table's; on fractional ones the direct sum also
/// avoids the table's rounding at large partial sums.
fn box_mean(g: &Gray, ex: f32, ey: f32, nw: usize, nh: usize) -> Gray {
    let xs = cell_edges(0.0, ex, nw, g.w);
    let ys = cell_edges(0.0, ey, nh, g.h);
    // One source pixel per cell (a reduced JPEG picture already at the work size: a
    // 2048 px photo's DC picture for the filter's 256, a 512 px one's quarter picture
    // for dedup's 128): each mean is the pixel itself, bit for bit, so it is copied.
    let one = |e: &[(usize, usize)]| e.iter().enumerate().all(|(i, &(a, b))| a == i && b == i + 1);
    if (nw, nh) == (g.w, g.h) && one(&xs) && one(&ys) {
        return g.clone();
    }
    let mut acc = vec![0f64; g.w];
    let mut px = Vec::with_capacity(nw * nh);
    for &(ya, yb) in &ys {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for y in ya..yb {
            for (a, &v) in acc.iter_mut().zip(&g.px[y * g.w..(y + 1) * g.w]) {
                *a += v as f64;
            }
        }
        for &(xa, xb) in &xs {
            let sum: f64 = acc[xa..xb].iter().sum();
            px.push((sum / ((yb - ya) * (xb - xa)) as f64) as f32);
        }
    }
    Gray { w: nw, h: nh, px }
}

/// Source cells [l, r) of `n` output cells spanning [a, b) on a side of `max` pixels,
/// edges rounded to the source grid; a cell narrower than a source pixel takes the
/// pixel under its centre. Shared by [`shrink`] and [`Integral::resample`].
fn cell_edges(a: f32, b: f32, n: usize, max: usize) -> Vec<(usize, usize)> {
    (0..n)
        .map(|i| {
            let lo = a + (b - a) * i as f32 / n as f32;
            let hi = a + (b - a) * (i + 1) as f32 / n as f32;
            let mut l = (lo.round().max(0.0) as usize).min(max.saturating_sub(1));
            let mut r = (hi.round().max(0.0) as usize).min(max);
            if r <= l {
                // Sub-pixel cell: the source pixel under its centre.
                l = (((lo + hi) / 2.0).max(0.0) as usize).min(max.saturating_sub(1));
                r = l + 1;
            }
            (l, r)
        })
        .collect()
}

/// Summed-area table: any rectangle's mean in O(1), so every window of every size
/// is resampled in O(output pixels).
pub struct Integral {
    w: usize,
    h: usize,
    s: Vec<f64>,
}

impl Integral {
    pub fn new(g: &Gray) -> Self {
        let (w, h) = (g.w, g.h);
        let mut s = vec![0f64; (w + 1) * (h + 1)];
        // Each row's running sum is one chain of dependent adds: four rows' chains run
        // side by side (each row still summed left to right, so the same bits), then
        // the rows above are added in order. Signing spent 3% of its CPU here.
        const K: usize = 4;
        let mut y = 0;
        while y < h {
            let k = K.min(h - y);
            let mut run = [0f64; K];
            for x in 0..w {
                for (i, r) in run.iter_mut().enumerate().take(k) {
                    *r += g.px[(y + i) * w + x] as f64;
                    s[(y + i + 1) * (w + 1) + x + 1] = *r;
                }
            }
            for i in 0..k {
                let (above, row) = s.split_at_mut((y + i + 1) * (w + 1));
                for (v, a) in row[1..w + 1].iter_mut().zip(&above[(y + i) * (w + 1) + 1..]) {
                    *v += *a;
                }
            }
            y += k;
        }
        Integral { w, h, s }
    }

    #[inline]
    fn at(&self, x: usize, y: usize) -> f64 {
        self.s[y * (self.w + 1) + x]
    }

    /// Box-average of rectangle [x0,x1)×[y0,y1) (source pixels, fractional edges
    /// rounded to the source grid) onto an `nw`×`nh` grid. Cells narrower than a source
    /// pixel take the nearest source pixel.
    pub fn resample(&self, x0: f32, y0: f32, x1: f32, y1: f32, nw: usize, nh: usize) -> Vec<f32> {
        let xs = cell_edges(x0, x1, nw, self.w);
        let ys = cell_edges(y0, y1, nh, self.h);
        let mut out = Vec::with_capacity(nw * nh);
        for &(ya, yb) in &ys {
            for &(xa, xb) in &xs {
                let sum = self.at(xb, yb) - self.at(xa, yb) - self.at(xb, ya) + self.at(xa, ya);
                out.push((sum / ((yb - ya) * (xb - xa)) as f64) as f32);
            }
        }
        out
    }
}

/// What the header alone says about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: image::ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// Format (by content) and size from the header, without decoding pixels and without
/// the image crate's limit on the declared size (a caller's bomb guard decides on the
/// size). What reading the header may allocate is capped at [`HEADER_ALLOC`].
pub fn probe(bytes: &[u8]) -> Result<Header, DecodeError> {
    let r = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| DecodeError::Decode(e.to_string()))?;
    let format = r.format().ok_or_else(|| DecodeError::Decode("unrecognised image format".into()))?;
    let mut r = r;
    r.limits(header_limits());
    let (width, height) = r.into_dimensions().map_err(|e| DecodeError::Decode(e.to_string()))?;
    Ok(Header { format, width, height })
}

/// The `format` column's name for an image format, as every stage writes it and the
/// schema documents it (png, jpeg, gif, webp, bmp): the format's first file extension,
/// except for JPEG, whose first extension is "jpg" but whose name here is "jpeg" (one
/// corpus's `GROUP BY format` split its JPEGs in two).
pub fn format_name(f: image::ImageFormat) -> String {
    match f {
        image::ImageFormat::Jpeg => "jpeg".into(),
        other => other.extensions_str().first().copied().unwrap_or("unknown").to_string(),
    }
}

/// Whether a GIF, PNG (APNG) or WebP holds more than one frame (a GIF: two frames
/// whose data is whole, [`gif_frames`]). The filter drops animations (M6 keeps still
/// pictures), dedup keeps them last, and crawl keeps them as they came, so that the
/// filter can still see them; all ask here.
pub fn animated(format: image::ImageFormat, bytes: &[u8]) -> bool {
    match format {
        image::ImageFormat::Gif => gif_frames(bytes, 2) >= 2,
        // Header-sized limits: the reader inflates the colour profile (see HEADER_ALLOC).
        image::ImageFormat::Png => image::codecs::png::PngDecoder::with_limits(Cursor::new(bytes), header_limits()).is_ok_and(|d| d.is_apng().unwrap_or(false)),
        image::ImageFormat::WebP => image::codecs::webp::WebPDecoder::new(Cursor::new(bytes)).is_ok_and(|d| d.has_animation()),
        _ => false,
    }
}

/// Frames of a GIF, counted up to `most`, by walking its blocks without decoding any:
/// a frame counts when its image descriptor names a non-empty area and its data
/// sub-blocks end inside the file. Decoding two frames to tell a still GIF from an
/// animation took 1.7 ms for a 512 px photo saved as GIF, 70% of decoding it at
/// dedup's work size, on every GIF dedup and the filter saw.
pub fn gif_frames(bytes: &[u8], most: usize) -> usize {
    // Sub-blocks from `i` (a length byte, then that many bytes, until a length of 0):
    // the offset after the terminator, or None when the file ends first.
    let sub_blocks = |mut i: usize| -> Option<usize> {
        loop {
            let n = *bytes.get(i)? as usize;
            i += 1 + n;
            if n == 0 {
                return Some(i);
            }
        }
    };
    let table = |packed: u8| if packed & 0x80 != 0 { 3usize << ((packed & 7) + 1) } else { 0 };
    if bytes.len() < 13 || !(bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a")) {
        return 0;
    }
    let (mut i, mut frames) = (13 + table(bytes[10]), 0);
    while frames < most {
        match bytes.get(i) {
            Some(0x21) => match sub_blocks(i + 2) {
                Some(next) => i = next,
                None => break,
            },
            Some(0x2C) => {
                let Some(d) = bytes.get(i + 1..i + 10) else { break };
                let (w, h) = (u16::from_le_bytes([d[4], d[5]]), u16::from_le_bytes([d[6], d[7]]));
                // The descriptor, its colour table, then the LZW code size byte.
                match sub_blocks(i + 10 + table(d[8]) + 1) {
                    Some(next) => {
                        frames += usize::from(w > 0 && h > 0);
                        i = next;
                    }
                    None => break,
                }
            }
            _ => break,
        }
    }
    frames
}

/// The most a header read may allocate. A PNG's header holds its colour profile
/// (iCCP), deflate-compressed: a 1 MB file whose profile inflates to 1 GB of zeros
/// made the probe allocate the gigabyte (no limits) and the image crate's own readers
/// 512 MB (their default). Real profiles are well under a megabyte; one over this is
/// skipped by the PNG reader, not an error.
pub const HEADER_ALLOC: u64 = 16 << 20;

/// Image crate limits for reading headers: any declared size, [`HEADER_ALLOC`] bytes.
pub fn header_limits() -> image::Limits {
    let mut l = image::Limits::no_limits();
    l.max_alloc = Some(HEADER_ALLOC);
    l
}

/// Image crate limits for decoding `bytes` in full: what the declared picture needs
/// (width × height × 8 bytes, RGBA at 16 bits) plus [`HEADER_ALLOC`], and never more
/// than the image crate's default (512 MiB, its bomb guard). The default alone let a
/// 200×200 PNG's colour profile inflate to 512 MB.
pub fn decode_limits(bytes: &[u8]) -> image::Limits {
    let need = probe(bytes).map_or(0, |h| h.width as u64 * h.height as u64 * 8);
    let mut l = image::Limits::default();
    l.max_alloc = Some(need.saturating_add(HEADER_ALLOC).min(l.max_alloc.unwrap_or(u64::MAX)));
    l
}

/// The image crate's full decode (format from the content) under [`decode_limits`]:
/// what `image::load_from_memory` does, without its metadata allowance.
pub fn load(bytes: &[u8]) -> Result<image::DynamicImage, image::ImageError> {
    let mut r = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    r.limits(decode_limits(bytes));
    r.decode()
}

/// The content frame: rows and columns at the picture's edges that are flat (low
/// spread) and of the edge's colour are letterbox bars, padding or empty margin, and
/// are cut (at most 45% of each side, so a mostly flat picture keeps a frame).
pub fn content_frame(g: &Gray) -> (usize, usize, usize, usize) {
    // What counts as flat scales with the picture's own contrast: with fixed grey
    // levels, a darkened or faded copy had more of its dim edges cut than its original
    // (a 0.6x brightness copy lost over 10% of a side), and the two no longer lined up.
    // Capped at the levels chosen for ordinary photos (std 3, drift 8 at a picture
    // std of 50 and more); floored so that JPEG noise on real bars still counts as flat.
    let spread = {
        let (mut s, mut s2) = (0f64, 0f64);
        for &v in &g.px {
            s += v as f64;
            s2 += (v as f64) * (v as f64);
        }
        let n = g.px.len().max(1) as f64;
        ((s2 / n - (s / n) * (s / n)).max(0.0).sqrt()) as f32
    };
    let max_std = (spread * 0.06).clamp(1.5, 3.0);
    let max_shift = (spread * 0.16).clamp(4.0, 8.0);
    let stats = |it: &mut dyn Iterator<Item = f32>| -> (f32, f32) {
        let (mut n, mut s, mut s2) = (0f32, 0f32, 0f32);
        for v in it {
            n += 1.0;
            s += v;
            s2 += v * v;
        }
        let m = s / n.max(1.0);
        (m, (s2 / n.max(1.0) - m * m).max(0.0).sqrt())
    };
    trim_edges(g, |line, edge| {
        let (m, s) = stats(line);
        s <= max_std && (m - edge).abs() <= max_shift
    })
}

/// The frame left after cutting edge lines that `flat(line, edge)` accepts, where
/// `edge` is the mean of the outermost line on that side (at most 45% of each side).
/// Trimmed in passes, each measuring lines only inside the current frame, so padding
/// around a picture that has its own flat border (white margin around black bars)
/// comes off layer by layer, as the original's border does.
pub fn trim_edges(g: &Gray, flat: impl Fn(&mut dyn Iterator<Item = f32>, f32) -> bool) -> (usize, usize, usize, usize) {
    let (w, h) = (g.w, g.h);
    let mean = |it: &mut dyn Iterator<Item = f32>| {
        let (mut n, mut s) = (0f32, 0f32);
        for v in it {
            n += 1.0;
            s += v;
        }
        s / n.max(1.0)
    };
    let (mut x0, mut y0, mut x1, mut y1) = (0usize, 0usize, w, h);
    for _ in 0..4 {
        let (cx0, cy0, cx1, cy1) = (x0, y0, x1, y1);
        // A line as (first pixel, step, length): a row inside the frame, or a column.
        let row = |y: usize| (y * w + cx0, 1, cx1 - cx0);
        let col = |x: usize| (cy0 * w + x, w, cy1 - cy0);
        let px = |(start, step, n): (usize, usize, usize)| (0..n).map(move |i| g.px[start + i * step]);
        // Lines from the edge inward that are flat and of the edge line's colour;
        // `limit` keeps at least 55% of the side.
        let side = |limit: usize, line: &dyn Fn(usize) -> (usize, usize, usize)| -> usize {
            let edge = mean(&mut px(line(0)));
            let mut k = 0;
            while k < limit && flat(&mut px(line(k)), edge) {
                k += 1;
            }
            k
        };
        let top = side((h * 45 / 100).saturating_sub(cy0), &|k| row(cy0 + k));
        let bottom = side((h * 45 / 100).saturating_sub(h - cy1), &|k| row(cy1 - 1 - k));
        let left = side((w * 45 / 100).saturating_sub(cx0), &|k| col(cx0 + k));
        let right = side((w * 45 / 100).saturating_sub(w - cx1), &|k| col(cx1 - 1 - k));
        if top + bottom + left + right == 0 || cx1 - cx0 < left + right + 4 || cy1 - cy0 < top + bottom + 4 {
            break;
        }
        (x0, y0, x1, y1) = (cx0 + left, cy0 + top, cx1 - right, cy1 - bottom);
    }
    (x0, y0, x1, y1)
}

/// The sample photos (`make data`), where `M6_DATA_DIR` says, as every other test
/// finds them.
#[cfg(test)]
fn test_photos_dir() -> std::path::PathBuf {
    std::env::var_os("M6_DATA_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")).join("photos")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PNG, BMP and lossless WebP (bare, and in an extended file after other chunks)
    /// are lossless, grey PNGs without colour; JPEG, GIF and lossy WebP are not, nor is
    /// a cut-off WebP header.
    #[test]
    fn lossless_formats_are_told_from_their_headers() {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(16, 12, |x, y| image::Rgb([(x * 15) as u8, (y * 20) as u8, 90])));
        let encode = |f| {
            let mut buf = std::io::Cursor::new(vec![]);
            img.write_to(&mut buf, f).unwrap();
            buf.into_inner()
        };
        for f in [image::ImageFormat::Png, image::ImageFormat::Bmp, image::ImageFormat::WebP] {
            assert_eq!(lossless(&encode(f)), Some(true), "{f:?}");
        }
        for f in [image::ImageFormat::Jpeg, image::ImageFormat::Gif] {
            assert_eq!(lossless(&encode(f)), None, "{f:?}");
        }
        for grey in [img.to_luma8().into(), image::DynamicImage::ImageLumaA8(img.to_luma_alpha8())] {
            let mut buf = std::io::Cursor::new(vec![]);
            grey.write_to(&mut buf, image::ImageFormat::Png).unwrap();
            assert_eq!(lossless(buf.get_ref()), Some(false), "{:?}", grey.color());
        }
        // RIFF/WEBP with the given chunks (tag, payload), sizes as a muxer writes them.
        let riff = |chunks: &[(&[u8; 4], &[u8])]| {
            let mut body = b"WEBP".to_vec();
            for (tag, data) in chunks {
                body.extend_from_slice(*tag);
                body.extend_from_slice(&(data.len() as u32).to_le_bytes());
                body.extend_from_slice(data);
                if data.len() % 2 == 1 {
                    body.push(0);
                }
            }
            let mut file = b"RIFF".to_vec();
            file.extend_from_slice(&(body.len() as u32).to_le_bytes());
            file.extend_from_slice(&body);
            file
        };
        assert_eq!(lossless(&riff(&[(b"VP8 ", &[0; 30])])), None);
        assert_eq!(lossless(&riff(&[(b"VP8X", &[0; 10]), (b"ICCP", &[1; 7]), (b"VP8L", &[0; 20])])), Some(true));
        assert_eq!(lossless(&riff(&[(b"VP8X", &[0; 10]), (b"ICCP", &[1; 7]), (b"VP8 ", &[0; 20])])), None);
        let whole = riff(&[(b"VP8X", &[0; 10]), (b"VP8L", &[0; 20])]);
        assert_eq!(lossless(&whole), Some(true));
        assert_eq!(lossless(&whole[..34]), None, "the bitstream's chunk header is cut off");
    }

    /// [`Seen::colour`] on every decode path: a grey picture is `Some(false)` in every
    /// layout it can be stored in (grey, grey + alpha, RGB, RGBA with colour only under
    /// transparent pixels, BMP, GIF, lossless WebP, three-component JPEG at full size
    /// and at 1/4), and the same picture with a 12 px red square near its lower right
    /// corner is `Some(true)` (so rows are checked past the first ones).
    #[test]
    fn colour_is_told_on_every_decode_path() {
        use image::{DynamicImage as D, ImageFormat as F};
        let side = 64;
        for (w, h) in [(300u32, 200u32), (100, 80)] {
            let grey = image::RgbaImage::from_fn(w, h, |x, y| {
                let v = ((x * 255 / w + y * 64 / h) % 256) as u8;
                // Colour where nothing shows: transparent pixels.
                if x < 8 && y < 8 { image::Rgba([250, 10, 10, 0]) } else { image::Rgba([v, v, v, 255]) }
            });
            let mut marked = grey.clone();
            for y in h - 20..h - 8 {
                for x in w - 20..w - 8 {
                    marked.put_pixel(x, y, image::Rgba([200, 30, 30, 255]));
                }
            }
            for (pic, colour) in [(&grey, false), (&marked, true)] {
                let opaque = D::ImageRgb8(rgb_on_white(D::ImageRgba8(pic.clone())));
                let mut files: Vec<(&str, Vec<u8>)> = vec![];
                let mut put = |what: &'static str, img: &D, f: F| {
                    let mut buf = std::io::Cursor::new(vec![]);
                    img.write_to(&mut buf, f).unwrap();
                    files.push((what, buf.into_inner()));
                };
                put("rgba png", &D::ImageRgba8(pic.clone()), F::Png);
                put("rgb png", &opaque, F::Png);
                put("bmp", &opaque, F::Bmp);
                put("gif", &opaque, F::Gif);
                put("lossless webp", &opaque, F::WebP);
                put("jpeg", &opaque, F::Jpeg);
                if !colour {
                    put("grey png", &D::ImageLuma8(opaque.to_luma8()), F::Png);
                    put("grey + alpha png", &D::ImageLumaA8(D::ImageRgba8(pic.clone()).to_luma_alpha8()), F::Png);
                }
                for (what, bytes) in files {
                    let ((_, fw, fh, _), seen) = decode_gray_seen(&bytes, side, JpegGrey::Luma).unwrap();
                    assert_eq!((fw, fh), (w, h));
                    assert_eq!(seen.colour, Some(colour), "{what} {w}x{h}");
                }
            }
        }
    }

    /// [`Seen::variety`] on every decode path that sees chroma: a sepia copy's is under
    /// 1.5 levels and under 0.3 of its colour photo's (dedup's tinted copy), in PNG (RGB,
    /// and RGBA shown on white), BMP (the image crate's path) and JPEG (the luma read's
    /// DC means, at 1/4 and at full size), for the photo and for a quarter-size copy;
    /// a grey PNG's is 0; a picture of three blocks has none.
    #[test]
    fn variety_is_told_on_every_decode_path() {
        use image::{DynamicImage as D, ImageFormat as F};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/photos");
        let file = |img: &D, f: F| {
            let mut buf = std::io::Cursor::new(vec![]);
            img.write_to(&mut buf, f).unwrap();
            buf.into_inner()
        };
        let variety = |b: &[u8]| decode_gray_seen(b, 64, JpegGrey::Luma).unwrap().1.variety;
        for name in ["chelsea.png", "coffee.png", "astronaut.png"] {
            let photo = image::open(dir.join(name)).unwrap().to_rgb8();
            let sepia = image::RgbImage::from_raw(photo.width(), photo.height(), tones::sepia(photo.as_raw())).unwrap();
            let small = |img: &image::RgbImage| image::imageops::thumbnail(img, img.width() / 4, img.height() / 4);
            // Full size: JPEG's 1/4 luma read; at a quarter: its full-size read.
            for (size, colour, tinted) in [("full", photo.clone(), sepia.clone()), ("1/4", small(&photo), small(&sepia))] {
                let files = |img: &image::RgbImage| {
                    let d = D::ImageRgb8(img.clone());
                    [("rgb png", file(&d, F::Png)), ("rgba png", file(&D::ImageRgba8(d.to_rgba8()), F::Png)), ("bmp", file(&d, F::Bmp)), ("jpeg", file(&d, F::Jpeg))]
                };
                for ((how, c), (_, s)) in files(&colour).into_iter().zip(files(&tinted)) {
                    let (vc, vs) = (variety(&c).unwrap(), variety(&s).unwrap());
                    assert!(vs < 1.5 && vs < 0.3 * vc, "{name} {size} {how}: colour {vc}, sepia {vs}");
                }
                assert_eq!(variety(&file(&D::ImageLuma8(D::ImageRgb8(colour).to_luma8()), F::Png)), Some(0.0), "{name} {size} grey png");
            }
        }
        // Three 16×16 blocks.
        let tiny = image::RgbImage::from_fn(40, 16, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 90]));
        let mut buf = std::io::Cursor::new(vec![]);
        D::ImageRgb8(tiny).write_to(&mut buf, F::Png).unwrap();
        assert_eq!(decode_gray_seen(buf.get_ref(), 64, JpegGrey::Luma).unwrap().1.variety, None);
    }

    /// Two frames that are whole make an animation; a still GIF, a GIF cut inside or
    /// before its second frame, and not a GIF at all do not.
    #[test]
    fn gif_frames_are_counted_from_the_blocks() {
        use image::codecs::gif::GifEncoder;
        let a = image::RgbaImage::from_fn(40, 30, |x, y| image::Rgba([(x * 6) as u8, (y * 8) as u8, 90, 255]));
        let b = image::RgbaImage::from_fn(40, 30, |x, y| image::Rgba([(y * 8) as u8, (x * 6) as u8, 30, 255]));
        let mut two = vec![];
        GifEncoder::new(&mut two).encode_frames([image::Frame::new(a.clone()), image::Frame::new(b)]).unwrap();
        let mut one = vec![];
        GifEncoder::new(&mut one).encode_frames([image::Frame::new(a)]).unwrap();
        assert_eq!((gif_frames(&two, 9), gif_frames(&one, 9)), (2, 1));
        assert!(animated(image::ImageFormat::Gif, &two) && !animated(image::ImageFormat::Gif, &one));
        // Cut inside the second frame's data, or just after the first frame.
        assert_eq!(gif_frames(&two[..two.len() - 10], 9), 1);
        assert_eq!(gif_frames(&two[..one.len() - 1], 9), 1);
        assert_eq!(gif_frames(b"GIF89a", 9), 0);
        assert_eq!(gif_frames(&one[..20], 9), 0);
    }

    fn gray(w: usize, h: usize, f: impl Fn(usize, usize) -> f32) -> Gray {
        Gray { w, h, px: (0..w * h).map(|i| f(i % w, i / w)).collect() }
    }

    #[test]
    fn integer_shrink_matches_the_summed_area_resample() {
        let (w, h) = (301, 207);
        let raw: Vec<u8> = (0..w * h).map(|i| ((i * 37 + i / w * 11) % 251) as u8).collect();
        let f = Gray { w, h, px: raw.iter().map(|&v| v as f32).collect() };
        let (a, b) = (shrink(&f, 64), shrink_u8(&raw, w, h, 64));
        assert_eq!((a.w, a.h), (b.w, b.h));
        assert!(a.px.iter().zip(&b.px).all(|(x, y)| (x - y).abs() < 1e-2));
        // The running-sum cells give exactly the per-cell sums (integers, one division).
        for (w, h, side) in [(301, 207, 64), (1000, 37, 192), (97, 400, 50), (5, 3, 2)] {
            let raw: Vec<u8> = (0..w * h).map(|i| ((i * 131 + i / w * 7) % 256) as u8).collect();
            let g = shrink_u8(&raw, w, h, side);
            let f = side as f64 / w.max(h) as f64;
            let (nw, nh) = (((w as f64 * f).round() as usize).max(1), ((h as f64 * f).round() as usize).max(1));
            assert_eq!((g.w, g.h), (nw, nh));
            let edge = |i: usize, n: usize, src: usize| ((i as f64 * src as f64 / n as f64).round() as usize).min(src);
            for j in 0..nh {
                let (y0, y1) = (edge(j, nh, h), edge(j + 1, nh, h).max(edge(j, nh, h) + 1).min(h));
                for i in 0..nw {
                    let (x0, x1) = (edge(i, nw, w), edge(i + 1, nw, w).max(edge(i, nw, w) + 1).min(w));
                    let sum: u64 = (y0..y1).flat_map(|y| (x0..x1).map(move |x| (y, x))).map(|(y, x)| raw[y * w + x] as u64).sum();
                    assert_eq!(g.px[j * nw + i].to_bits(), (sum as f32 / ((x1 - x0) * (y1 - y0)) as f32).to_bits(), "{w}x{h}->{side} cell {i},{j}");
                }
            }
        }
    }

    /// The per-cell loops the faster shrinks replaced, kept here as the reference.
    fn shrink_u8_reference(px: &[u8], w: usize, h: usize, max_side: usize) -> Gray {
        let f = max_side as f64 / w.max(h) as f64;
        let (nw, nh) = (((w as f64 * f).round() as usize).max(1), ((h as f64 * f).round() as usize).max(1));
        let edges = |n: usize, src: usize| -> Vec<usize> { (0..=n).map(|i| ((i as f64 * src as f64 / n as f64).round() as usize).min(src)).collect() };
        let (xe, ye) = (edges(nw, w), edges(nh, h));
        let mut out = vec![];
        for j in 0..nh {
            let (y0, y1) = (ye[j], ye[j + 1].max(ye[j] + 1).min(h));
            for i in 0..nw {
                let (x0, x1) = (xe[i], xe[i + 1].max(xe[i] + 1).min(w));
                let sum: u64 = (y0..y1).flat_map(|y| (x0..x1).map(move |x| px[y * w + x] as u64)).sum();
                out.push(sum as f32 / ((x1 - x0) * (y1 - y0)) as f32);
            }
        }
        Gray { w: nw, h: nh, px: out }
    }

    /// The faster shrinks give the old values bit for bit (the quality signals are
    /// columns users filter on): u16 bands, u32 bands (over 257 rows), and the direct
    /// box sums against the summed-area table.
    #[test]
    fn faster_shrinks_are_bit_identical() {
        for (w, h, side) in [(1411, 1000, 256), (1000, 1411, 256), (301, 207, 64), (640, 480, 192), (37, 3000, 8), (4096, 2731, 256), (500, 499, 499), (9000, 1000, 8), (2600, 40, 256)] {
            let raw: Vec<u8> = (0..w * h).map(|i| ((i * 37 + i / w * 11 + (i * i) % 7) % 256) as u8).collect();
            let (a, b) = (shrink_u8(&raw, w, h, side), shrink_u8_reference(&raw, w, h, side));
            assert_eq!((a.w, a.h), (b.w, b.h));
            assert!(a.px.iter().zip(&b.px).all(|(x, y)| x.to_bits() == y.to_bits()), "shrink_u8 {w}x{h} to {side}");
            // shrink (direct sums) vs Integral::resample, on whole-number and on
            // fractional (already shrunk) pictures.
            let whole = Gray { w, h, px: raw.iter().map(|&v| v as f32).collect() };
            for g in [&whole, &a] {
                for s2 in [64, 17] {
                    let d = shrink(g, s2);
                    if g.w.max(g.h) <= s2 {
                        continue;
                    }
                    let r = Integral::new(g).resample(0.0, 0.0, g.w as f32, g.h as f32, d.w, d.h);
                    assert!(d.px.iter().zip(&r).all(|(x, y)| x.to_bits() == y.to_bits()), "shrink {}x{} to {s2}", g.w, g.h);
                }
            }
        }
    }

    /// A reduced picture already at the work size is copied: the same bits as the cell
    /// means of one pixel each (a 2048×1365 JPEG's 256×171 DC picture at 256 px, whose
    /// rows span 170.625 source rows), and other sizes still average.
    #[test]
    fn one_pixel_cells_are_copied_bit_for_bit() {
        let g = Gray { w: 256, h: 171, px: (0..256 * 171).map(|i| ((i * 7919) % 25_500) as f32 / 100.0 + 0.123).collect() };
        let c = jpeg_dc::shrink_reduced(&g, 2048, 1365, 256, 8);
        assert_eq!((c.w, c.h), (256, 171));
        assert!(c.px.iter().zip(&g.px).all(|(a, b)| a.to_bits() == b.to_bits()));
        // The general path, on the same cells, gives those bits too.
        let xs = cell_edges(0.0, 256.0, 256, 256);
        let ys = cell_edges(0.0, 170.625, 171, 171);
        for (j, &(ya, yb)) in ys.iter().enumerate() {
            for (i, &(xa, xb)) in xs.iter().enumerate() {
                assert_eq!((xa, xb, ya, yb), (i, i + 1, j, j + 1));
                let v = (g.px[j * 256 + i] as f64 / 1.0) as f32;
                assert_eq!(v.to_bits(), c.px[j * 256 + i].to_bits());
            }
        }
        let s = jpeg_dc::shrink_reduced(&g, 2048, 1365, 128, 8);
        assert_eq!((s.w, s.h), (128, 85));
        let want = (g.px[0] + g.px[1] + g.px[256] + g.px[257]) as f64 / 4.0;
        assert!((s.px[0] as f64 - want).abs() < 1e-4);
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) % 256) as u8]));
        let mut out = vec![];
        image::DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
        out
    }

    #[test]
    fn jpeg_size_reads_the_frame_header_and_picks_the_decoder() {
        let small = jpeg(300, 200);
        assert_eq!(jpeg_size(&small), Some((300, 200)));
        assert_eq!(jpeg_size(&small[..20]), None);
        // Under 4 × 192 px: full-size single-threaded decode (scale 1); larger: the
        // DCT-domain scaler (1/4 here).
        let (g, w, h, scale) = decode_gray(&small, 192).unwrap();
        assert_eq!((g.w, g.h, w, h, scale), (192, 128, 300, 200, 1));
        let big = jpeg(800, 600);
        let (g, w, h, scale) = decode_gray(&big, 192).unwrap();
        assert_eq!((g.w.max(g.h), w, h, scale), (192, 800, 600, 4));
    }

    #[test]
    fn letterbox_bars_are_trimmed() {
        // A textured 60×40 picture inside black bars of 10 px top and bottom.
        let g = gray(60, 60, |x, y| if (10..50).contains(&y) { ((x * 7 + y * 13) % 200) as f32 + 20.0 } else { 0.0 });
        assert_eq!(content_frame(&g), (0, 10, 60, 50));
    }

    #[test]
    fn frames_do_not_move_when_a_photo_is_darkened_or_faded_and_bars_still_come_off() {
        // Real photos with dim edges, at the dedup work size; a copy at 0.6x brightness
        // (and one at 0.5x contrast about mid-grey) must keep the original's frame: with
        // fixed flatness levels clock_motion's darkened copy lost 37 columns.
        for name in ["clock_motion.png", "cell.png", "moon.png", "astronaut.png"] {
            let bytes = std::fs::read(test_photos_dir().join(name)).unwrap();
            let (g, _, _, _) = decode_gray(&bytes, 128).unwrap();
            let f0 = content_frame(&g);
            for (what, k, c) in [("darker", 0.6f32, 0.0f32), ("faded", 0.5, 64.0)] {
                let copy = Gray { w: g.w, h: g.h, px: g.px.iter().map(|&v| (v * k + c).round()).collect() };
                let f1 = content_frame(&copy);
                let moved = [f0.0.abs_diff(f1.0), f0.1.abs_diff(f1.1), f0.2.abs_diff(f1.2), f0.3.abs_diff(f1.3)];
                assert!(moved.iter().all(|&d| d <= 2), "{name} {what}: frame {f0:?} -> {f1:?}");
            }
            // The same photo faded to a third of its contrast inside black bars with
            // JPEG-like noise on them: the bars still come off.
            let (w, h) = (g.w, g.h + 40);
            let noisy = gray(w, h, |x, y| if (20..20 + g.h).contains(&y) { g.px[(y - 20) * g.w + x] / 3.0 + 80.0 } else { ((x * 31 + y * 17) % 5) as f32 * 0.5 });
            let f = content_frame(&noisy);
            assert!(f.1 >= 19 && f.3 <= 21 + g.h, "{name}: bars of the faded photo not cut: {f:?}");
        }
    }
}
