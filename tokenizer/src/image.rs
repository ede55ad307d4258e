//! Image preprocessing for image–text samples: decode (JPEG at the smallest DCT-domain
//! scale that keeps the shorter side at the training resolution), resize the shorter
//! side to the training resolution (bilinear/triangle filter), centre-crop to a square,
//! and cut into a grid of patches in [`PATCH_LAYOUT`].
//!
//! A sample stores either those raw patches (`image_encoding = "raw"`, 150 KB at
//! 224 px) or the square itself encoded as JPEG (`"jpeg"`, a tenth of that or less);
//! [`ImageConfig::patches_from_encoded`] turns the latter back into patches in the
//! trainer's reader threads.

use image::imageops;
use m6_imaging::exif;
use serde::{Deserialize, Serialize};

/// The byte layout of `sample.image_patches`.
pub const PATCH_LAYOUT: &str = "row-major grid of patches (patch index = row * grid + col), each patch row-major pixels, RGB interleaved, uint8; length = grid*grid*patch_size*patch_size*3";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot decode image: {0}")]
    Decode(#[from] image::ImageError),
    #[error("image is {width}x{height}; both sides must be at least 1 pixel")]
    Empty { width: u32, height: u32 },
    #[error("image_size {image_size} is not a positive multiple of patch_size {patch_size}")]
    BadGeometry { image_size: u32, patch_size: u32 },
    #[error("{0}")]
    Imaging(#[from] m6_imaging::DecodeError),
    #[error("encoded sample image is {width}x{height}, expected {want}x{want}")]
    EncodedSize { width: u32, height: u32, want: u32 },
    #[error("cannot encode sample image: {0}")]
    Encode(String),
}

/// How `sample.image_patches` holds the image (manifest property `image_encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageEncoding {
    /// uint8 patches in [`PATCH_LAYOUT`] (image_size² × 3 bytes).
    Raw,
    /// The resized, centre-cropped image_size × image_size square as a baseline JPEG
    /// (or the original bytes when they already are exactly such a JPEG).
    Jpeg,
}

/// An error for a JPEG cut off or damaged in its entropy-coded data, which decoders
/// would read through into a sample with garbage in it; `Ok` for anything else. It
/// reads the JPEG's 1/8-scale picture, a second pass beside the sample's decode
/// ([`m6_imaging::refuse_damaged_jpeg`]).
pub fn refuse_damaged(bytes: &[u8]) -> Result<(), ImageError> {
    Ok(m6_imaging::refuse_damaged_jpeg(bytes)?)
}

impl ImageEncoding {
    pub fn name(self) -> &'static str {
        match self {
            ImageEncoding::Raw => "raw",
            ImageEncoding::Jpeg => "jpeg",
        }
    }
}

/// Training resolution and patch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Side of the square the image is resized and cropped to, in pixels. Default 224.
    pub image_size: u32,
    /// Side of a square patch in pixels; must divide `image_size`. Default 16 (a 14×14 grid).
    pub patch_size: u32,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig { image_size: 224, patch_size: 16 }
    }
}

impl ImageConfig {
    pub fn check(&self) -> Result<(), ImageError> {
        if self.patch_size == 0 || self.image_size == 0 || self.image_size % self.patch_size != 0 {
            return Err(ImageError::BadGeometry { image_size: self.image_size, patch_size: self.patch_size });
        }
        Ok(())
    }

    /// Patches per side.
    pub fn grid(&self) -> u32 {
        self.image_size / self.patch_size.max(1)
    }

    pub fn patch_bytes(&self) -> usize {
        (self.patch_size * self.patch_size * 3) as usize
    }

    /// Bytes of one sample's patches.
    pub fn total_bytes(&self) -> usize {
        (self.image_size * self.image_size * 3) as usize
    }

