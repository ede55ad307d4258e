//! Image and pair rules on the real scikit-image photos (and images cut from them).

mod common;

use std::io::Cursor;

use common::*;
use image::{DynamicImage, ImageFormat, RgbaImage};
use m6_stage_filter::caption::rule as cap;
use m6_stage_filter::image_rules::rule;
use m6_stage_filter::{all_rules, FilterConfig, FilterStage};

fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(vec![]);
    img.write_to(&mut out, fmt).unwrap();
    out.into_inner()
}

fn astronaut() -> DynamicImage {
    image::load_from_memory(&photo("astronaut.png")).unwrap()
}

fn crop(w: u32, h: u32) -> Vec<u8> {
    encode(&astronaut().crop_imm(100, 100, w, h), ImageFormat::Png)
}

fn stage() -> FilterStage {
    FilterStage::new(FilterConfig::default()).unwrap()
}

#[track_caller]
fn dropped_by(s: &FilterStage, bytes: &[u8]) -> &'static str {
    match s.judge_image(bytes) {
        Ok(i) => panic!("kept ({}x{})", i.width, i.height),
        Err(d) => d.rule,
    }
}

#[test]
fn real_photos_are_kept() {
    let s = stage();
    for name in ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg", "motorcycle_left.png", "retina.jpg"] {
        let r = s.judge_image(&photo(name));
        assert!(r.is_ok(), "{name}: {:?}", r.err());
    }
}

#[test]
fn pixel_count_4999_dropped_5000_kept() {
    let s = stage();
    // 5000 = 100 x 50 and 50 x 100: kept.
    assert_eq!(s.judge_image(&crop(100, 50)).unwrap().width, 100);
    assert!(s.judge_image(&crop(50, 100)).is_ok());
    // 4999 is prime: 4999 x 1 (and 1 x 4999) is the only 4999-pixel image, and the
    // pixel rule is what drops it (it runs before the side and aspect rules).
    let src = astronaut().to_rgba8();
    for (w, h) in [(4999, 1), (1, 4999)] {
        let img = DynamicImage::ImageRgba8(RgbaImage::from_fn(w, h, |x, y| *src.get_pixel(x % 512, (y + x / 512) % 512)));
        let e = s.judge_image(&encode(&img, ImageFormat::Png)).unwrap_err();
        assert_eq!((e.rule, e.value, e.threshold), (rule::MIN_PIXELS, 4999.0, 5000.0));
    }
    // Just under, in a normal shape: 70 x 71 = 4970.
    assert_eq!(dropped_by(&s, &crop(70, 71)), rule::MIN_PIXELS);
}

#[test]
fn decompression_bomb_is_refused_from_its_header() {
    let s = stage();
    let e = s.judge_image(&png_bomb(100_000, 100_000)).unwrap_err();
    assert_eq!((e.rule, e.value, e.threshold), (rule::BOMB, 1e10, 50_000_000.0));
    // The guard follows the configured budget: 8000 x 8000 passes 100M, not 50M.
    let mut cfg = FilterConfig::default();
    cfg.image.max_pixels = 100_000_000;
    let big = FilterStage::new(cfg).unwrap();
    let e = big.judge_image(&png_bomb(8000, 8000)).unwrap_err();
    assert_ne!(e.rule, rule::BOMB, "within budget, the (broken) data fails later");
    assert_eq!(dropped_by(&s, &png_bomb(8000, 8000)), rule::BOMB);
}

