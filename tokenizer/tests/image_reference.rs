//! Patches of real photos against a reference computed independently here: a direct
//! per-pixel triangle-filter (bilinear with antialiasing support) resize in f64, the
//! centre crop and the patch layout spelled out index by index.

use std::path::PathBuf;

use m6_tokenizer::ImageConfig;

fn photo(name: &str) -> Vec<u8> {
    let d = std::env::var_os("M6_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"));
    let p = d.join("photos").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run `make data`)", p.display()))
}

/// Weights of the input pixels for each output pixel along one axis.
fn weights(n_in: usize, n_out: usize) -> Vec<Vec<(usize, f64)>> {
    let ratio = n_in as f64 / n_out as f64;
    let scale = ratio.max(1.0);
    (0..n_out)
        .map(|o| {
            let center = (o as f64 + 0.5) * ratio;
            let mut w: Vec<(usize, f64)> = (0..n_in)
                .filter_map(|i| {
                    let x = ((i as f64 + 0.5) - center) / scale;
                    let k = 1.0 - x.abs();
                    (k > 0.0).then_some((i, k))
                })
                .collect();
            let sum: f64 = w.iter().map(|p| p.1).sum();
            for p in &mut w {
                p.1 /= sum;
            }
            w
        })
        .collect()
}

fn reference(rgb: &image::RgbImage, cfg: &ImageConfig) -> Vec<u8> {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let s = cfg.image_size as usize;
    let (nw, nh) = if w <= h { (s, ((h * s) as f64 / w as f64).round() as usize) } else { (((w * s) as f64 / h as f64).round() as usize, s) };
    let (wx, wy) = (weights(w, nw), weights(h, nh));
    // Vertical pass, then horizontal, no rounding in between.
    let mut tmp = vec![0f64; nh * w * 3];
    for (oy, ws) in wy.iter().enumerate() {
        for x in 0..w {
            for c in 0..3 {
                tmp[(oy * w + x) * 3 + c] = ws.iter().map(|&(iy, k)| k * rgb.get_pixel(x as u32, iy as u32).0[c] as f64).sum();
            }
        }
    }
    let mut img = vec![0u8; nh * nw * 3];
    for oy in 0..nh {
        for (ox, ws) in wx.iter().enumerate() {
            for c in 0..3 {
                let v: f64 = ws.iter().map(|&(ix, k)| k * tmp[(oy * w + ix) * 3 + c]).sum();
                img[(oy * nw + ox) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let (left, top) = ((nw - s) / 2, (nh - s) / 2);
    let p = cfg.patch_size as usize;
    let g = s / p;
    let mut out = vec![0u8; s * s * 3];
    for (i, b) in out.iter_mut().enumerate() {
        let c = i % 3;
        let px = i / 3;
        let patch = px / (p * p);
        let within = px % (p * p);
        let (y, x) = (top + (patch / g) * p + within / p, left + (patch % g) * p + within % p);
        *b = img[(y * nw + x) * 3 + c];
    }
    out
}

#[test]
fn patches_match_an_independent_reference() {
    // Landscape PNG with alpha, portrait-cropped JPEG, square PNG.
    for (name, cfg) in [
        ("coffee.png", ImageConfig::default()),
        ("rocket.jpg", ImageConfig { image_size: 96, patch_size: 32 }),
        ("astronaut.png", ImageConfig { image_size: 64, patch_size: 8 }),
    ] {
        let bytes = photo(name);
        let ours = cfg.preprocess(&bytes).unwrap();
        let rgb = image::load_from_memory(&bytes).unwrap().to_rgb8();
        let want = reference(&rgb, &cfg);
        assert_eq!(ours.len(), want.len(), "{name}");
        assert_eq!(ours.len(), (cfg.grid() * cfg.grid()) as usize * cfg.patch_bytes());
        let diffs: Vec<u32> = ours.iter().zip(&want).map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs()).collect();
        let max = *diffs.iter().max().unwrap();
        let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
        // The resampler (fast_image_resize) accumulates in fixed point, so about one
        // sample in seven rounds the other way: off by one level (coffee.png: max 1, mean
        // 0.146; the image crate's f32 resampler gave under 0.1). A layout or crop
        // mistake would be off by tens.
        assert!(max <= 2 && mean < 0.25, "{name}: max diff {max}, mean {mean}");
    }
}