    /// The resized size before the crop: shorter side = `image_size`, aspect kept
    /// (longer side rounded to nearest, never below `image_size`).
    pub fn resized_dims(&self, width: u32, height: u32) -> (u32, u32) {
        let s = self.image_size as u64;
        let (w, h) = (width as u64, height as u64);
        if w <= h {
            (s as u32, ((h * s + w / 2) / w).max(s) as u32)
        } else {
            (((w * s + h / 2) / h).max(s) as u32, s as u32)
        }
    }

    /// Decodes an encoded image (PNG, JPEG, GIF, WebP, BMP) and returns its patches, of
    /// the picture as it is shown (EXIF orientation applied).
    pub fn preprocess(&self, bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
        self.check()?;
        // Full decode: raw patches are the reference the encoded path is measured against.
        // The same picture as the encoded path's: cut-off JPEGs refused, transparency
        // shown on white.
        m6_imaging::refuse_truncated_jpeg(bytes)?;
        let img = m6_imaging::load(bytes)?;
        self.preprocess_rgb(&exif::orient_rgb(m6_imaging::rgb_on_white(img), exif::orientation(bytes)))
    }

    /// The training square of an encoded image: decoded at the smallest scale that keeps
    /// the shorter side at least `image_size` (JPEG: DCT-domain 1/2–1/8), turned as its
    /// EXIF orientation says (a phone photo's caption describes it upright, not as the
    /// sensor stored it), resized and centre-cropped. `check_damage`: as
    /// `m6_imaging::decode_rgb_min_short` takes it (a JPEG decoded from its reduced
    /// colour picture is checked by that read whatever it says).
    pub fn square(&self, bytes: &[u8], check_damage: bool) -> Result<image::RgbImage, ImageError> {
        self.check()?;
        let (img, _, _) = m6_imaging::decode_rgb_min_short(bytes, self.image_size, check_damage)?;
        self.square_rgb(&exif::orient_rgb(img, exif::orientation(bytes)))
    }