#[test]
fn truncated_and_corrupt_files() {
    let s = stage();
    let jpg = photo("rocket.jpg");
    let r = dropped_by(&s, &jpg[..jpg.len() / 2]);
    assert!(r == rule::TRUNCATED || r == rule::DECODE, "{r}");
    let png = photo("coffee.png");
    let r = dropped_by(&s, &png[..png.len() * 2 / 3]);
    assert!(r == rule::TRUNCATED || r == rule::DECODE, "{r}");
    // Not an image at all: a Debian Handbook page.
    assert_eq!(dropped_by(&s, handbook_page("zh-CN", "apt.html").as_bytes()), rule::DECODE);
    // Corrupted compressed data in an otherwise whole PNG.
    let mut bad = png.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 64] {
        *b ^= 0x5A;
    }
    assert_eq!(dropped_by(&s, &bad), rule::DECODE);
    // A WebP with 100 bytes lost from its middle: shorter than its RIFF header says,
    // which the WebP decoder did not always notice. Bytes after the RIFF chunk are not
    // a cut (libwebp ignores them too).
    let webp = encode(&image::load_from_memory(&photo("coffee.png")).unwrap(), ImageFormat::WebP);
    assert!(s.judge_image(&webp).is_ok());
    let mut lost = webp.clone();
    lost.drain(webp.len() / 2..webp.len() / 2 + 100);
    assert_eq!(dropped_by(&s, &lost), rule::TRUNCATED);
    let mut trailing = webp.clone();
    trailing.extend_from_slice(&[0; 16]);
    assert!(s.judge_image(&trailing).is_ok());
}

/// A JPEG damaged in the middle of its data (bytes overwritten, lost or added) is
/// whole by every check before: it has its end marker and every decoder reads through
/// it, with garbage from the damage on. `image.damaged` drops it, with the MCU where
/// the data went wrong, for a photo under 2× the work size (jpeg_dc's full-size read is
/// the check) and ones over it (its 1/2 and 1/4 reads); undamaged, all are kept, and
/// with the rule off the damaged ones are kept as before.
#[test]
fn jpeg_damaged_mid_stream_is_dropped() {
    let s = stage();
    let small = photo("rocket.jpg");
    let big = encode(&image::load_from_memory(&small).unwrap().resize(1400, 1400, image::imageops::FilterType::Triangle), ImageFormat::Jpeg);
    let smaller = encode(&image::load_from_memory(&small).unwrap().resize(400, 400, image::imageops::FilterType::Triangle), ImageFormat::Jpeg);
    let lenient = FilterStage::new(FilterConfig { disable: vec!["image.damaged".into()], ..Default::default() }).unwrap();
    for (name, jpg) in [("rocket at 400 px", &smaller), ("rocket", &small), ("rocket at 1400 px", &big)] {
        assert!(s.judge_image(jpg).is_ok(), "{name}");
        let (start, end) = (m6_imaging::jpeg_first_scan(jpg).unwrap(), jpg.len() - 2);
        let at = start + (end - start) * 2 / 5;
        let mut overwritten = jpg.clone();
        let mut x = 0x9E37_79B9u32;
        for b in &mut overwritten[at..at + 200] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let mut lost = jpg.clone();
        lost.drain(at..at + 100);
        let mut added = jpg.clone();
        added.splice(at..at, std::iter::repeat_n(0x3C, 50));
        // Left over after the last block: what no single code shows.
        let mut trailing = jpg.clone();
        trailing.splice(end..end, [0x12, 0x34, 0x56]);
        for (how, bad) in [("overwritten", &overwritten), ("lost", &lost), ("added", &added), ("trailing", &trailing)] {
            let e = s.judge_image(bad).expect_err(&format!("{name}, {how}: kept"));
            assert_eq!(e.rule, rule::DAMAGED, "{name}, {how}");
            let detail = e.detail.unwrap();
            assert!(detail.contains("MCU"), "{name}, {how}: {detail}");
            assert!(lenient.judge_image(bad).is_ok(), "{name}, {how}: dropped with the rule off");
        }
    }
}

