//! The pairs phase keeps the image bodies it has read, and apart from them their window
//! hashes, in bounded per-worker caches (emptied when full). Which rows are cached must
//! never change a verdict: a run with caches of two rows (emptied on nearly every
//! bucket member and candidate pair) gives the same kept
//! rows and the same audit rows as a run with the default cache, on real photos with
//! crops, thumbnails and recompressed copies (so that buckets have many members and
//! rows meet in many key ranges). Its own test binary: the cache size is process-wide.

mod common;

use std::io::Cursor;

use common::*;
use image::DynamicImage;
use m6_schemas::Image;
use m6_stage_dedup::DedupConfig;

fn jpeg(img: &DynamicImage, q: u8) -> Vec<u8> {
    let mut buf = Cursor::new(vec![]);
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, q);
    img.to_rgb8().write_with_encoder(enc).unwrap();
    buf.into_inner()
}

fn crop(img: &DynamicImage, l: f32, t: f32, r: f32, b: f32) -> DynamicImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let (x0, y0) = ((w * l) as u32, (h * t) as u32);
    let (x1, y1) = ((w * (1.0 - r)) as u32, (h * (1.0 - b)) as u32);
    img.crop_imm(x0, y0, x1 - x0, y1 - y0)
}

fn run(rows: &[Image], cache_rows: usize, threads: usize) -> (Vec<String>, Vec<(String, String, String, u32)>) {
    m6_stage_dedup::work::set_body_cache_rows_for_tests(cache_rows);
    let tmp = tempfile::tempdir().unwrap();
    let input = write_dataset(&tmp.path().join("in"), rows, 3);
    let out = tmp.path().join("out");
    dedup(&input, &out, DedupConfig::default(), threads).unwrap();
    let kept = kept_ids::<Image>(&out, |d| d.id.clone());
    let mut dups: Vec<(String, String, String, u32)> =
        duplicates(&out).into_iter().map(|d| (d.id.clone(), d.kept_id.clone(), d.reason.clone(), d.similarity.to_bits())).collect();
    dups.sort();
    (kept, dups)
}

#[test]
fn a_tiny_body_cache_gives_the_same_output_as_the_default_one() {
    let mut rows = vec![];
    for name in ["astronaut.png", "coffee.png", "chelsea.png", "camera.png", "rocket.jpg", "coins.png", "motorcycle_left.png", "motorcycle_right.png"] {
        let img = image::load_from_memory(&std::fs::read(data_dir().join("photos").join(name)).unwrap()).unwrap();
        rows.push(image_row("orig", &format!("{name}:orig"), jpeg(&img, 90)));
        rows.push(image_row("copy", &format!("{name}:q40"), jpeg(&img, 40)));
        rows.push(image_row("copy", &format!("{name}:thumb"), jpeg(&img.thumbnail(128, 128), 85)));
        rows.push(image_row("copy", &format!("{name}:crop"), jpeg(&crop(&img, 0.06, 0.02, 0.03, 0.08), 85)));
        rows.push(image_row("part", &format!("{name}:left"), jpeg(&crop(&img, 0.0, 0.0, 0.45, 0.0), 85)));
    }
    let (kept, dups) = run(&rows, 0, 2);
    assert!(dups.len() >= 16, "too few duplicates found for the comparison to mean anything: {dups:?}");
    for (cache, threads) in [(2, 2), (3, 1)] {
        let (k, d) = run(&rows, cache, threads);
        assert_eq!(k, kept, "kept rows with a cache of {cache} rows, {threads} threads");
        assert_eq!(d, dups, "audit rows with a cache of {cache} rows, {threads} threads");
    }
    m6_stage_dedup::work::set_body_cache_rows_for_tests(0);
}
