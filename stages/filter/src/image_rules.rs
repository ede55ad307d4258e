//! Image rules: format allow-list, a decompression-bomb guard that reads only the
//! header, truncation and decode failures, pixel count (M6: at least 5000), side and
//! aspect limits, animation, near-blank / single-colour images, and quality signals
//! (sharpness, entropy, flat-border share).
//!
//! Each image is decoded once, at the smallest scale its rules need: the size, format
//! and aspect rules read only the header; the pixel rules decode JPEG at 1/8–1/2 scale
//! in the DCT domain, other formats in full.
//!
//! `image.damaged` drops a JPEG whose entropy-coded data is damaged (bytes overwritten,
//! lost or inserted in transfer or on disk). Every decoder here, like libjpeg, reads
//! through such damage and fills the rest of the picture with what the desynchronised
//! codes say, so `image.decode` never fires on it; the check is `m6_imaging::jpeg_dc`'s
//! read of the file (see its module note for what it finds and what it cannot), which is
//! the decode: at full size below 2× the work size, then at 1/2, 1/4 or 1/8. Below 2×
//! it costs about what zune-jpeg's decode, used when the rule is off, costs.


use image::ImageFormat;
use serde::{Deserialize, Serialize};

use crate::Drop;

pub mod rule {
    pub const FORMAT: &str = "image.format";
    pub const BOMB: &str = "image.bomb";
    pub const TRUNCATED: &str = "image.truncated";
    pub const DECODE: &str = "image.decode";
    pub const MIN_PIXELS: &str = "image.min_pixels";
    pub const MIN_SIDE: &str = "image.min_side";
    pub const MAX_SIDE: &str = "image.max_side";
    pub const ASPECT: &str = "image.aspect";
    pub const ANIMATED: &str = "image.animated";
    pub const DAMAGED: &str = "image.damaged";
    pub const BLANK: &str = "image.blank";
    pub const SHARPNESS: &str = "image.sharpness";
    pub const ENTROPY: &str = "image.entropy";
    pub const BORDER: &str = "image.border";
    pub const ALL: &[&str] = &[FORMAT, BOMB, TRUNCATED, DECODE, DAMAGED, MIN_PIXELS, MIN_SIDE, MAX_SIDE, ASPECT, ANIMATED, BLANK, SHARPNESS, ENTROPY, BORDER];
}

/// `[filter.image]`: rules for images and for the image of each pair.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// `image.format`: formats kept, by content (not by file name): png, jpeg, gif,
    /// webp, bmp. Default all five.
    pub formats: Vec<String>,
    /// `image.bomb`: images whose header declares more pixels than this are refused
    /// before any pixel is decoded. Default 50_000_000.
    pub max_pixels: u64,
    /// `image.min_pixels`: drop images with fewer pixels (M6's rule). Default 5000.
    pub min_pixels: u64,
    /// `image.min_side`: drop images narrower or shorter than this. Default 10.
    pub min_side: u32,
    /// `image.max_side`: drop images wider or taller than this. Default 16384.
    pub max_side: u32,
    /// `image.aspect`: drop images whose long side is more than this many times the
    /// short side. Default 5.0.
    pub max_aspect: f64,
    /// `image.blank`: drop images whose luma standard deviation (0–255, measured on a
    /// 64×64 thumbnail) is below this: blank or single-colour images. Default 2.0.
    pub min_luma_std: f64,
    /// `image.sharpness`: drop images whose variance of the Laplacian (grey levels²,
    /// measured with the longer side at 256 px) is below this: blurred or upscaled.
    /// Default 0 (off); about 20 drops visibly blurred photos.
    pub min_sharpness: f64,
    /// `image.entropy`: drop images whose grey-histogram entropy (bits, 0–8) is below
    /// this: posterised, mostly flat pictures. Default 0 (off).
    pub min_entropy: f64,
    /// `image.border`: drop images whose flat border (letterbox bars, padding) covers
    /// more than this share of the area. Default 1.0 (off); 0.5 drops mostly-padding images.
    pub max_border: f64,
    /// Measure the quality signals of every kept image and write them to the
    /// `sharpness`, `entropy` and `border` columns (the decode is then at 256 px instead
    /// of 64 px; PNG and other lossless formats decode in full either way). Default true.
    pub signals: bool,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            formats: ["png", "jpeg", "gif", "webp", "bmp"].map(String::from).to_vec(),
            max_pixels: m6_imaging::DEFAULT_MAX_PIXELS,
            min_pixels: 5000,
            min_side: 10,
            max_side: 16384,
            max_aspect: 5.0,
            min_luma_std: 2.0,
            min_sharpness: 0.0,
            min_entropy: 0.0,
            max_border: 1.0,
            signals: true,
        }
    }
}

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Gif => "gif",
        ImageFormat::WebP => "webp",
        ImageFormat::Bmp => "bmp",
        _ => "other",
    }
}

