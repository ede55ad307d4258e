//! EXIF orientation: how a picture is meant to be shown.
//!
//! Phone cameras store the sensor's pixels as they come and record the rotation in
//! the EXIF Orientation tag; browsers and image viewers apply it. A decoder that
//! ignores it hands sideways or mirrored pixels to everything after it: a training
//! sample whose caption describes the upright photo, or a signature that no
//! re-encoded (already rotated, EXIF stripped — what most CDNs serve) copy of the
//! same photo matches. Decoders here return the stored pixels; callers that care
//! about the picture as shown (dedup's signatures, tokenize's samples) apply
//! [`orientation`] to what they decoded. Rules that only depend on the set of pixels
//! (size, aspect, sharpness, entropy, borders) need not.

use std::io::Cursor;

pub use image::metadata::Orientation;

use crate::Gray;

/// The EXIF orientation of an encoded image: JPEG (APP1 `Exif` segment before the
/// first scan) read here, other formats (PNG `eXIf`, WebP `EXIF`, TIFF) through the
/// image crate's decoders. A missing, unreadable or out-of-range tag means
/// [`Orientation::NoTransforms`]: a damaged EXIF block never fails a decode.
pub fn orientation(bytes: &[u8]) -> Orientation {
    if bytes.len() > 3 && bytes[..3] == [0xFF, 0xD8, 0xFF] {
        return jpeg_exif(bytes).and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
    }
    use image::ImageDecoder;
    // Header-sized limits: the PNG reader inflates the colour profile (see HEADER_ALLOC).
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|mut r| {
            r.limits(crate::header_limits());
            r.into_decoder().ok()
        })
        .and_then(|mut d| d.orientation().ok())
        .unwrap_or(Orientation::NoTransforms)
}

/// Whether showing the picture swaps its width and height.
pub fn swaps_sides(o: Orientation) -> bool {
    matches!(o, Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH)
}

/// The TIFF payload of a JPEG's first APP1 `Exif` segment (after `Exif\0\0`), from
/// the marker segments before the first scan; a segment running past the end stops
/// the walk.
fn jpeg_exif(b: &[u8]) -> Option<&[u8]> {
    let mut p = crate::jpeg_dc::Parser::after_soi(b);
    loop {
        match p.segment()? {
            // Start of scan or end of image: EXIF comes before both.
            (0xDA | 0xD9, _) => return None,
            (0xE1, seg) if seg.starts_with(b"Exif\0\0") => return Some(&seg[6..]),
            _ => {}
        }
    }
}

/// A grey picture as it is meant to be shown under `o`.
pub fn orient_gray(g: Gray, o: Orientation) -> Gray {
    let (w, h) = (g.w, g.h);
    // Output pixel (x, y) of an out_w-wide picture reads stored pixel (sx, sy).
    let map: fn(usize, usize, usize, usize) -> (usize, usize) = match o {
        Orientation::NoTransforms => return g,
        Orientation::FlipHorizontal => |x, y, w, _| (w - 1 - x, y),
        Orientation::Rotate180 => |x, y, w, h| (w - 1 - x, h - 1 - y),
        Orientation::FlipVertical => |x, y, _, h| (x, h - 1 - y),
        // Transpose: rotate 90° clockwise, then mirror.
        Orientation::Rotate90FlipH => |x, y, _, _| (y, x),
        Orientation::Rotate90 => |x, y, _, h| (y, h - 1 - x),
        // Transverse: rotate 270° clockwise, then mirror.
        Orientation::Rotate270FlipH => |x, y, w, h| (w - 1 - y, h - 1 - x),
        Orientation::Rotate270 => |x, y, w, _| (w - 1 - y, x),
    };
    let (ow, oh) = if swaps_sides(o) { (h, w) } else { (w, h) };
    let mut px = Vec::with_capacity(w * h);
    for y in 0..oh {
        for x in 0..ow {
            let (sx, sy) = map(x, y, w, h);
            px.push(g.px[sy * w + sx]);
        }
    }
    Gray { w: ow, h: oh, px }
}

/// An RGB picture as it is meant to be shown under `o`.
pub fn orient_rgb(img: image::RgbImage, o: Orientation) -> image::RgbImage {
    if o == Orientation::NoTransforms {
        return img;
    }
    let mut d = image::DynamicImage::ImageRgb8(img);
    d.apply_orientation(o);
    d.into_rgb8()
}

