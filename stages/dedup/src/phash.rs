//! Perceptual hashing of images: pHash (the 8×8 lowest frequencies of the DCT of a
//! 32×32 grayscale thumbnail, thresholded at their median → 64 bits), which survives
//! resizing, recompression, small crops and watermarks; plus exact image keys.

use std::sync::OnceLock;

use image::imageops::FilterType;
use image::DynamicImage;

const N: usize = 32;
const K: usize = 8;

/// cos(pi*(2n+1)k / 2N) for k < 8, n < 32: the only DCT-II rows pHash needs.
fn cos_table() -> &'static [[f32; N]; K] {
    static T: OnceLock<[[f32; N]; K]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [[0f32; N]; K];
        for (k, row) in t.iter_mut().enumerate() {
            for (n, v) in row.iter_mut().enumerate() {
                *v = (std::f64::consts::PI * (2 * n + 1) as f64 * k as f64 / (2 * N) as f64).cos() as f32;
            }
        }
        t
    })
}

/// The 64-bit pHash of a decoded image.
pub fn phash(img: &DynamicImage) -> u64 {
    // Shrinking a big photo straight to 32×32 with a triangle filter averages every
    // source pixel; a cheap pre-shrink keeps that cost independent of megapixels.
    let img = if img.width() > 512 || img.height() > 512 { img.thumbnail(256, 256) } else { img.clone() };
    let gray = img.to_luma8();
    let small = image::imageops::resize(&gray, N as u32, N as u32, FilterType::Triangle);
    let px: Vec<f32> = small.as_raw().iter().map(|&v| v as f32).collect();
    phash32(&px)
}

/// pHash of a 32×32 grey block (row-major): the 8×8 lowest DCT-II frequencies
/// thresholded at their median. Shared by [`phash`] and the window hashes of
/// [`crate::image_hash`].
pub fn phash32(px: &[f32]) -> u64 {
    debug_assert_eq!(px.len(), N * N);
    let cos = cos_table();
    // Separable DCT-II: rows first (32 rows × 8 frequencies), then columns.
    let mut rows = [[0f32; K]; N];
    for y in 0..N {
        let line = &px[y * N..(y + 1) * N];
        for k in 0..K {
            rows[y][k] = line.iter().zip(cos[k].iter()).map(|(a, b)| a * b).sum();
        }
    }
    let mut coef = [0f32; K * K];
    for ky in 0..K {
        for kx in 0..K {
            let mut s = 0f32;
            for y in 0..N {
                s += rows[y][kx] * cos[ky][y];
            }
            coef[ky * K + kx] = s;
        }
    }
    let mut sorted = coef;
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = (sorted[31] + sorted[32]) / 2.0;
    let mut h = 0u64;
    for (i, &c) in coef.iter().enumerate() {
        if c > median {
            h |= 1 << (63 - i);
        }
    }
    h
}

/// Hash of decoded pixels (size and RGBA), so a lossless re-encoding is an exact duplicate.
pub fn pixel_key(img: &DynamicImage) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&img.width().to_le_bytes());
    h.update(&img.height().to_le_bytes());
    h.update(img.to_rgba8().as_raw());
    *h.finalize().as_bytes()
}

#[inline]
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb};

    fn pattern(w: u32, h: u32, phase: f32) -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
            let fx = x as f32 / w as f32;
            let fy = y as f32 / h as f32;
            let v = ((fx * 9.0 + phase).sin() * (fy * 5.0).cos() * 120.0 + 128.0) as u8;
            Rgb([v, v / 2, 255 - v])
        }))
    }

    #[test]
    fn resize_keeps_hash_close_and_other_images_far() {
        let a = pattern(400, 300, 0.0);
        let b = a.resize_exact(173, 130, FilterType::Lanczos3);
        let c = pattern(400, 300, 2.5);
        assert!(hamming(phash(&a), phash(&b)) <= 4);
        assert!(hamming(phash(&a), phash(&c)) > 12);
    }
}
