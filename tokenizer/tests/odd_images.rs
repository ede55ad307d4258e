//! Image samples of the odd files web crawls and photo folders hold: extreme aspect
//! ratios (a thin strip must not cost gigabytes), transparency, truncated files.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::imageops;
use m6_tokenizer::{ImageConfig, ImageEncoding};

/// The largest single allocation made since the last reset (any thread).
struct Largest;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

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
    LARGEST.store(0, Ordering::Relaxed);
    let sample = cfg.encode_sample(&bytes, ImageEncoding::Jpeg, 90).unwrap();
    let raw = cfg.encode_sample(&bytes, ImageEncoding::Raw, 90).unwrap();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < 8 << 20, "largest allocation {largest} bytes for a 3x2000 strip");
    assert_eq!(raw.len(), cfg.total_bytes());
    let back = image::load_from_memory(&sample).unwrap();
    assert_eq!((back.width(), back.height()), (224, 224));
}