/// A copy of JPEG `jpeg` carrying an EXIF block whose Orientation tag is `exif_value`
/// (1–8), little- or big-endian TIFF: what a phone camera writes. For tests here and in
/// the crates that decode images.
#[doc(hidden)]
pub fn with_jpeg_orientation(jpeg: &[u8], exif_value: u16, big_endian: bool) -> Vec<u8> {
    let u16b = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let u32b = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut tiff = Vec::new();
    tiff.extend_from_slice(if big_endian { b"MM" } else { b"II" });
    tiff.extend_from_slice(&u16b(42));
    tiff.extend_from_slice(&u32b(8));
    // IFD0: a Make tag (ASCII, stored in place) and then Orientation (SHORT, count 1).
    tiff.extend_from_slice(&u16b(2));
    tiff.extend_from_slice(&u16b(0x010F));
    tiff.extend_from_slice(&u16b(2));
    tiff.extend_from_slice(&u32b(4));
    tiff.extend_from_slice(b"m6\0\0");
    tiff.extend_from_slice(&u16b(0x0112));
    tiff.extend_from_slice(&u16b(3));
    tiff.extend_from_slice(&u32b(1));
    tiff.extend_from_slice(&u16b(exif_value));
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&u32b(0));
    let mut seg = b"Exif\0\0".to_vec();
    seg.extend_from_slice(&tiff);
    with_app1(jpeg, &seg)
}

/// Test support: `jpeg` with an APP1 segment holding `payload` right after its SOI.
#[doc(hidden)]
pub fn with_app1(jpeg: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo_rgb() -> image::RgbImage {
        let p = crate::test_photos_dir().join("chelsea.png");
        image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).to_rgb8()
    }

    fn jpeg_of(img: &image::RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90).encode(img.as_raw(), img.width() as u16, img.height() as u16, jpeg_encoder::ColorType::Rgb).unwrap();
        out
    }

    fn gray_of(img: &image::RgbImage) -> Gray {
        Gray { w: img.width() as usize, h: img.height() as usize, px: img.pixels().map(|p| p.0[1] as f32).collect() }
    }

    #[test]
    fn every_orientation_is_read_in_both_byte_orders_and_damage_means_none() {
        let jpeg = jpeg_of(&photo_rgb());
        assert_eq!(orientation(&jpeg), Orientation::NoTransforms);
        for v in 1..=8u16 {
            for be in [false, true] {
                let tagged = with_jpeg_orientation(&jpeg, v, be);
                assert_eq!(orientation(&tagged), Orientation::from_exif(v as u8).unwrap(), "value {v}, big endian {be}");
                // The image crate's own reader agrees (it is what PNG and WebP go through).
                use image::ImageDecoder;
                let mut d = image::codecs::jpeg::JpegDecoder::new(Cursor::new(&tagged)).unwrap();
                assert_eq!(d.orientation().unwrap(), orientation(&tagged));
            }
        }
        // Out of range, cut short, or an APP1 that is not EXIF: shown as stored.
        assert_eq!(orientation(&with_jpeg_orientation(&jpeg, 9, false)), Orientation::NoTransforms);
        let tagged = with_jpeg_orientation(&jpeg, 6, false);
        for cut in [3, 5, 12, 20, 40] {
            assert_eq!(orientation(&tagged[..cut]), Orientation::NoTransforms, "cut at {cut}");
        }
        let mut xmp = tagged.clone();
        xmp[6..10].copy_from_slice(b"http");
        assert_eq!(orientation(&xmp), Orientation::NoTransforms);
        let mut bad_len = tagged.clone();
        bad_len[4..6].copy_from_slice(&0xFFF0u16.to_be_bytes());
        assert_eq!(orientation(&bad_len), Orientation::NoTransforms);
        // Not an image at all.
        assert_eq!(orientation(b"not an image"), Orientation::NoTransforms);
    }

    #[test]
    fn grey_pictures_turn_as_the_image_crate_turns_rgb() {
        let img = photo_rgb();
        for v in 1..=8u8 {
            let o = Orientation::from_exif(v).unwrap();
            let want = gray_of(&orient_rgb(img.clone(), o));
            let got = orient_gray(gray_of(&img), o);
            assert_eq!((got.w, got.h), (want.w, want.h), "orientation {v}");
            assert!(got.px == want.px, "orientation {v}");
            assert_eq!(swaps_sides(o), v >= 5);
        }
    }

    /// A camera's file: the upright photo stored turned back, with the tag saying how
    /// to turn it; shown, it is the upright photo.
    #[test]
    fn a_camera_file_shows_the_upright_photo() {
        let upright = photo_rgb();
        let mut stored = image::DynamicImage::ImageRgb8(upright.clone());
        stored = stored.rotate270(); // the sensor's pixels of a photo taken turned
        let file = with_jpeg_orientation(&jpeg_of(&stored.to_rgb8()), 6, true);
        let decoded = image::load_from_memory(&file).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (upright.height(), upright.width()), "decoders return the stored pixels");
        let shown = orient_rgb(decoded, orientation(&file));
        assert_eq!(shown.dimensions(), upright.dimensions());
        let diff: f64 = shown.as_raw().iter().zip(upright.as_raw()).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>() / upright.as_raw().len() as f64;
        assert!(diff < 3.0, "mean abs difference {diff}");
    }
}