const KNOWN_FORMATS: &[&str] = &["png", "jpeg", "gif", "webp", "bmp"];

impl ImageConfig {
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        for f in &self.formats {
            if !KNOWN_FORMATS.contains(&f.as_str()) {
                return Err(format!("{prefix}.formats has unknown format `{f}` (expected some of: {})", KNOWN_FORMATS.join(", ")));
            }
        }
        if self.max_pixels == 0 {
            return Err(format!("{prefix}.max_pixels must be positive"));
        }
        if self.min_pixels > self.max_pixels {
            return Err(format!("{prefix}.min_pixels = {} is above {prefix}.max_pixels = {}", self.min_pixels, self.max_pixels));
        }
        if self.max_side < self.min_side {
            return Err(format!("{prefix}.max_side = {} is below {prefix}.min_side = {}", self.max_side, self.min_side));
        }
        if !(self.max_aspect >= 1.0) {
            return Err(format!("{prefix}.max_aspect = {}: must be at least 1", self.max_aspect));
        }
        if !(0.0..=128.0).contains(&self.min_luma_std) {
            return Err(format!("{prefix}.min_luma_std = {}: must be between 0 and 128", self.min_luma_std));
        }
        if !(self.min_sharpness >= 0.0) {
            return Err(format!("{prefix}.min_sharpness = {}: must be at least 0", self.min_sharpness));
        }
        if !(0.0..=8.0).contains(&self.min_entropy) {
            return Err(format!("{prefix}.min_entropy = {}: must be between 0 and 8 (bits)", self.min_entropy));
        }
        if !(0.0..=1.0).contains(&self.max_border) {
            return Err(format!("{prefix}.max_border = {}: must be between 0 and 1", self.max_border));
        }
        Ok(())
    }
}

/// Compiled image rules.
pub struct ImageRules {
    pub cfg: ImageConfig,
    disabled: std::collections::HashSet<&'static str>,
}

/// What a kept image turned out to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    /// Quality signals, when a quality rule needed them.
    pub signals: Option<m6_imaging::quality::Signals>,
}

fn drop(rule: &'static str, value: f64, threshold: f64) -> Drop {
    Drop { rule, value, threshold, detail: None }
}

impl ImageRules {
    pub fn new(cfg: ImageConfig, disabled: std::collections::HashSet<&'static str>, prefix: &str) -> Result<Self, String> {
        cfg.validate(prefix)?;
        Ok(ImageRules { cfg, disabled })
    }

    fn on(&self, r: &str) -> bool {
        !self.disabled.contains(r)
    }

    fn quality_rules_on(&self) -> bool {
        let c = &self.cfg;
        (self.on(rule::SHARPNESS) && c.min_sharpness > 0.0) || (self.on(rule::ENTROPY) && c.min_entropy > 0.0) || (self.on(rule::BORDER) && c.max_border < 1.0)
    }