#[test]
fn sides_and_aspect_ratio() {
    let s = stage();
    assert_eq!(dropped_by(&s, &crop(400, 60)), rule::ASPECT);
    assert!(s.judge_image(&crop(300, 60)).is_ok());
    let mut cfg = FilterConfig::default();
    cfg.image.min_side = 100;
    cfg.image.max_side = 300;
    let s = FilterStage::new(cfg).unwrap();
    assert_eq!(dropped_by(&s, &crop(200, 90)), rule::MIN_SIDE);
    assert_eq!(dropped_by(&s, &photo("astronaut.png")), rule::MAX_SIDE);
    assert!(s.judge_image(&crop(200, 150)).is_ok());
}

#[test]
fn blank_and_single_colour() {
    let s = stage();
    // The flattest real photo region still has texture; a flat fill does not.
    let flat = DynamicImage::ImageRgba8(RgbaImage::from_pixel(200, 150, image::Rgba([250, 250, 250, 255])));
    assert_eq!(dropped_by(&s, &encode(&flat, ImageFormat::Png)), rule::BLANK);
    let red = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(120, 90, image::Rgb([200, 30, 30])));
    assert_eq!(dropped_by(&s, &encode(&red, ImageFormat::Jpeg)), rule::BLANK);
    assert!(s.judge_image(&photo("page.png")).is_ok(), "a scanned page is not blank");
}

#[test]
fn animated_images() {
    let s = stage();
    let a = astronaut().thumbnail(80, 80).to_rgba8();
    let b = image::load_from_memory(&photo("coffee.png")).unwrap().thumbnail(80, 80).to_rgba8();
    let mut gif = vec![];
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        enc.encode_frames([image::Frame::new(a.clone()), image::Frame::new(RgbaImage::from_fn(a.width(), a.height(), |x, y| *b.get_pixel(x % b.width(), y % b.height())))])
            .unwrap();
    }
    let e = s.judge_image(&gif).unwrap_err();
    assert_eq!((e.rule, e.value), (rule::ANIMATED, 2.0));
    // A one-frame GIF of the same photo is kept.
    let still = encode(&DynamicImage::ImageRgba8(a), ImageFormat::Gif);
    assert!(s.judge_image(&still).is_ok());
}

#[test]
fn format_allow_list() {
    let mut cfg = FilterConfig::default();
    cfg.image.formats = vec!["png".into()];
    let s = FilterStage::new(cfg).unwrap();
    assert_eq!(dropped_by(&s, &photo("rocket.jpg")), rule::FORMAT);
    assert!(s.judge_image(&photo("astronaut.png")).is_ok());
}

#[test]
fn pair_rules_caption_then_image() {
    let s = stage();
    let img = photo("astronaut.png");
    // A real figure caption from the handbook, with a real photo: kept, caption normalised.
    let html = handbook_page("zh-CN", "sect.installation-steps.html");
    let caption = paragraphs(&html).into_iter().find(|p| p.starts_with("图 ")).or_else(|| {
        handbook_pages("zh-CN").iter().flat_map(|p| paragraphs(&std::fs::read_to_string(p).unwrap())).find(|p| p.starts_with("图 "))
    });
    let caption = caption.expect("a figure caption");
    assert!(s.judge_pair(&format!("  {caption}  "), &img).unwrap() == caption);
    for (cap_text, r) in [("图片", cap::BOILERPLATE), ("astronaut.png", cap::BOILERPLATE), ("https://scikit-image.org/docs/astronaut.png", cap::BOILERPLATE), ("IMG_0001", cap::BOILERPLATE), ("图", cap::MIN_CHARS), ("Астронавт Эйлин Коллинз", cap::LANG)] {
        assert_eq!(s.judge_pair(cap_text, &img).unwrap_err().rule, r, "{cap_text}");
    }
    // A good caption on a bad image: the image rules apply.
    assert_eq!(s.judge_pair(&caption, &crop(70, 70)).unwrap_err().rule, rule::MIN_PIXELS);
    // Rules can be switched off.
    let mut cfg = FilterConfig::default();
    cfg.disable = vec![cap::BOILERPLATE.into()];
    assert!(FilterStage::new(cfg).unwrap().judge_pair("Image 2", &img).is_ok());
    let _ = all_rules();
}
