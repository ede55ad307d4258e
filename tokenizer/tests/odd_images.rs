//! Image samples of the odd files web crawls and photo folders hold: extreme aspect
//! ratios (a thin strip must not cost gigabytes), transparency, truncated files.

use std::io::Cursor;
use std::path::PathBuf;

use image::imageops;
use m6_tokenizer::{ImageConfig, ImageEncoding};

/// Records the largest single allocation (`m6_imaging::alloc_probe`).
#[global_allocator]
static A: m6_imaging::alloc_probe::Largest = m6_imaging::alloc_probe::Largest;

fn photo(name: &str) -> image::DynamicImage {
    let d = std::env::var_os("M6_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"));
    let p = d.join("photos").join(name);
    image::open(&p).unwrap_or_else(|e| panic!("{}: {e} (run `make data`)", p.display()))
}

fn png(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = vec![];
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// The square as the whole picture resized, then cut: what samples were before the
/// square was resampled on its own.
fn resize_then_crop(cfg: &ImageConfig, img: &image::RgbImage) -> image::RgbImage {
    let (nw, nh) = cfg.resized_dims(img.width(), img.height());
    let s = cfg.image_size;
    let whole = m6_tokenizer::image::resize_rgb(img, nw, nh);
    imageops::crop_imm(&whole, (nw - s) / 2, (nh - s) / 2, s, s).to_image()
}

/// Resampling only the centre square gives the same pixels as resizing the whole
/// picture and cutting the square out, on real photos, at several training sizes,
/// landscape and portrait, shrinking and enlarging.
#[test]
fn centre_square_is_the_whole_resize_cut() {
    for name in ["chelsea.png", "coffee.png", "rocket.jpg", "camera.png", "hubble_deep_field.jpg"] {
        let p = photo(name).to_rgb8();
        let turned = image::DynamicImage::ImageRgb8(p.clone()).rotate90().to_rgb8();
        let strip = imageops::crop_imm(&p, 0, 0, p.width(), 37).to_image();
        for img in [&p, &turned, &strip] {
            for (size, patch) in [(224, 16), (96, 16), (64, 8), (500, 10)] {
                let cfg = ImageConfig { image_size: size, patch_size: patch };
                let want = resize_then_crop(&cfg, img);
                let got = cfg.square_rgb(img).unwrap();
                assert_eq!(got.dimensions(), (size, size));
                // The source positions and filter weights are the same; the resizer's
                // two passes round to 8 bits in between, and on a smaller source window it
                // may run them in the other order, so pixels may differ by one level
                // (2.2% of the bytes enlarging coffee.png to 500 px; none seen shrinking
                // to 224).
                let diff: Vec<u8> = got.as_raw().iter().zip(want.as_raw()).map(|(a, b)| a.abs_diff(*b)).filter(|&d| d > 0).collect();
                let (n, most) = (diff.len(), diff.iter().copied().max().unwrap_or(0));
                assert!(most <= 1 && n * 20 <= got.as_raw().len(), "{name} {}x{} at {size}: {n} bytes differ, by up to {most}", img.width(), img.height());
                // The raw-patch path takes the same square.
                assert_eq!(cfg.preprocess_rgb(img).unwrap(), cfg.preprocess_rgb(&got).unwrap());
            }
        }
    }
}

/// A 3×2000 strip (a few hundred bytes of PNG) would be resized to 224×149,333 before
/// the crop: 100 MB for one sample (a 1×60,000 one took 9 GB and 40 s). Only the
/// square's window is resampled now.
#[test]
fn a_thin_strip_costs_only_its_square() {
    let strip = image::RgbImage::from_fn(3, 2000, |x, y| image::Rgb([(y % 256) as u8, (x * 80) as u8, ((y / 7) % 256) as u8]));
    let bytes = png(&image::DynamicImage::ImageRgb8(strip.clone()));
    let cfg = ImageConfig::default();
    m6_imaging::alloc_probe::assert_installed();
    let sample = cfg.encode_sample(&bytes, ImageEncoding::Jpeg, 90, true).unwrap();
    let raw = cfg.encode_sample(&bytes, ImageEncoding::Raw, 90, true).unwrap();
    let largest = m6_imaging::alloc_probe::largest();
    assert!(largest < 8 << 20, "largest allocation {largest} bytes for a 3x2000 strip");
    assert_eq!(raw.len(), cfg.total_bytes());
    let back = image::load_from_memory(&sample).unwrap();
    assert_eq!((back.width(), back.height()), (224, 224));
}

fn jpeg(img: &image::RgbImage) -> Vec<u8> {
    let mut out = vec![];
    image::DynamicImage::ImageRgb8(img.clone()).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
    out
}

/// The training square as the trainer's loader sees it (decoded sample).
fn sample_square(cfg: &ImageConfig, bytes: &[u8]) -> image::RgbImage {
    let enc = cfg.encode_sample(bytes, ImageEncoding::Jpeg, 95, true).unwrap();
    image::load_from_memory(&enc).unwrap().to_rgb8()
}

/// Transparent pixels are shown on white, as on a web page, not as the colour they
/// happen to store (black here, as most encoders write them): an RGBA PNG, a
/// half-transparent one, and a palette PNG whose background index is transparent (tRNS).
#[test]
fn transparency_is_shown_on_white() {
    let cat = photo("chelsea.png").resize_exact(120, 80, imageops::FilterType::Triangle).to_rgb8();
    let cfg = ImageConfig { image_size: 96, patch_size: 16 };
    // The photo in the middle of a 240×160 transparent canvas.
    let mut rgba = image::RgbaImage::from_pixel(240, 160, image::Rgba([0, 0, 0, 0]));
    imageops::overlay(&mut rgba, &image::DynamicImage::ImageRgb8(cat.clone()).to_rgba8(), 60, 40);
    let sq = sample_square(&cfg, &png(&image::DynamicImage::ImageRgba8(rgba.clone())));
    // 240×160 -> 144×96, cut to 96×96 from x = 24: the canvas's top rows are margin.
    let corner = sq.get_pixel(2, 2).0;
    assert!(corner.iter().all(|&c| c >= 250), "transparent margin came out {corner:?}");
    // The photo itself is untouched: the middle matches an opaque copy's.
    let mut opaque = image::RgbImage::from_pixel(240, 160, image::Rgb([255, 255, 255]));
    imageops::overlay(&mut opaque, &cat, 60, 40);
    let want = sample_square(&cfg, &png(&image::DynamicImage::ImageRgb8(opaque)));
    let d = sq.as_raw().iter().zip(want.as_raw()).map(|(a, b)| a.abs_diff(*b) as u64).sum::<u64>() as f64 / sq.as_raw().len() as f64;
    assert!(d < 1.5, "differs from the picture on white by {d}");
    // Raw patches of the same image: the same white.
    let raw = cfg.encode_sample(&png(&image::DynamicImage::ImageRgba8(rgba.clone())), ImageEncoding::Raw, 90, true).unwrap();
    assert!(raw[..3].iter().all(|&c| c >= 250), "raw patches' corner {:?}", &raw[..3]);
    // Half transparent black over white is mid grey.
    let half = image::RgbaImage::from_pixel(200, 200, image::Rgba([0, 0, 0, 128]));
    let g = sample_square(&cfg, &png(&image::DynamicImage::ImageRgba8(half))).get_pixel(48, 48).0;
    assert!(g.iter().all(|&c| (124..=130).contains(&c)), "half-transparent black came out {g:?}");
    // Palette PNG, index 0 (black) transparent.
    let (w, h) = (200u32, 120u32);
    let mut buf = vec![];
    {
        let mut e = png::Encoder::new(&mut buf, w, h);
        e.set_color(png::ColorType::Indexed);
        e.set_depth(png::BitDepth::Eight);
        e.set_palette(vec![0, 0, 0, 200, 30, 30]);
        e.set_trns(vec![0u8]);
        let mut wr = e.write_header().unwrap();
        let idx: Vec<u8> = (0..w * h).map(|i| u8::from((i % w) >= 100)).collect();
        wr.write_image_data(&idx).unwrap();
    }
    let sq = sample_square(&ImageConfig { image_size: 120, patch_size: 8 }, &buf);
    let (left, right) = (sq.get_pixel(5, 60).0, sq.get_pixel(115, 60).0);
    assert!(left.iter().all(|&c| c >= 250), "transparent palette entry came out {left:?}");
    assert!(right[0] > 180 && right[1] < 60, "opaque red came out {right:?}");
}

fn cut_sof(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut b = jpeg.to_vec();
    let mut i = 2;
    loop {
        let (m, len) = (b[i + 1], u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize);
        if m == 0xC0 || m == 0xC2 {
            b[i + 5..i + 7].copy_from_slice(&h.to_be_bytes());
            b[i + 7..i + 9].copy_from_slice(&w.to_be_bytes());
            return b;
        }
        i += 2 + len;
    }
}

/// A JPEG cut off in transfer decodes "successfully" with grey where its tail was; a
/// sample of it is refused (an error row naming the pair), as Pillow refuses it, on
/// both encodings and for a cut file that still holds an EXIF thumbnail's end marker.
/// Data after a complete JPEG (a phone's motion photo carries an MP4 there) is not a cut.
#[test]
fn truncated_jpegs_are_refused_and_motion_photos_kept() {
    let cfg = ImageConfig::default();
    let full = jpeg(&photo("chelsea.png").to_rgb8());
    for cut in [full.len() / 10, full.len() / 2, full.len() - 2] {
        for enc in [ImageEncoding::Jpeg, ImageEncoding::Raw] {
            let e = cfg.encode_sample(&full[..cut], enc, 90, true).unwrap_err().to_string();
            assert!(e.contains("truncated"), "cut at {cut}: {e}");
        }
    }
    // An APP1 segment holding a whole thumbnail JPEG (with its own EOI), then a cut.
    let thumb = jpeg(&photo("chelsea.png").resize(64, 64, imageops::FilterType::Triangle).to_rgb8());
    let mut seg = b"Exif\0\0II*\0\x08\0\0\0\0\0\0\0\0\0".to_vec();
    seg.extend_from_slice(&thumb);
    let with_thumb = m6_imaging::exif::with_app1(&full, &seg);
    assert!(cfg.encode_sample(&with_thumb, ImageEncoding::Jpeg, 90, true).is_ok());
    let cut = &with_thumb[..with_thumb.len() * 3 / 4];
    assert!(cfg.encode_sample(cut, ImageEncoding::Jpeg, 90, true).unwrap_err().to_string().contains("truncated"));
    // Motion photo: the JPEG, then an MP4 (here: its `ftyp` box and 200 KB of data).
    let mut motion = full.clone();
    motion.extend_from_slice(b"\0\0\0\x18ftypmp42");
    motion.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    assert_eq!(cfg.encode_sample(&motion, ImageEncoding::Jpeg, 90, true).unwrap(), cfg.encode_sample(&full, ImageEncoding::Jpeg, 90, true).unwrap());
}

/// A 20 KB JPEG whose header declares 60000×60000 pixels: jpeg-decoder read every
/// declared block (27 s, 400 MB) and made a sample of grey; it is refused up front.
#[test]
fn a_jpeg_declaring_billions_of_pixels_is_refused() {
    let cfg = ImageConfig::default();
    let full = jpeg(&photo("chelsea.png").to_rgb8());
    let bomb = cut_sof(&full, 60000, 60000);
    let e = cfg.encode_sample(&bomb, ImageEncoding::Jpeg, 90, true).unwrap_err().to_string();
    assert!(e.contains("60000x60000") || e.to_lowercase().contains("limit"), "{e}");
    // The damage check (tokenize's `check_damage`) leaves such a header to the size
    // verdict above: its 1/8 picture alone would be 225 MB.
    assert!(m6_tokenizer::image::refuse_damaged(&bomb).is_ok());
}
