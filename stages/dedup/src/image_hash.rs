//! Crop-tolerant image signatures for near-duplicate search.
//!
//! One decode per image, at the smallest scale the signature needs (JPEG is decoded
//! at 1/2, 1/4 or 1/8 scale in the DCT domain), to a grey work picture whose longer
//! side is at most [`WORK_SIDE`]. From it:
//!
//! * the content frame: flat borders (letterbox bars, padding, flat margins) are
//!   trimmed, so a padded copy and its original describe the same rectangle;
//! * [`WINDOWS`] pHashes of the frame: the whole frame and six sub-windows (centred
//!   90% and 80%, and the four corner-anchored 90% windows). A copy cropped by up to
//!   10% per side has its whole frame close to one of the original's windows (or the
//!   other way round), so the band keys of all seven hashes feed the LSH buckets and a
//!   pair is a candidate when any hash of one is close to any hash of the other;
//! * a [`THUMB`]×[`THUMB`] grey thumbnail of the frame, which the verifier
//!   ([`crate::image_verify`]) aligns over crop offsets to accept or reject a candidate.
//!
//! Everything is fixed-size so it fits the dedup payload files (random access while
//! verifying).


pub use m6_imaging::{content_frame, decode_gray, shrink, DecodeError as HashError, Gray, Integral};
use m6_imaging::exif;
use m6_imaging::JpegGrey;

/// Longer side of the grey work picture that hashes and the thumbnail are cut from.
///
/// 128 px: the largest window (the whole frame) is resampled to 32×32 and the
/// thumbnail to 48×48 from at least 2.6 source pixels per cell, and JPEGs from 512 px
/// decode at 1/4 scale and from 1024 px at 1/8 (luma DC alone; see
/// `m6_imaging::jpeg_dc`), and since session 20 from 256 px at 1/2 (2×2 cell means,
/// in place of a full decode: F1 unchanged). It was 192, where a 512-767 px JPEG (the benchmark's
/// photos, and much of the web) needed a full decode. Measured on
/// bench/dedup_images.py against 192: photos F1 0.9856 (0.9839), all images 0.8734
/// (0.8703), no hard negative merged; images per CPU-second +21% on the photos as they
/// come, +28% at 1024 px. On the mosaics of `bench/scale_run.py image_scale` it trades
/// recall for precision: at 2,000 / 10,000 / 20,000 / 100,000 precision 1.000 / 0.9989
/// / 0.9974 / 0.9779 (192: 1.000 / 0.9969 / 0.9959 / 0.9753), recall 0.9895 / 0.9813 /
/// 0.9858 / 0.9796 (0.995 / 0.9917 / 0.9888 / 0.9838), 10-20% less CPU. A false merge
/// drops a distinct picture; a missed copy only keeps one. A mix (192 px, but JPEGs'
/// 1/4 or 1/8 picture from 128 px on) was worse than either: photos F1 0.94, as copies
/// of one photo were signed from pictures of different sizes.
pub const WORK_SIDE: usize = 128;
/// Side of the stored verification thumbnail.
pub const THUMB: usize = 48;
/// Number of pHashes per image (whole frame first).
pub const WINDOWS: usize = 7;
/// The windows, as (left, top, right, bottom) fractions of the content frame.
pub const WINDOW_RECTS: [[f32; 4]; WINDOWS] = [
    [0.0, 0.0, 1.0, 1.0],
    [0.05, 0.05, 0.95, 0.95],
    [0.1, 0.1, 0.9, 0.9],
    [0.0, 0.0, 0.9, 0.9],
    [0.1, 0.0, 1.0, 0.9],
    [0.0, 0.1, 0.9, 1.0],
    [0.1, 0.1, 1.0, 1.0],
];

/// What signing an image yields.
#[derive(Debug, Clone)]
pub struct ImageSig {
    /// pHashes of [`WINDOW_RECTS`] over the content frame.
    pub hashes: [u64; WINDOWS],
    /// Grey thumbnail of the content frame, row-major.
    pub thumb: Vec<u8>,
    /// Width / height of the content frame (in source pixels).
    pub aspect: f32,
    /// Area in source pixels inside bars and padding of one even colour
    /// ([`unpadded_frame`]): the keep rule's size.
    pub frame_pixels: f32,
    /// Full size of the image as its header declares it.
    pub width: u32,
    pub height: u32,
    /// The scale the decoder produced (1, 2, 4 or 8: JPEG DCT-domain scaling).
    pub decode_scale: u32,
    /// Variance of the Laplacian of the work picture inside [`unpadded_frame`] (the
    /// keep rule's tie-break: the edge between a picture and its padding is not detail).
    pub sharpness: f32,
    /// Damage seen in a JPEG's entropy-coded data while its luma was read
    /// (`m6_imaging::decode_gray_seen`: at 1/2, 1/4 or 1/8 from 2 × [`WORK_SIDE`] on its
    /// longer side, at full size below; the filter drops such an image as
    /// `image.damaged`): the keep rule's flaw. Of a progressive file only the scans
    /// read are checked (luma's; its DC scans alone at 1/8).
    pub damaged: bool,
    /// `m6_imaging::lossless` of the encoded file (whether it stores colour, for a
    /// lossless one): lossless copies of the same picture are kept by file size.
    pub lossless: Option<bool>,
    /// The decode saw that the picture holds no colour (`m6_imaging::Seen::colour`):
    /// the keep rule puts such a copy after those in colour, whatever its file. A grey
    /// PNG of a colour photo outranked the colour JPEG it was made from (its bytes per
    /// pixel are a lossless file's). `false` where the decode could not tell.
    pub grey: bool,
    /// How varied the picture's colours are at one brightness, in levels
    /// (`m6_imaging::Seen::variety`): a sepia or duotone copy's is near 0, its colour
    /// original's several times more; the keep rule puts a copy far below its
    /// cluster's most varied one after the others (`image_verify::variety`).
    pub variety: Option<f32>,
}