    /// The resized, centre-cropped square of a decoded image.
    pub fn square_rgb(&self, img: &image::RgbImage) -> Result<image::RgbImage, ImageError> {
        self.check()?;
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(ImageError::Empty { width: w, height: h });
        }
        let (nw, nh) = self.resized_dims(w, h);
        let left = (nw - self.image_size) / 2;
        let top = (nh - self.image_size) / 2;
        if (nw, nh) == (w, h) {
            return Ok(imageops::crop_imm(img, left, top, self.image_size, self.image_size).to_image());
        }
        Ok(self.resize_centre(img, nw, nh))
    }

    /// The `image_size` square that resizing `img` to `nw`×`nh` and cutting out the
    /// centre would give, computed without the `nw`×`nh` picture: only the square's
    /// source window is resampled (the same source positions and filter weights). The
    /// whole resized picture of a 1×60,000 strip (a 320-byte PNG) would be 224×13 M
    /// pixels: 9 GB and 40 s of one task, for one sample.
    fn resize_centre(&self, img: &image::RgbImage, nw: u32, nh: u32) -> image::RgbImage {
        let s = self.image_size;
        let (w, h) = img.dimensions();
        let (sx, sy) = (w as f64 / nw as f64, h as f64 / nh as f64);
        let (left, top) = ((nw - s) / 2, (nh - s) / 2);
        resize_rgb_window(img, (left as f64 * sx, top as f64 * sy, s as f64 * sx, s as f64 * sy), s, s)
    }

    /// What a sample stores for an encoded image under `encoding`: raw patches, or the
    /// training square as JPEG at `quality` (1–100). An input that already is a JPEG of
    /// exactly image_size × image_size is stored as it is (no second generation loss),
    /// unless its EXIF orientation turns it: the loader decodes samples as stored.
    /// `check_damage`: refuse a JPEG damaged in the data the sample is made from, which
    /// the decoders would read through into a sample with garbage in it. Each decode
    /// path makes the check at most once: the reduced colour picture's read is the
    /// check itself, every other path reads the JPEG at 1/8 scale first.
    pub fn encode_sample(&self, bytes: &[u8], encoding: ImageEncoding, quality: u8, check_damage: bool) -> Result<Vec<u8>, ImageError> {
        match encoding {
            ImageEncoding::Raw => {
                // The full decode reads through damage.
                if check_damage {
                    refuse_damaged(bytes)?;
                }
                self.preprocess(bytes)
            }
            ImageEncoding::Jpeg => {
                let s = self.image_size;
                if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
                    if let Ok(d) = image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg).into_dimensions() {
                        if d == (s, s) && exif::orientation(bytes) == exif::Orientation::NoTransforms && !m6_imaging::jpeg_truncated(bytes) && image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).is_ok() {
                            if check_damage {
                                refuse_damaged(bytes)?;
                            }
                            return Ok(bytes.to_vec());
                        }
                    }
                }
                let sq = self.square(bytes, check_damage)?;
                // jpeg-encoder (baseline, SIMD colour conversion and DCT where the CPU has
                // them): the image crate's encoder was half of tokenize's remaining CPU.
                // At quality 90 and above the chroma is not subsampled.
                let mut out = Vec::with_capacity(32 << 10);
                let side = u16::try_from(s).map_err(|_| ImageError::Encode(format!("image_size {s} is over 65535")))?;
                jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
                    .encode(sq.as_raw(), side, side, jpeg_encoder::ColorType::Rgb)
                    .map_err(|e| ImageError::Encode(e.to_string()))?;
                Ok(out)
            }
        }
    }

    /// Patches of a sample image stored with `ImageEncoding::Jpeg` (what the trainer's
    /// reader threads call).
    pub fn patches_from_encoded(&self, encoded: &[u8]) -> Result<Vec<u8>, ImageError> {
        self.check()?;
        let img = image::load_from_memory(encoded)?.to_rgb8();
        let (w, h) = img.dimensions();
        if (w, h) != (self.image_size, self.image_size) {
            return Err(ImageError::EncodedSize { width: w, height: h, want: self.image_size });
        }
        Ok(self.patchify(&img, 0, 0))
    }

    /// Patches of an already decoded RGB image.
    pub fn preprocess_rgb(&self, img: &image::RgbImage) -> Result<Vec<u8>, ImageError> {
        self.check()?;
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(ImageError::Empty { width: w, height: h });
        }
        let (nw, nh) = self.resized_dims(w, h);
        if (nw, nh) == (w, h) {
            return Ok(self.patchify(img, (nw - self.image_size) / 2, (nh - self.image_size) / 2));
        }
        // Only the centre square is resampled (see `resize_centre`).
        Ok(self.patchify(&self.resize_centre(img, nw, nh), 0, 0))
    }

    fn patchify(&self, img: &image::RgbImage, left: u32, top: u32) -> Vec<u8> {
        let p = self.patch_size as usize;
        let g = self.grid() as usize;
        let stride = img.width() as usize * 3;
        let raw = img.as_raw();
        let mut out = Vec::with_capacity(self.total_bytes());
        for gy in 0..g {
            for gx in 0..g {
                for y in 0..p {
                    let row = top as usize + gy * p + y;
                    let start = row * stride + (left as usize + gx * p) * 3;
                    out.extend_from_slice(&raw[start..start + p * 3]);
                }
            }
        }
        out
    }
}

/// Resizes 8-bit RGB with a triangle (bilinear, antialiased when shrinking) filter:
/// the filter the image crate's `resize(.., Triangle)` applies, computed by
/// fast_image_resize's integer SIMD convolution. The image crate's float resampler with
/// a libm round per sample was half of tokenize's CPU on M6-sized JPEGs.
pub fn resize_rgb(img: &image::RgbImage, nw: u32, nh: u32) -> image::RgbImage {
    let (w, h) = img.dimensions();
    resize_rgb_window(img, (0.0, 0.0, w as f64, h as f64), nw, nh)
}

