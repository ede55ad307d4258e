//! Decode floor for `bench/filter_images.py`: CPU per image of decoding alone, with no
//! rules, signals or Parquet, on the image files of a folder (the bytes `ingest` stores).
//!
//! m6-decode-bench DIR [SIDE] [REPEAT] [MODES]
//!
//! Prints one JSON object: images, and per mode the best-of-REPEAT CPU seconds of this
//! thread (from /proc/thread-self/schedstat; files are read into memory first):
//!   filter_decode  what `filter` does before its rules: JPEG straight to luma
//!                  (decode_jpeg_gray_fast: jpeg_dc at 1/2, 1/4 or 1/8 from 2x SIDE, its
//!                  full-size read below; each read is the damage check; zune-jpeg
//!                  where jpeg_dc does not handle the file)
//!                  and box-shrunk to SIDE, PNG rows
//!                  streamed into the SIDE work picture (decode_png_gray), others
//!                  through decode_gray
//!   zune_luma_full JPEGs only: zune-jpeg's full-size luma decode, nothing after it (the
//!                  decoder `filter` used below 4x SIDE before session 20, and uses
//!                  without the damage check below 2x; zune-jpeg has no DCT-domain
//!                  scaling)
//!   dct_scaled     JPEGs only: jpeg-decoder's DCT-domain reduced decode (1/2-1/8) to the
//!                  smallest scale that leaves SIDE pixels, then the same shrink
//!   dc             JPEGs only: the luma DC picture (1/8 scale, jpeg_dc), then the same
//!                  shrink; `dc_handled` counts the files it decodes (the rest would
//!                  fall back to the modes above and are not timed here)
//!   quarter        the same files as `dc`: their 1/4-scale luma (jpeg_dc's quadrant
//!                  means), then the same shrink
//!   half           the same files: their 1/2-scale luma (jpeg_dc's 2×2 cell means),
//!                  then the same shrink
//!   full           the same files: their full-size luma (jpeg_dc's inverse DCT), then
//!                  the same shrink
//!   rgb_dc         the same files: the 1/8 colour picture `tokenize` samples JPEGs of
//!                  at least 8x the sample from (jpeg_dc::decode_rgb_reduced, chroma's
//!                  scans too), no shrink
//!   rgb_quarter    the same at 1/4 (JPEGs of 4x-8x the sample)
//!                  (the two rgb modes run only when MODES names them: the filter and
//!                  dedup benches, which run every other mode, do not use them)
//!   seen           every file: dedup's signing decode (decode_gray_seen at SIDE, JPEG's
//!                  luma); run only when MODES names it, and then `seen_per_file` lists
//!                  each file's path, whether it holds colour and its colour variety
//!                  (m6_imaging::Seen), in the order read
//! MODES, a comma list of the names above, runs only those (the others print null):
//! for profiling one decoder with perf.
//! `progressive` counts the JPEGs whose frame is progressive (SOF2), the ones whose
//! full decode costs most: run it on a folder of progressive files to compare `dc` and
//! `quarter` with `zune_luma_full` on them.

use std::time::Instant;