/// Side of the grey block each window is resampled to before its pHash.
const N: usize = 32;

pub use crate::phash::phash32;

/// Grey levels a line of padding may drift from the edge's colour: 6 also took a
/// clear sky off a JPEG q92 photo but not off its q40 copy (blocking), which then
/// counted as larger and was kept.
const PAD_LEVELS: f32 = 3.0;

/// The frame inside letterbox bars and padding: edge lines of the work picture whose
/// every pixel is within [`PAD_LEVELS`] of the outermost line's mean, trimmed as
/// [`content_frame`] trims (`m6_imaging::trim_edges`). Stricter than `content_frame`,
/// which also cuts a picture's own flat margin (clear sky, a studio backdrop) and so
/// can cut a copy and its original by different amounts: this frame is the size the
/// keep rule compares, and bars of one even colour are what padding adds.
pub fn unpadded_frame(g: &Gray) -> (usize, usize, usize, usize) {
    m6_imaging::trim_edges(g, |line, edge| {
        for v in line {
            if (v - edge).abs() > PAD_LEVELS {
                return false;
            }
        }
        true
    })
}

/// Signs an already decoded grey picture.
pub fn sign_gray(g: &Gray, width: u32, height: u32, decode_scale: u32) -> ImageSig {
    let ii = Integral::new(g);
    let (x0, y0, x1, y1) = content_frame(g);
    let (fw, fh) = ((x1 - x0) as f32, (y1 - y0) as f32);
    let mut hashes = [0u64; WINDOWS];
    for (h, r) in hashes.iter_mut().zip(WINDOW_RECTS.iter()) {
        let px = ii.resample(x0 as f32 + r[0] * fw, y0 as f32 + r[1] * fh, x0 as f32 + r[2] * fw, y0 as f32 + r[3] * fh, N, N);
        *h = phash32(&px);
    }
    let thumb = ii.resample(x0 as f32, y0 as f32, x1 as f32, y1 as f32, THUMB, THUMB).into_iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
    // The work picture keeps the source's aspect up to rounding; the frame's aspect in
    // source pixels is the work aspect corrected by that rounding.
    let sx = width as f32 / g.w as f32;
    let sy = height as f32 / g.h as f32;
    let aspect = (fw * sx) / (fh * sy).max(1e-3);
    let (u0, v0, u1, v1) = unpadded_frame(g);
    let frame_pixels = (u1 - u0) as f32 * sx * (v1 - v0) as f32 * sy;
    // The quality signals' sharpness alone: dedup needs neither entropy nor border.
    let inner = Gray { w: u1 - u0, h: v1 - v0, px: (v0..v1).flat_map(|y| g.px[y * g.w + u0..y * g.w + u1].iter().copied()).collect() };
    let sharpness = m6_imaging::quality::sharpness(&inner);
    ImageSig { hashes, thumb, aspect, frame_pixels, width, height, decode_scale, sharpness, damaged: false, lossless: None, grey: false, variety: None }
}

/// Decodes (at reduced scale) and signs encoded image bytes.
///
/// Grey is BT.601 luma: a JPEG's own Y plane where it is decoded in full (no chroma
/// upsampling, colour conversion or RGB buffer: signing the benchmark's photos cost
/// 15% less than RGB then Rec. 709), the same weights from RGB on every other path,
/// so a JPEG and a PNG of one picture still get the same grey. Chosen on
/// bench/dedup_images.py: the duplicates found are the same as with Rec. 709 grey.
///
/// The picture is signed as it is shown: turned as its EXIF orientation says, so a
/// phone photo and a copy of it that was rotated when re-encoded (and lost its EXIF,
/// as CDNs serve them) get the same signature.
pub fn sign(bytes: &[u8]) -> Result<ImageSig, HashError> {
    let ((g, w, h, scale), seen) = m6_imaging::decode_gray_seen(bytes, WORK_SIDE, JpegGrey::Luma)?;
    let (g, w, h) = shown(bytes, g, w, h);
    Ok(ImageSig { damaged: seen.damage.is_some(), lossless: m6_imaging::lossless(bytes), grey: seen.colour == Some(false), variety: seen.variety, ..sign_gray(&g, w, h, scale) })
}