/// [`resize_rgb`] of the source window (left, top, width, height; fractional, in
/// source pixels) onto `nw`×`nh`: each output pixel's source centre is the window's
/// left + (x + 0.5) × width / nw, the position a resize of the whole picture at that
/// scale gives it, and the filter still reads source pixels outside the window.
pub fn resize_rgb_window(img: &image::RgbImage, window: (f64, f64, f64, f64), nw: u32, nh: u32) -> image::RgbImage {
    use fast_image_resize::{images::Image, images::ImageRef, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let (w, h) = img.dimensions();
    let src = ImageRef::new(w, h, img.as_raw(), PixelType::U8x3).expect("an RgbImage holds w*h*3 bytes");
    let mut dst = Image::new(nw, nh, PixelType::U8x3);
    // A window computed as left + width = the picture's side can land an ulp past it,
    // which the resizer refuses.
    let (l, t, cw, ch) = window;
    let (cw, ch) = (cw.min(w as f64 - l), ch.min(h as f64 - t));
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(l, t, cw, ch))
        .expect("same pixel type on both sides, non-empty sizes");
    image::RgbImage::from_raw(nw, nh, dst.into_vec()).expect("nw*nh*3 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_and_geometry() {
        let c = ImageConfig::default();
        assert_eq!(c.resized_dims(512, 512), (224, 224));
        assert_eq!(c.resized_dims(400, 300), (299, 224));
        assert_eq!(c.resized_dims(300, 1000), (224, 747));
        assert_eq!(c.grid(), 14);
        assert!(ImageConfig { image_size: 224, patch_size: 15 }.check().is_err());
        assert!(c.preprocess(b"not an image").is_err());
    }

    fn photo(name: &str) -> image::RgbImage {
        let dir = std::env::var_os("M6_DATA_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"));
        let path = dir.join("photos").join(name);
        image::open(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make data`)", path.display())).to_rgb8()
    }

    fn jpeg(img: &image::RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 92).encode(img.as_raw(), img.width() as u16, img.height() as u16, jpeg_encoder::ColorType::Rgb).unwrap();
        out
    }

    fn mean_abs(a: &[u8], b: &[u8]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>() / a.len() as f64
    }

    /// A JPEG whose shorter side is at least 2× the sample's is sampled from its 1/8, 1/4
    /// or 1/2 colour picture (`m6_imaging::jpeg_dc::decode_rgb_reduced`: block, quadrant
    /// or 2×2 cell means; of a progressive file at 1/8, the DC scans alone): the square is a full
    /// decode's to within a few levels, and damage in the data it is made of is refused
    /// by the decode itself, whatever `check_damage` says, and not read a second time.
    /// Before, jpeg-decoder made these squares and read through the damage.
    #[test]
    fn large_jpegs_are_sampled_from_their_reduced_colour_picture() {
        let mut factors = std::collections::BTreeSet::new();
        // jpeg-encoder subsamples chroma (4:2:0) below quality 90.
        let encode_q = |img: &image::RgbImage, progressive: bool, quality: u8| {
            let mut file = Vec::new();
            let mut e = jpeg_encoder::Encoder::new(&mut file, quality);
            e.set_progressive(progressive);
            e.encode(img.as_raw(), img.width() as u16, img.height() as u16, jpeg_encoder::ColorType::Rgb).unwrap();
            file
        };
        let encode = |img: &image::RgbImage, progressive: bool| encode_q(img, progressive, 92);
        for size in [32, 64, 128] {
            let cfg = ImageConfig { image_size: size, patch_size: 16 };
            for name in ["astronaut.png", "coffee.png", "chelsea.png"] {
                let img = photo(name);
                for (progressive, quality) in [(false, 92), (true, 92), (false, 80), (true, 80)] {
                    let file = encode_q(&img, progressive, quality);
                    factors.insert(m6_imaging::jpeg_dc_sample(&file, size).unwrap_or_else(|| panic!("{name} at {size}")));
                    let got = cfg.square(&file, true).unwrap();
                    let want = cfg.square_rgb(&image::load_from_memory(&file).unwrap().to_rgb8()).unwrap();
                    let d = mean_abs(got.as_raw(), want.as_raw());
                    // Measured 0.6-3.3 levels at quality 92 (4:4:4), 1.0-4.4 at 80
                    // (4:2:0); chelsea at 32 px 5.0-5.1: its 1/8 picture is 38 px high,
                    // and block means smooth its fur more than a resize from 300 px does
                    // (jpeg-decoder's 1/8 decode is block means too).
                    assert!(d < 6.0, "{name} at {size} px, progressive {progressive}, quality {quality}: {d} levels from the full decode's square");
                }
            }
        }
        assert_eq!(factors.into_iter().collect::<Vec<_>>(), [2, 4, 8]);
        let cfg = ImageConfig { image_size: 32, patch_size: 16 };
        let whole = jpeg(&photo("astronaut.png"));
        let sos = whole.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
        let mut damaged = whole.clone();
        let at = sos + (whole.len() - sos) / 2;
        damaged.drain(at..at + 100);
        assert!(m6_imaging::jpeg_dc::damage(&damaged).is_some());
        let err = cfg.square(&damaged, true).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        for check in [true, false] {
            let err = cfg.encode_sample(&damaged, ImageEncoding::Jpeg, 90, check).unwrap_err().to_string();
            assert!(err.contains("damaged"), "check_damage {check}: {err}");
        }
        // Raw patches come from a full decode, which reads through damage: refused only
        // when the check is asked for.
        assert!(cfg.encode_sample(&damaged, ImageEncoding::Raw, 90, true).unwrap_err().to_string().contains("damaged"));
        assert!(cfg.encode_sample(&damaged, ImageEncoding::Raw, 90, false).is_ok());
        // At 1/2 too (astronaut is 512 px, read at 1/2 for 224 px): the read is the check.
        let at_224 = ImageConfig { image_size: 224, patch_size: 16 };
        assert_eq!(m6_imaging::jpeg_dc_sample(&damaged, 224), Some(2));
        for check in [true, false] {
            assert!(at_224.encode_sample(&damaged, ImageEncoding::Jpeg, 90, check).unwrap_err().to_string().contains("damaged"), "check_damage {check}");
        }
        // Below 2× the sample (320 px) jpeg-decoder makes the square and reads through:
        // the 1/8 check is made first, when asked.
        let at_320 = ImageConfig { image_size: 320, patch_size: 16 };
        assert_eq!(m6_imaging::jpeg_dc_sample(&damaged, 320), None);
        assert!(at_320.encode_sample(&damaged, ImageEncoding::Jpeg, 90, true).unwrap_err().to_string().contains("damaged"));
        assert!(at_320.encode_sample(&damaged, ImageEncoding::Jpeg, 90, false).is_ok());
        // A progressive file damaged in its AC data: the 1/4 picture reads it and is
        // refused; the 1/8 picture is made from the DC scans alone, which are whole.
        let prog = encode(&photo("chelsea.png"), true);
        let last = prog.windows(2).rposition(|m| m == [0xFF, 0xDA]).unwrap();
        let mut hurt = prog.clone();
        let at = last + (prog.len() - last) / 2;
        hurt.drain(at..at + 100);
        assert!(matches!(m6_imaging::jpeg_dc::decode_rgb_reduced(&hurt, 4), Err(m6_imaging::jpeg_dc::Unread::Damaged(_))));
        assert!(m6_imaging::jpeg_dc::decode_rgb_reduced(&hurt, 8).is_ok());
        let at_64 = ImageConfig { image_size: 64, patch_size: 16 };
        assert_eq!(m6_imaging::jpeg_dc_sample(&hurt, 64), Some(4));
        assert!(at_64.square(&hurt, true).unwrap_err().to_string().contains("damaged"));
    }

    /// A phone photo stores the sensor's pixels and says in EXIF how to turn them: the
    /// sample (raw patches, the encoded square, and the stored-as-is shortcut) is of the
    /// photo as shown, the same as from an upright copy of it.
    #[test]
    fn samples_of_exif_turned_photos_are_upright() {
        let cfg = ImageConfig { image_size: 96, patch_size: 16 };
        let upright = photo("chelsea.png");
        let want = cfg.preprocess(&jpeg(&upright)).unwrap();
        let want_sq = cfg.square(&jpeg(&upright), true).unwrap();
        let stored = image::DynamicImage::ImageRgb8(upright.clone());
        // EXIF value: the stored pixels that value turns back to the upright photo.
        for (v, pixels) in [(3u16, stored.rotate180()), (6, stored.rotate270()), (8, stored.rotate90()), (2, stored.fliph())] {
            let file = exif::with_jpeg_orientation(&jpeg(&pixels.to_rgb8()), v, v % 2 == 0);
            let got = cfg.preprocess(&file).unwrap();
            let d = mean_abs(&got, &want);
            assert!(d < 4.0, "orientation {v}: raw patches differ from the upright photo's by {d}");
            let sq = cfg.square(&file, true).unwrap();
            let d = mean_abs(sq.as_raw(), want_sq.as_raw());
            assert!(d < 4.0, "orientation {v}: the encoded path's square differs by {d}");
            // Without the turn the sample would be far off: the check can fail.
            let unturned = cfg.preprocess_rgb(&image::load_from_memory(&file).unwrap().to_rgb8()).unwrap();
            assert!(mean_abs(&unturned, &want) > 15.0, "orientation {v}");
        }
        // A JPEG already at the training size is stored as it is, unless EXIF turns it.
        let sq = jpeg(&want_sq);
        assert_eq!(cfg.encode_sample(&sq, ImageEncoding::Jpeg, 90, true).unwrap(), sq);
        let turned = exif::with_jpeg_orientation(&jpeg(&image::DynamicImage::ImageRgb8(want_sq.clone()).rotate90().to_rgb8()), 8, false);
        let stored = cfg.encode_sample(&turned, ImageEncoding::Jpeg, 90, true).unwrap();
        assert_ne!(stored, turned);
        let back = cfg.patches_from_encoded(&stored).unwrap();
        let d = mean_abs(&back, &cfg.preprocess_rgb(&want_sq).unwrap());
        assert!(d < 4.0, "the re-encoded square differs by {d}");
    }

    /// Layout check against a straightforward per-pixel computation on a real photo
    /// whose shorter side already is the training size (so no resampling is involved).
    #[test]
    fn patch_layout_of_a_real_photo() {
        let dir = std::env::var_os("M6_DATA_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"));
        let path = dir.join("photos/chelsea.png");
        let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make data`)", path.display())).to_rgb8();
        let (w, h) = img.dimensions();
        let side = w.min(h) / 10 * 10;
        let cfg = ImageConfig { image_size: side, patch_size: side / 10 };
        // Crop to exactly `side` on the short edge is only resize-free when it equals it.
        let img = imageops::crop_imm(&img, 0, 0, if w < h { side } else { w }, if w < h { h } else { side }).to_image();
        let patches = cfg.preprocess_rgb(&img).unwrap();
        let (iw, ih) = img.dimensions();
        let (left, top) = ((iw - side) / 2, (ih - side) / 2);
        let p = cfg.patch_size;
        assert_eq!(patches.len(), cfg.total_bytes());
        for (i, chunk) in patches.chunks(3).enumerate() {
            let i = i as u32;
            let patch = i / (p * p);
            let within = i % (p * p);
            let (gy, gx) = (patch / cfg.grid(), patch % cfg.grid());
            let (y, x) = (within / p, within % p);
            let px = img.get_pixel(left + gx * p + x, top + gy * p + y);
            assert_eq!(chunk, &px.0, "pixel {i}");
        }
    }
}