/// CPU time of this thread in seconds (wall clock where schedstat is missing).
fn cpu_now(start: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .map(|ns| ns as f64 / 1e9)
        .unwrap_or_else(|| start.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: m6-decode-bench DIR [SIDE] [REPEAT]");
        std::process::exit(2);
    };
    let side: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(m6_imaging::quality::SIDE);
    let repeat: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let modes: Option<Vec<String>> = args.get(3).map(|m| m.split(',').map(str::to_string).collect());
    let wanted = |m: &str| modes.as_ref().is_none_or(|v| v.iter().any(|x| x == m));
    let mut files = vec![];
    let mut names = vec![];
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
                names.push(p.display().to_string());
            }
        }
    }
    let is_jpeg = |b: &[u8]| b.starts_with(&[0xFF, 0xD8, 0xFF]);
    let t0 = Instant::now();
    // Best-of-REPEAT CPU seconds of `f` over a set of files.
    let time = |mode: &str, set: &[&Vec<u8>], f: &dyn Fn(&[u8]) -> usize| -> f64 {
        if !wanted(mode) || ((mode.starts_with("rgb") || mode == "seen") && modes.is_none()) {
            return f64::NAN;
        }
        let mut best = f64::INFINITY;
        for _ in 0..repeat {
            let c = cpu_now(t0);
            let px: usize = set.iter().map(|b| f(b)).sum();
            std::hint::black_box(px);
            best = best.min(cpu_now(t0) - c);
        }
        best
    };
    let all: Vec<&Vec<u8>> = files.iter().collect();
    let jpeg_files: Vec<&Vec<u8>> = files.iter().filter(|b| is_jpeg(b)).collect();
    let jpegs = jpeg_files.len();
    let progressive = jpeg_files.iter().filter(|b| m6_imaging::jpeg_dc::is_progressive(b)).count();
    let filter_decode = time("filter_decode", &all, &|b| {
        let r = m6_imaging::decode_png_gray(b, side).or_else(|| m6_imaging::decode_jpeg_gray_fast(b, side, true)).unwrap_or_else(|| m6_imaging::decode_gray(b, side).map(|(g, w, h, _)| (g, w, h)));
        r.map(|(g, _, _)| g.px.len()).unwrap_or(0)
    });
    let zune = time("zune_luma_full", &jpeg_files, &|b| {
        use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
        let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::Luma).set_strict_mode(true).set_max_width(1 << 16).set_max_height(1 << 16);
        zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(b), opts).decode().map(|p| p.len()).unwrap_or(0)
    });
    let scaled = time("dct_scaled", &jpeg_files, &|b| m6_imaging::decode_jpeg_scaled(b, side).map(|(g, _, _, _)| g.px.len()).unwrap_or(0));
    let reduced = |b: &[u8], factor: u32| m6_imaging::jpeg_dc::decode_luma_reduced(b, factor).map(|(g, w, h)| m6_imaging::jpeg_dc::shrink_reduced(&g, w, h, side, factor).px.len());
    let handled: Vec<&Vec<u8>> = jpeg_files.iter().copied().filter(|b| reduced(b, 8).is_some()).collect();
    let dc = time("dc", &handled, &|b| reduced(b, 8).unwrap_or(0));
    let quarter = time("quarter", &handled, &|b| reduced(b, 4).unwrap_or(0));
    let half = time("half", &handled, &|b| reduced(b, 2).unwrap_or(0));
    let full = time("full", &handled, &|b| reduced(b, 1).unwrap_or(0));
    let rgb = |b: &[u8], factor: u32| m6_imaging::jpeg_dc::decode_rgb_reduced(b, factor).map_or(0, |(px, ..)| px.len());
    let rgb_dc = time("rgb_dc", &handled, &|b| rgb(b, 8));
    let rgb_quarter = time("rgb_quarter", &handled, &|b| rgb(b, 4));
    let rgb_half = time("rgb_half", &handled, &|b| rgb(b, 2));
    // `tokenize`'s sample decode with the shorter side at least SIDE, and jpeg-decoder's
    // scaled RGB decode to the same size (what it used below 4x SIDE before the 1/2
    // colour picture, and still uses below 2x).
    let sample = time("rgb_sample", &jpeg_files, &|b| m6_imaging::decode_rgb_min_short(b, side as u32, false).map_or(0, |(img, ..)| img.len()));
    let jd_sample = time("rgb_jd_sample", &jpeg_files, &|b| m6_imaging::decode_jpeg_rgb_scaled(b, side as u32).map_or(0, |(img, ..)| img.len()));
    let seen_decode = |b: &[u8]| m6_imaging::decode_gray_seen(b, side, m6_imaging::JpegGrey::Luma);
    let seen = time("seen", &all, &|b| seen_decode(b).map_or(0, |((g, ..), _)| g.px.len()));
    let seen_per_file = if seen.is_nan() {
        "null".to_string()
    } else {
        let rows: Vec<String> = files
            .iter()
            .zip(&names)
            .map(|(b, n)| {
                let s = seen_decode(b).map(|(_, s)| s).unwrap_or_default();
                let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
                format!("{{\"file\": {:?}, \"colour\": {}, \"variety\": {}}}", n, opt(s.colour.map(|c| c.to_string())), opt(s.variety.map(|v| format!("{v:.2}"))))
            })
            .collect();
        format!("[{}]", rows.join(", "))
    };
    let per =
        |s: f64, n: usize| if n == 0 || s.is_nan() { serde_free_null() } else { format!("{{\"cpu_seconds\": {s:.4}, \"images_per_cpu_s\": {:.1}, \"ms_per_image\": {:.3}}}", n as f64 / s, 1e3 * s / n as f64) };
    println!(
        "{{\"images\": {}, \"jpegs\": {jpegs}, \"progressive\": {progressive}, \"side\": {side}, \"repeat\": {repeat}, \"filter_decode\": {}, \"zune_luma_full\": {}, \"dct_scaled\": {}, \"dc_handled\": {}, \"dc\": {}, \"quarter\": {}, \"half\": {}, \"full\": {}, \"rgb_dc\": {}, \"rgb_quarter\": {}, \"rgb_half\": {}, \"rgb_sample\": {}, \"rgb_jd_sample\": {}, \"seen\": {}, \"seen_per_file\": {seen_per_file}}}",
        files.len(),
        per(filter_decode, files.len()),
        per(zune, jpegs),
        per(scaled, jpegs),
        handled.len(),
        per(dc, handled.len()),
        per(quarter, handled.len()),
        per(half, handled.len()),
        per(full, handled.len()),
        per(rgb_dc, handled.len()),
        per(rgb_quarter, handled.len()),
        per(rgb_half, handled.len()),
        per(sample, jpegs),
        per(jd_sample, jpegs),
        per(seen, files.len())
    );
}

fn serde_free_null() -> String {
    "null".into()
}