/// A decoded picture and its full size turned as `bytes`' EXIF orientation says.
fn shown(bytes: &[u8], g: Gray, w: u32, h: u32) -> (Gray, u32, u32) {
    let o = exif::orientation(bytes);
    let (w, h) = if exif::swaps_sides(o) { (h, w) } else { (w, h) };
    (exif::orient_gray(g, o), w, h)
}

/// A fully decoded image's grey work source, with [`sign`]'s weights (BT.601).
pub fn full_gray(img: &image::DynamicImage) -> Gray {
    let grey = match img {
        image::DynamicImage::ImageLuma8(g) => g.as_raw().clone(),
        // Transparency on white, as `sign`'s decoders show it.
        other if other.color().has_alpha() => m6_imaging::grey601(m6_imaging::rgb_on_white(other.clone()).as_raw(), 3),
        other => m6_imaging::grey601(other.to_rgb8().as_raw(), 3),
    };
    Gray { w: img.width() as usize, h: img.height() as usize, px: grey.into_iter().map(|v| v as f32).collect() }
}

/// Decodes at full scale (no DCT-domain scaling) and signs: the reference the
/// reduced-scale path is tested against.
pub fn sign_full_decode(bytes: &[u8]) -> Result<ImageSig, HashError> {
    let img = image::load_from_memory(bytes).map_err(|e| HashError::Decode(e.to_string()))?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(HashError::Empty(w, h));
    }
    let (g, w, h) = shown(bytes, shrink(&full_gray(&img), WORK_SIDE), w, h);
    Ok(sign_gray(&g, w, h, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(w: usize, h: usize, f: impl Fn(usize, usize) -> f32) -> Gray {
        Gray { w, h, px: (0..w * h).map(|i| f(i % w, i / w)).collect() }
    }

    #[test]
    fn integral_resample_is_a_box_average() {
        let g = gray(8, 4, |x, y| (x + 10 * y) as f32);
        let ii = Integral::new(&g);
        let out = ii.resample(0.0, 0.0, 8.0, 4.0, 2, 2);
        // Top-left 4×2 block: x 0..4, y 0..2 → mean x 1.5, mean y 0.5.
        assert!((out[0] - (1.5 + 5.0)).abs() < 1e-4);
        assert!((out[3] - (5.5 + 25.0)).abs() < 1e-4);
    }

    /// Padding comes off layer by layer, down to the frame of the picture without it; a
    /// picture's own textured edge stays.
    #[test]
    fn unpadded_frame_trims_even_bars_and_padding_in_layers() {
        // 40×30 of texture inside a 2-pixel even grey window border.
        let picture = |x: usize, y: usize| if x < 2 || y < 2 || x >= 42 || y >= 32 { 180.0 } else { ((x * 37 + y * 91) % 200) as f32 + 20.0 };
        let bare = gray(44, 34, picture);
        let (x0, y0, x1, y1) = unpadded_frame(&bare);
        assert_eq!((x0, y0, x1, y1), (2, 2, 42, 32));
        // The same on a white canvas 6 pixels wider on every side, with faint noise.
        let padded = gray(56, 46, |x, y| {
            if (6..50).contains(&x) && (6..40).contains(&y) {
                picture(x - 6, y - 6)
            } else {
                253.0 - ((x + y) % 3) as f32
            }
        });
        let (a0, b0, a1, b1) = unpadded_frame(&padded);
        assert_eq!((a1 - a0, b1 - b0), (x1 - x0, y1 - y0), "the padded copy's frame is the original's");
        // Letterbox bars (black above and below) come off too; the textured rows stay.
        let letterbox = gray(44, 60, |x, y| if (13..47).contains(&y) { picture(x, y - 13) } else { 0.0 });
        let (c0, d0, c1, d1) = unpadded_frame(&letterbox);
        assert_eq!((c1 - c0, d1 - d0), (40, 30));
    }

    /// A JPEG whose header declares 60000×60000 pixels (20 KB of file): signing read
    /// every declared block, 27 s and 400 MB, and signed the grey it made up. Dedup
    /// runs before the filter's bomb rule, so the decoder refuses it (the row keeps its
    /// exact-bytes key), and a real photo of the same bytes but its header still signs.
    #[test]
    fn a_decompression_bomb_is_not_decoded() {
        let img = image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 251) as u8]));
        let mut jpeg = vec![];
        image::DynamicImage::ImageRgb8(img).write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
        assert!(sign(&jpeg).is_ok());
        let mut i = 2;
        while !matches!(jpeg[i + 1], 0xC0 | 0xC2) {
            i += 2 + u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        }
        jpeg[i + 5..i + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        assert_eq!(m6_imaging::probe(&jpeg).map(|h| (h.width, h.height)).ok(), Some((60000, 60000)));
        assert!(sign(&jpeg).is_err());
    }
}