    /// The first rule the encoded image fails, or its size.
    pub fn check(&self, bytes: &[u8]) -> Result<ImageInfo, Drop> {
        let c = &self.cfg;
        // Header only: nothing is allocated for pixels until the size is known to be sane.
        let header = m6_imaging::probe(bytes).map_err(|e| Drop { rule: rule::DECODE, value: bytes.len() as f64, threshold: 0.0, detail: Some(e.to_string()) })?;
        let (fmt, w, h) = (header.format, header.width, header.height);
        let name = format_name(fmt);
        if self.on(rule::FORMAT) && !c.formats.iter().any(|f| f == name) {
            return Err(Drop { rule: rule::FORMAT, value: 0.0, threshold: 0.0, detail: Some(format!("format {fmt:?} not allowed")) });
        }
        let pixels = w as u64 * h as u64;
        if pixels > c.max_pixels {
            // Always on: decoding would allocate the declared size.
            return Err(drop(rule::BOMB, pixels as f64, c.max_pixels as f64));
        }
        if self.on(rule::MIN_PIXELS) && pixels < c.min_pixels {
            return Err(drop(rule::MIN_PIXELS, pixels as f64, c.min_pixels as f64));
        }
        if self.on(rule::MIN_SIDE) && w.min(h) < c.min_side {
            return Err(drop(rule::MIN_SIDE, w.min(h) as f64, c.min_side as f64));
        }
        if self.on(rule::MAX_SIDE) && w.max(h) > c.max_side {
            return Err(drop(rule::MAX_SIDE, w.max(h) as f64, c.max_side as f64));
        }
        let aspect = w.max(h) as f64 / w.min(h).max(1) as f64;
        if self.on(rule::ASPECT) && aspect > c.max_aspect {
            return Err(drop(rule::ASPECT, aspect, c.max_aspect));
        }
        if self.on(rule::TRUNCATED) {
            if let Some(missing) = m6_imaging::truncated(fmt, bytes) {
                return Err(Drop { rule: rule::TRUNCATED, value: bytes.len() as f64, threshold: 0.0, detail: Some(missing.into()) });
            }
        }
        if self.on(rule::ANIMATED) {
            // The recorded value is 2 for "at least two frames".
            if m6_imaging::animated(fmt, bytes) {
                return Err(drop(rule::ANIMATED, 2.0, 1.0));
            }
        }
        // One decode at the scale the pixel rules need: 64 px for the blank rule, 256 px
        // when a quality rule is on or the signals are recorded (they are defined at that size).
        let quality = self.quality_rules_on() || c.signals;
        let side = if quality { m6_imaging::quality::SIDE } else { 64 };
        // PNG rows stream straight into the work picture (no full-size RGB copy); JPEG
        // decodes straight to grey, at 1/8 scale when that still gives `side`.
        let decoded = match m6_imaging::decode_png_gray(bytes, side).or_else(|| m6_imaging::decode_jpeg_gray_fast(bytes, side, self.on(rule::DAMAGED))) {
            Some(r) => r.map(|(g, _, _)| g),
            None => m6_imaging::decode_gray(bytes, side).map(|(g, _, _, _)| g),
        };
        let g = match decoded {
            Ok(g) => g,
            Err(e) => {
                let rule = if matches!(e, m6_imaging::DecodeError::Damaged(_)) { rule::DAMAGED } else { rule::DECODE };
                return Err(Drop { rule, value: bytes.len() as f64, threshold: 0.0, detail: Some(e.to_string()) });
            }
        };
        if self.on(rule::BLANK) {
            let std = luma_std(&m6_imaging::shrink(&g, 64));
            if std < c.min_luma_std {
                return Err(drop(rule::BLANK, std, c.min_luma_std));
            }
        }
        let mut signals = None;
        if quality {
            let s = m6_imaging::quality::signals(&g);
            if self.on(rule::SHARPNESS) && (s.sharpness as f64) < c.min_sharpness {
                return Err(drop(rule::SHARPNESS, s.sharpness as f64, c.min_sharpness));
            }
            if self.on(rule::ENTROPY) && (s.entropy as f64) < c.min_entropy {
                return Err(drop(rule::ENTROPY, s.entropy as f64, c.min_entropy));
            }
            if self.on(rule::BORDER) && (s.border as f64) > c.max_border {
                return Err(drop(rule::BORDER, s.border as f64, c.max_border));
            }
            signals = Some(s);
        }
        Ok(ImageInfo { width: w, height: h, signals })
    }
}

