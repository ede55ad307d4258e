//! Per-image quality signals, measured on the grey work picture (longer side at most
//! [`SIDE`] pixels, so values are comparable across resolutions):
//!
//! * `sharpness`: variance of the 4-neighbour Laplacian, in grey levels² — blurred or
//!   upscaled pictures score low;
//! * `entropy`: Shannon entropy of the 256-bin grey histogram, in bits (0–8) — flat,
//!   posterised or nearly blank pictures score low;
//! * `border`: share of the picture's area that is flat border (letterbox bars,
//!   padding), as [`crate::content_frame`] trims it.

use crate::{content_frame, decode_gray, DecodeError, Gray};

/// Longer side of the picture the signals are measured on.
pub const SIDE: usize = 256;

/// The quality signals of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    pub sharpness: f32,
    pub entropy: f32,
    pub border: f32,
}

/// Rows [`sharpness`] sums side by side.
const ROWS: usize = 4;

/// Variance of the 4-neighbour Laplacian of a grey picture, in grey levels² (0 for a
/// picture under 3×3): the `sharpness` signal, and dedup's keep-rule score.
pub fn sharpness(g: &Gray) -> f32 {
    let (w, h) = (g.w, g.h);
    if w < 3 || h < 3 {
        return 0.0;
    }
    // Row slices (no index arithmetic or bounds checks in the inner loop), f32 sums
    // within a row (at most 255 terms of |l| <= 2040), f64 across rows. A row's sums
    // are one long chain of dependent adds, so [`ROWS`] rows run side by side, each
    // summed in its own order: the value is bit-identical to one row at a time, at a
    // fraction of the time.
    let px = &g.px[..w * h];
    let (mut s, mut s2) = (0f64, 0f64);
    let mut y = 1;
    while y + ROWS <= h - 1 {
        let band = &px[(y - 1) * w..(y + ROWS + 1) * w];
        let (mut rs, mut rs2) = ([0f32; ROWS], [0f32; ROWS]);
        for x in 1..w - 1 {
            for k in 0..ROWS {
                let (up, row, down) = (k * w, (k + 1) * w, (k + 2) * w);
                let l = band[row + x - 1] + band[row + x + 1] + band[up + x] + band[down + x] - 4.0 * band[row + x];
                rs[k] += l;
                rs2[k] += l * l;
            }
        }
        for k in 0..ROWS {
            s += rs[k] as f64;
            s2 += rs2[k] as f64;
        }
        y += ROWS;
    }
    for y in y..h - 1 {
        let (up, row, down) = (&px[(y - 1) * w..y * w], &px[y * w..(y + 1) * w], &px[(y + 1) * w..(y + 2) * w]);
        let (mut rs, mut rs2) = (0f32, 0f32);
        for x in 1..w - 1 {
            let l = row[x - 1] + row[x + 1] + up[x] + down[x] - 4.0 * row[x];
            rs += l;
            rs2 += l * l;
        }
        s += rs as f64;
        s2 += rs2 as f64;
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let m = s / n;
    (s2 / n - m * m).max(0.0) as f32
}

/// Signals of a grey picture already reduced to at most [`SIDE`] on the longer side.
pub fn signals(g: &Gray) -> Signals {
    let (w, h) = (g.w, g.h);
    let sharpness = sharpness(g);
    // Grey levels are never negative: adding one half and truncating rounds them as
    // f32::round does, without its library call per pixel. Clamping first keeps the
    // index in range without a second test; four histograms filled in turn keep runs of
    // equal neighbours (flat areas) from waiting on each other's increments.
    // Bins are computed 64 at a time (vectorised: max, min, add, convert), then counted.
    let mut part = [[0u32; 256]; 4];
    let mut bins = [0i32; 64];
    for chunk in g.px.chunks(64) {
        for (b, &v) in bins.iter_mut().zip(chunk) {
            // max first: it turns NaN into 0, as the f32-to-int cast did.
            let r = v.max(0.0).min(255.0) + 0.5;
            // SAFETY: f32::max/min return the non-NaN operand, so r is a number in
            // [0.5, 255.5], which i32 holds: the unchecked cast (one SIMD instruction
            // for four) truncates exactly as `as` would, without its NaN/range fix-ups.
            *b = unsafe { r.to_int_unchecked::<i32>() };
        }
        let bins = &bins[..chunk.len()];
        let quads = bins.chunks_exact(4);
        for &b in quads.remainder() {
            part[0][b as usize & 255] += 1;
        }
        for q in quads {
            for k in 0..4 {
                part[k][q[k] as usize & 255] += 1;
            }
        }
    }
    let mut hist = [0u32; 256];
    for (i, c) in hist.iter_mut().enumerate() {
        *c = part[0][i] + part[1][i] + part[2][i] + part[3][i];
    }
    let total = g.px.len().max(1) as f32;
    let entropy = hist.iter().filter(|&&c| c > 0).map(|&c| {
        let p = c as f32 / total;
        -p * p.log2()
    }).sum::<f32>();
    let (x0, y0, x1, y1) = content_frame(g);
    let border = 1.0 - ((x1 - x0) * (y1 - y0)) as f32 / (w * h).max(1) as f32;
    Signals { sharpness, entropy, border }
}

/// Decodes at the smallest scale that still gives [`SIDE`] pixels and measures.
pub fn measure(bytes: &[u8]) -> Result<Signals, DecodeError> {
    let (g, _, _, _) = decode_gray(bytes, SIDE)?;
    Ok(signals(&g))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_photos_dir as photos_dir;

    #[test]
    fn blur_lowers_sharpness_and_flat_has_no_entropy() {
        let sharp = Gray { w: 64, h: 64, px: (0..64 * 64).map(|i| if (i % 64 / 4 + i / 64 / 4) % 2 == 0 { 200.0 } else { 40.0 }).collect() };
        // 3×3 box blur of the same picture.
        let mut blurred = sharp.clone();
        for y in 1..63 {
            for x in 1..63 {
                let mut s = 0.0;
                for dy in 0..3 {
                    for dx in 0..3 {
                        s += sharp.px[(y + dy - 1) * 64 + x + dx - 1];
                    }
                }
                blurred.px[y * 64 + x] = s / 9.0;
            }
        }
        assert!(signals(&sharp).sharpness > 2.0 * signals(&blurred).sharpness);
        let flat = Gray { w: 32, h: 32, px: vec![128.0; 1024] };
        assert_eq!(signals(&flat).entropy, 0.0);
        assert!(signals(&sharp).entropy > 0.9);
    }

    /// Sharpness one row at a time and the histogram one pixel at a time, as they
    /// were before the faster loops: the signal values must not move.
    #[test]
    fn faster_signals_are_bit_identical() {
        let reference = |g: &Gray| -> (f32, f32) {
            let (w, h) = (g.w, g.h);
            let (mut s, mut s2) = (0f64, 0f64);
            for y in 1..h - 1 {
                let (mut rs, mut rs2) = (0f32, 0f32);
                for x in 1..w - 1 {
                    let p = |x: usize, y: usize| g.px[y * w + x];
                    let l = p(x - 1, y) + p(x + 1, y) + p(x, y - 1) + p(x, y + 1) - 4.0 * p(x, y);
                    rs += l;
                    rs2 += l * l;
                }
                s += rs as f64;
                s2 += rs2 as f64;
            }
            let n = ((w - 2) * (h - 2)) as f64;
            let sharp = (s2 / n - (s / n) * (s / n)).max(0.0) as f32;
            let mut hist = [0u32; 256];
            for &v in &g.px {
                hist[((v.max(0.0) + 0.5) as usize).min(255)] += 1;
            }
            let total = g.px.len() as f32;
            let ent = hist.iter().filter(|&&c| c > 0).map(|&c| -(c as f32 / total) * (c as f32 / total).log2()).sum::<f32>();
            (sharp, ent)
        };
        let dir = photos_dir();
        for name in ["astronaut.png", "camera.png", "coins.png", "rocket.jpg"] {
            let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e} (run `make data`)"));
            let (g, _, _, _) = decode_gray(&bytes, SIDE).unwrap();
            // Heights that leave 0-3 rows after the 4-row bands, and odd values.
            for cut in [0usize, 1, 2, 3] {
                let h = g.h - cut;
                let mut c = Gray { w: g.w, h, px: g.px[..g.w * h].to_vec() };
                let (s, r) = (signals(&c), reference(&c));
                assert_eq!((s.sharpness.to_bits(), s.entropy.to_bits()), (r.0.to_bits(), r.1.to_bits()), "{name} cut {cut}");
                // Out-of-range grey (never produced by the decoders) lands in the same bins.
                c.px[7] = f32::NAN;
                c.px[8] = 300.0;
                c.px[9] = -2.0;
                assert_eq!(signals(&c).entropy.to_bits(), reference(&c).1.to_bits(), "{name} cut {cut}, odd values");
            }
        }
    }

    fn png_of(img: &image::DynamicImage) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(vec![]);
        img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
        buf.into_inner()
    }

    /// `decode_gray_as` streams PNG rows (no full-size picture) and gives, bit for bit,
    /// the picture the image crate's decode, grey conversion and `shrink_u8` give, in
    /// both greys: dedup's signatures do not depend on the path.
    #[test]
    fn streamed_png_in_decode_gray_is_bit_identical() {
        use crate::{decode_gray_as, grey601, grey709, shrink_u8, JpegGrey};
        let dir = photos_dir();
        let mut cases = vec![];
        for name in ["astronaut.png", "camera.png", "logo.png", "coins.png"] {
            cases.push((name.to_string(), std::fs::read(dir.join(name)).unwrap()));
        }
        let img = image::open(dir.join("chelsea.png")).unwrap();
        cases.push(("rgba".into(), png_of(&image::DynamicImage::ImageRgba8(img.to_rgba8()))));
        cases.push(("luma_alpha".into(), png_of(&image::DynamicImage::ImageLumaA8(img.to_luma_alpha8()))));
        cases.push(("gray16".into(), png_of(&image::DynamicImage::ImageLuma16(img.to_luma16()))));
        for (name, bytes) in &cases {
            let img = image::load_from_memory(bytes).unwrap();
            let (w, h) = (img.width() as usize, img.height() as usize);
            for grey in [JpegGrey::Luma, JpegGrey::Rec709] {
                let raw: Vec<u8> = match (&img, grey) {
                    (image::DynamicImage::ImageLuma8(g), _) => g.as_raw().clone(),
                    (image::DynamicImage::ImageRgb8(c), JpegGrey::Luma) => grey601(c.as_raw(), 3),
                    (image::DynamicImage::ImageRgba8(c), JpegGrey::Luma) => grey601(c.as_raw(), 4),
                    (other, JpegGrey::Luma) => grey601(other.to_rgb8().as_raw(), 3),
                    (image::DynamicImage::ImageRgb8(c), JpegGrey::Rec709) => grey709(c.as_raw(), 3),
                    (image::DynamicImage::ImageRgba8(c), JpegGrey::Rec709) => grey709(c.as_raw(), 4),
                    (other, JpegGrey::Rec709) => other.to_luma8().into_raw(),
                };
                for side in [64, 192, 4096] {
                    let want = shrink_u8(&raw, w, h, side);
                    let (got, gw, gh, scale) = decode_gray_as(bytes, side, grey).unwrap();
                    assert_eq!((got.w, got.h, gw as usize, gh as usize, scale), (want.w, want.h, w, h, 1), "{name} {grey:?} at {side}");
                    assert!(got.px.iter().zip(&want.px).all(|(a, b)| a.to_bits() == b.to_bits()), "{name} {grey:?} at {side}");
                }
            }
        }
    }

    /// The streamed PNG path gives the picture (and so the signals) the general path
    /// gives, for every colour type the photos come in and the ones PNG adds.
    #[test]
    fn streamed_png_matches_the_full_decode() {
        let dir = photos_dir();
        let mut cases = vec![];
        for name in ["astronaut.png", "camera.png", "coins.png", "phantom.png", "logo.png"] {
            cases.push((name.to_string(), std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e} (run `make data`)"))));
        }
        let img = image::open(dir.join("chelsea.png")).unwrap();
        cases.push(("rgba".into(), png_of(&image::DynamicImage::ImageRgba8(img.to_rgba8()))));
        cases.push(("gray16".into(), png_of(&image::DynamicImage::ImageLuma16(img.to_luma16()))));
        cases.push(("luma_alpha".into(), png_of(&image::DynamicImage::ImageLumaA8(img.to_luma_alpha8()))));
        for (name, bytes) in &cases {
            for side in [64, 256, 4096] {
                let (a, w, h) = crate::decode_png_gray(bytes, side).expect("handled").unwrap();
                let (b, bw, bh, _) = decode_gray(bytes, side).unwrap();
                assert_eq!((a.w, a.h, w, h), (b.w, b.h, bw, bh), "{name} at {side}");
                let worst = a.px.iter().zip(&b.px).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(worst <= 1.0, "{name} at {side}: grey differs by up to {worst}");
                if side == SIDE {
                    let (sa, sb) = (signals(&a), signals(&b));
                    assert!((sa.sharpness - sb.sharpness).abs() <= 0.02 * sb.sharpness.max(1.0) && (sa.entropy - sb.entropy).abs() < 0.05 && (sa.border - sb.border).abs() < 0.02, "{name}: {sa:?} vs {sb:?}");
                }
            }
        }
        // JPEG straight to grey: the Y channel, i.e. the full RGB decode's BT.601 grey
        // (JPEG's own luma; the RGB paths use Rec. 709, up to 8 levels darker on
        // saturated red such as retina.jpg), box-shrunk alike.
        for name in ["rocket.jpg", "retina.jpg", "hubble_deep_field.jpg"] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let rgb = image::load_from_memory(&bytes).unwrap().to_rgb8();
            let y601: Vec<u8> = rgb.pixels().map(|p| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8).collect();
            for side in [64, 256] {
                let (a, w, h) = crate::decode_jpeg_gray_fast(&bytes, side, true).expect("a JPEG").unwrap();
                // From 2× the work size the 1/2-, 1/4- or 1/8-scale luma (Y, like the full
                // decode's); past 16× where it is not handled, the 1/8-scale path (Rec. 709).
                let long = rgb.width().max(rgb.height()) as usize;
                let dc = long >= 2 * side && crate::jpeg_dc::decode_luma_reduced(&bytes, 2).is_some();
                let b = if !dc && long > 16 * side { decode_gray(&bytes, side).unwrap().0 } else { crate::shrink_u8(&y601, rgb.width() as usize, rgb.height() as usize, side) };
                assert_eq!((a.w, a.h, w, h), (b.w, b.h, rgb.width(), rgb.height()), "{name} at {side}");
                let mean = a.px.iter().zip(&b.px).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.px.len() as f32;
                // The DC picture (rocket at 64 px: 80 px wide) is cut into cells of one and
                // two blocks, the full one into cells of 10 pixels: the same picture, sampled
                // less evenly (likewise the 1/4 picture of retina and the 1/2 picture of
                // rocket at 256 px: mean 1.5 levels, cells of 1.25 of its pixels).
                let tolerance = if dc { 3.0 } else { 1.5 };
                assert!(mean < tolerance, "{name} at {side}: grey differs by {mean} on average");
                if side == SIDE {
                    let (sa, sb) = (signals(&a), signals(&b));
                    assert!((sa.sharpness / sb.sharpness - 1.0).abs() < 0.15 && (sa.entropy - sb.entropy).abs() < 0.2 && (sa.border - sb.border).abs() < 0.03, "{name}: {sa:?} vs {sb:?}");
                }
            }
        }
        // Corrupt entropy-coded data: damaged when checked; unchecked, judged as the
        // full decoders judge it (they read through it).
        let mut bad = std::fs::read(dir.join("rocket.jpg")).unwrap();
        let mid = bad.len() / 2;
        bad[mid..mid + 256].iter_mut().for_each(|b| *b ^= 0x5A);
        assert!(matches!(crate::decode_jpeg_gray_fast(&bad, 256, true), Some(Err(crate::DecodeError::Damaged(_)))));
        let verdict = crate::decode_jpeg_gray_fast(&bad, 256, false).unwrap();
        assert_eq!(verdict.is_err(), decode_gray(&bad, 256).is_err(), "both paths judge a corrupt JPEG alike");
        // Cut short: an error, not a partial picture.
        let cut = &cases[0].1[..cases[0].1.len() / 2];
        assert!(crate::decode_png_gray(cut, 256).unwrap().is_err());
        assert!(crate::decode_png_gray(b"\xff\xd8\xff not a png", 256).is_none());
    }
}
