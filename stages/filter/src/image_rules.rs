//! Image rules: format allow-list, a decompression-bomb guard that reads only the
//! header, truncation and decode failures, pixel count (M6: at least 5000), side and
//! aspect limits, animation, and near-blank / single-colour images.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
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
    pub const BLANK: &str = "image.blank";
    pub const ALL: &[&str] = &[FORMAT, BOMB, TRUNCATED, DECODE, MIN_PIXELS, MIN_SIDE, MAX_SIDE, ASPECT, ANIMATED, BLANK];
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
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            formats: ["png", "jpeg", "gif", "webp", "bmp"].map(String::from).to_vec(),
            max_pixels: 50_000_000,
            min_pixels: 5000,
            min_side: 10,
            max_side: 16384,
            max_aspect: 5.0,
            min_luma_std: 2.0,
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

    /// The first rule the encoded image fails, or its size.
    pub fn check(&self, bytes: &[u8]) -> Result<ImageInfo, Drop> {
        let c = &self.cfg;
        let reader = || ImageReader::new(Cursor::new(bytes)).with_guessed_format().expect("reading from memory cannot fail");
        let Some(fmt) = reader().format() else {
            return Err(Drop { rule: rule::DECODE, value: bytes.len() as f64, threshold: 0.0, detail: Some("unrecognised image format".into()) });
        };
        let name = format_name(fmt);
        if self.on(rule::FORMAT) && !c.formats.iter().any(|f| f == name) {
            return Err(Drop { rule: rule::FORMAT, value: 0.0, threshold: 0.0, detail: Some(format!("format {fmt:?} not allowed")) });
        }
        // Header only: nothing is allocated for pixels until the size is known to be sane.
        let mut header = reader();
        // The default limits would turn a bomb into a decode error; the budget below says why.
        header.no_limits();
        let (w, h) = match header.into_dimensions() {
            Ok(d) => d,
            Err(e) => return Err(Drop { rule: rule::DECODE, value: bytes.len() as f64, threshold: 0.0, detail: Some(e.to_string()) }),
        };
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
            if let Some(missing) = truncated(fmt, bytes) {
                return Err(Drop { rule: rule::TRUNCATED, value: bytes.len() as f64, threshold: 0.0, detail: Some(missing.into()) });
            }
        }
        if self.on(rule::ANIMATED) {
            let frames = frame_count(fmt, bytes);
            if frames > 1 {
                return Err(drop(rule::ANIMATED, frames as f64, 1.0));
            }
        }
        let mut r = reader();
        let mut limits = Limits::default();
        limits.max_image_width = Some(w);
        limits.max_image_height = Some(h);
        // Room for the largest pixel type (16-bit RGBA) plus decoder buffers.
        limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
        r.limits(limits);
        let img = match r.decode() {
            Ok(i) => i,
            Err(e) => return Err(Drop { rule: rule::DECODE, value: bytes.len() as f64, threshold: 0.0, detail: Some(e.to_string()) }),
        };
        if self.on(rule::BLANK) {
            let std = luma_std(&img);
            if std < c.min_luma_std {
                return Err(drop(rule::BLANK, std, c.min_luma_std));
            }
        }
        Ok(ImageInfo { width: w, height: h })
    }
}

/// Checks the end-of-image marker decoders may forgive: a JPEG that stops before
/// its EOI or a PNG without IEND was cut off in transfer.
fn truncated(fmt: ImageFormat, bytes: &[u8]) -> Option<&'static str> {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    match fmt {
        ImageFormat::Jpeg if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) => Some("no JPEG end-of-image marker"),
        ImageFormat::Png if !tail.windows(4).any(|w| w == b"IEND") => Some("no PNG IEND chunk"),
        ImageFormat::Gif if bytes.last() != Some(&0x3B) && !tail.contains(&0x3B) => Some("no GIF trailer"),
        _ => None,
    }
}

/// Frames in an animated GIF/PNG/WebP (2 means "at least two"); 1 otherwise.
fn frame_count(fmt: ImageFormat, bytes: &[u8]) -> usize {
    use image::AnimationDecoder;
    match fmt {
        ImageFormat::Gif => match image::codecs::gif::GifDecoder::new(Cursor::new(bytes)) {
            Ok(d) => d.into_frames().take(2).filter(|f| f.is_ok()).count().max(1),
            Err(_) => 1,
        },
        ImageFormat::Png => match image::codecs::png::PngDecoder::new(Cursor::new(bytes)) {
            Ok(d) => {
                if d.is_apng().unwrap_or(false) {
                    2
                } else {
                    1
                }
            }
            Err(_) => 1,
        },
        ImageFormat::WebP => match image::codecs::webp::WebPDecoder::new(Cursor::new(bytes)) {
            Ok(d) => {
                if d.has_animation() {
                    2
                } else {
                    1
                }
            }
            Err(_) => 1,
        },
        _ => 1,
    }
}

fn luma_std(img: &image::DynamicImage) -> f64 {
    let t = img.thumbnail(64, 64).to_luma8();
    let n = t.pixels().len().max(1) as f64;
    let mean = t.pixels().map(|p| p.0[0] as f64).sum::<f64>() / n;
    (t.pixels().map(|p| (p.0[0] as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}