fn luma_std(g: &m6_imaging::Gray) -> f64 {
    let n = g.px.len().max(1) as f64;
    let mean = g.px.iter().map(|&v| v as f64).sum::<f64>() / n;
    (g.px.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn photo(name: &str) -> image::DynamicImage {
        let dir = std::env::var_os("M6_DATA_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"));
        let p = dir.join("photos").join(name);
        image::open(&p).unwrap_or_else(|e| panic!("{}: {e} (run `make data`)", p.display()))
    }

    fn jpeg(img: &image::DynamicImage, q: u8) -> Vec<u8> {
        let mut buf = Cursor::new(vec![]);
        img.to_rgb8().write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, q)).unwrap();
        buf.into_inner()
    }

    fn rules(cfg: ImageConfig) -> ImageRules {
        ImageRules::new(cfg, Default::default(), "filter.image").unwrap()
    }

    #[test]
    fn real_jpegs_pass_and_header_rules_need_no_decode() {
        let r = rules(ImageConfig::default());
        let big = photo("astronaut.png").resize(2048, 2048, image::imageops::FilterType::Triangle);
        let bytes = jpeg(&big, 90);
        assert_eq!(r.check(&bytes).map(|i| (i.width, i.height)), Ok((2048, 2048)));
        // Cut in transfer: no end-of-image marker.
        let mid = bytes.len() / 2;
        assert_eq!(r.check(&bytes[..mid]).unwrap_err().rule, rule::TRUNCATED);
        // The M6 pixel rule and the bomb guard read only the header.
        let tiny = jpeg(&photo("coffee.png").resize(60, 60, image::imageops::FilterType::Triangle), 90);
        assert_eq!(r.check(&tiny).unwrap_err().rule, rule::MIN_PIXELS);
        let strict = rules(ImageConfig { max_pixels: 1_000_000, min_pixels: 10, ..Default::default() });
        assert_eq!(strict.check(&bytes).unwrap_err().rule, rule::BOMB);
    }

    /// A phone's motion photo is a complete JPEG followed by an MP4: kept, where a
    /// search of the last 4 KB for the end marker dropped it as truncated. A cut file
    /// is still dropped even when an EXIF thumbnail (with its own end marker) sits in
    /// its first segments.
    #[test]
    fn motion_photos_are_not_truncated_and_cut_files_are() {
        let r = rules(ImageConfig::default());
        let full = jpeg(&photo("chelsea.png"), 90);
        let mut motion = full.clone();
        motion.extend_from_slice(b"\0\0\0\x18ftypmp42");
        motion.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        assert_eq!(r.check(&motion).map(|i| (i.width, i.height)), Ok((451, 300)));
        let thumb = jpeg(&photo("chelsea.png").thumbnail(64, 64), 80);
        let mut seg = b"Exif\0\0II*\0\x08\0\0\0\0\0\0\0\0\0".to_vec();
        seg.extend_from_slice(&thumb);
        let with_thumb = m6_imaging::exif::with_app1(&full, &seg);
        assert!(r.check(&with_thumb).is_ok());
        for cut in [with_thumb.len() / 3, with_thumb.len() - 2] {
            assert_eq!(r.check(&with_thumb[..cut]).unwrap_err().rule, rule::TRUNCATED, "cut at {cut}");
        }
    }

    #[test]
    fn quality_signal_rules() {
        let img = photo("chelsea.png");
        let sharp = jpeg(&img, 92);
        let blurred = jpeg(&img.blur(4.0), 92);
        let cfg = ImageConfig { min_sharpness: 20.0, ..Default::default() };
        let r = rules(cfg.clone());
        let s = r.check(&sharp).unwrap().signals.unwrap();
        assert!(s.sharpness > 20.0 && s.entropy > 5.0 && s.border < 0.05, "{s:?}");
        assert_eq!(r.check(&blurred).unwrap_err().rule, rule::SHARPNESS);
        // A picture that is two thirds padding.
        let (w, h) = (img.width(), img.height());
        let mut padded = image::RgbImage::from_pixel(w * 3, h, image::Rgb([0, 0, 0]));
        image::imageops::overlay(&mut padded, &img.to_rgb8(), w as i64, 0);
        let padded = jpeg(&image::DynamicImage::ImageRgb8(padded), 92);
        let r = rules(ImageConfig { max_border: 0.5, max_aspect: 5.0, ..Default::default() });
        let d = r.check(&padded).unwrap_err();
        assert_eq!(d.rule, rule::BORDER);
        assert!(d.value > 0.6, "{d:?}");
        // Off by default: the same image passes the default rules.
        assert!(rules(ImageConfig::default()).check(&padded).is_ok());
    }
}
