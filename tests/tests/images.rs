//! Image collections through the real binary (issue 16): a folder of photos without
//! captions is ingested as an `image` dataset, deduplicated and filtered.

use std::path::Path;

use m6_pipeline::Dataset;
use m6_schemas::*;
use m6_tests::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn caption_less_image_folder_ingests_as_images_then_dedups_and_filters() {
    let t = tempfile::tempdir().unwrap();
    let photos = data_dir().join("photos");
    let dir = t.path().join("album/trip");
    photo_folder(&dir, &["astronaut.png", "coffee.png", "rocket.jpg", "chelsea.png"]);
    // The same photo again under another name, and a file that is no image.
    std::fs::copy(photos.join("coffee.png"), dir.join("coffee-copy.png")).unwrap();
    std::fs::write(dir.join("broken.jpg"), b"\xff\xd8\xff\xe0 not really").unwrap();
    let ingested = t.path().join("images");
    m6_ok(&["ingest", "--input", s(&t.path().join("album")), "--output", s(&ingested), "--quiet"]);
    let ds = Dataset::open(&ingested).unwrap();
    assert_eq!(ds.kind(), Kind::Image, "a folder without captions is an image collection");
    let mut rows: Vec<Image> = ds.read_all().unwrap();
    rows.sort_by(|a, b| a.source_id.cmp(&b.source_id));
    let got: Vec<(&str, u32, u32, &str)> = rows.iter().map(|r| (r.source_id.as_deref().unwrap(), r.width, r.height, r.format.as_str())).collect();
    assert_eq!(
        got,
        [("trip/astronaut.png", 512, 512, "png"), ("trip/chelsea.png", 451, 300, "png"), ("trip/coffee-copy.png", 600, 400, "png"), ("trip/coffee.png", 600, 400, "png"), ("trip/rocket.jpg", 640, 427, "jpeg")]
    );
    assert!(rows.iter().all(|r| r.source == "trip"));
    assert_eq!(rows[0].bytes, std::fs::read(photos.join("astronaut.png")).unwrap());
    // Encoded images are stored without compression (zstd gains ~1% on web JPEGs
    // and costs every stage that writes them); every other column keeps zstd.
    for shard in ds.shards() {
        let f = std::fs::File::open(ds.shard_path(shard)).unwrap();
        let meta = parquet::file::reader::FileReader::metadata(&parquet::file::reader::SerializedFileReader::new(f).unwrap()).clone();
        for rg in meta.row_groups() {
            for c in rg.columns() {
                let plain = c.column_path().string() == image::BYTES;
                let want = if plain { parquet::basic::Compression::UNCOMPRESSED } else { parquet::basic::Compression::ZSTD(Default::default()) };
                assert_eq!(std::mem::discriminant(&c.compression()), std::mem::discriminant(&want), "column {}", c.column_path());
            }
        }
    }
    let errors: Vec<InputError> = ds.side("errors").unwrap().read_all().unwrap();
    assert_eq!(errors.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["image_decode"]);

    let deduped = t.path().join("dedup");
    m6_ok(&["dedup", "--input", s(&ingested), "--output", s(&deduped), "--quiet"]);
    assert_eq!(Dataset::open(&deduped).unwrap().rows(), 4, "the copy of coffee.png is removed");
    let filtered = t.path().join("filtered");
    m6_ok(&["filter", "--input", s(&deduped), "--output", s(&filtered), "--quiet"]);
    assert_eq!(Dataset::open(&filtered).unwrap().rows(), 4);
}

/// Stats' examples of image rejects name the file, with what was wrong when the
/// filter says (a cut-off JPEG's missing end marker; where the data of a JPEG damaged
/// mid-stream goes wrong): the detail alone was shown, which said what but not which.
#[test]
fn stats_examples_of_damaged_images_name_the_file() {
    let t = tempfile::tempdir().unwrap();
    let photos = data_dir().join("photos");
    let dir = t.path().join("photos");
    photo_folder(&dir, &["coffee.png"]);
    let jpeg = std::fs::read(photos.join("rocket.jpg")).unwrap();
    std::fs::write(dir.join("rocket-cut.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    // 100 bytes lost in the middle of the data: whole to ingest, and every decoder
    // reads through it (the lower half of the picture is garbage).
    let mut lost = jpeg.clone();
    lost.drain(jpeg.len() / 2..jpeg.len() / 2 + 100);
    std::fs::write(dir.join("rocket-hit.jpg"), &lost).unwrap();
    let (ingested, filtered) = (t.path().join("images"), t.path().join("filtered"));
    m6_ok(&["ingest", "--input", s(&dir), "--output", s(&ingested), "--quiet"]);
    assert_eq!(Dataset::open(&ingested).unwrap().rows(), 3);
    m6_ok(&["filter", "--input", s(&ingested), "--output", s(&filtered), "--quiet"]);
    assert_eq!(Dataset::open(&filtered).unwrap().rows(), 1);
    let st: serde_json::Value = serde_json::from_str(&m6_ok(&["stats", s(&filtered.join("rejects")), "--json"])).unwrap();
    let rules = st["rejects"]["rules"].as_array().unwrap();
    let of = |r: &str| rules.iter().find(|x| x["rule"] == r).unwrap_or_else(|| panic!("no {r} in {st}"));
    assert_eq!(rules.len(), 2, "{st}");
    assert_eq!(of("image.truncated")["snippets"], serde_json::json!(["rocket-cut.jpg [no JPEG end-of-image marker]"]));
    let hit = of("image.damaged")["snippets"][0].as_str().unwrap().to_string();
    assert!(hit.starts_with("rocket-hit.jpg [JPEG data is damaged: MCU "), "{hit}");
}

/// A collection put together with links is read through them: a linked photo, a
/// linked folder, and a link back up the tree (read once, not looped). A link to
/// nothing stops the ingest before anything is written, naming the link. Links were
/// skipped without a word: the linked photos were not in the dataset.
#[cfg(unix)]
#[test]
fn linked_photos_and_folders_are_ingested_and_a_broken_link_is_named() {
    use std::os::unix::fs::symlink;
    let t = tempfile::tempdir().unwrap();
    let photos = data_dir().join("photos");
    let root = t.path().join("album");
    let own = root.join("own");
    photo_folder(&own, &["coffee.png"]);
    symlink(photos.join("rocket.jpg"), root.join("rocket.jpg")).unwrap();
    let shared = t.path().join("shared");
    photo_folder(&shared, &["chelsea.png"]);
    symlink(&shared, root.join("shared")).unwrap();
    symlink("..", own.join("up")).unwrap();
    let out = t.path().join("images");
    m6_ok(&["ingest", "--input", s(&root), "--output", s(&out), "--quiet"]);
    let mut got: Vec<String> = Dataset::open(&out).unwrap().read_all::<Image>().unwrap().into_iter().map(|r| r.source_id.unwrap()).collect();
    got.sort();
    assert_eq!(got, ["own/coffee.png", "rocket.jpg", "shared/chelsea.png"]);

    symlink(t.path().join("gone.jpg"), root.join("gone.jpg")).unwrap();
    let out2 = t.path().join("images2");
    let run = m6(&["ingest", "--input", s(&root), "--output", s(&out2), "--quiet"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(err.contains("gone.jpg is a link to") && err.contains("cannot be read"), "{err}");
    assert!(!out2.join("manifest.json").exists());
}

/// A captions file is read by every task that holds an image of its folder, but its
/// problems are one error row each, whatever `images_per_task` is: a bad line (it
/// was reported once per task), and a caption for a file that is not in the folder (a
/// caption no row carries; it was dropped without a word).
#[test]
fn captions_file_problems_are_reported_once() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("相册");
    photo_folder(&dir, &["camera.png", "coins.png", "rocket.jpg", "horse.png"]);
    let lines = [
        r#"{"file": "camera.png", "caption": "相机"}"#,
        r#"{"file": "coins.png", "caption": "硬币"}"#,
        "{not json",
        r#"{"file": "rocket.jpg", "caption": "火箭"}"#,
        r#"{"file": "gone.jpg", "caption": "不在了"}"#,
        r#"{"file": "horse.png", "caption": "马"}"#,
    ];
    std::fs::write(dir.join("captions.jsonl"), lines.join("\n")).unwrap();
    for per_task in [1, 1000] {
        let out = t.path().join(format!("pairs-{per_task}"));
        m6_ok(&["ingest", "--input", s(&dir), "--output", s(&out), "--set", &format!("images_per_task={per_task}"), "--quiet"]);
        let ds = Dataset::open(&out).unwrap();
        assert_eq!(ds.read_all::<Pair>().unwrap().len(), 4);
        let mut errors: Vec<(String, String)> = ds.side("errors").unwrap().read_all::<InputError>().unwrap().into_iter().map(|e| (e.location, e.message)).collect();
        errors.sort();
        assert_eq!(errors.len(), 2, "images_per_task = {per_task}: {errors:?}");
        assert_eq!(errors[0].0, "line 3");
        assert_eq!(errors[1].0, "line 5");
        assert!(errors[1].1.contains("gone.jpg"), "{errors:?}");
    }
}

/// An image file over `max_record_mb` is an error row naming it and is not read (a
/// multi-gigabyte "photo" — a video or disk image under an image's name — took its
/// size in memory, and one over 2 GiB overflowed the batch's offsets); the other files
/// of the folder are ingested, captioned or not.
#[test]
fn an_image_file_over_max_record_mb_is_an_error_row() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("scans");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(data_dir().join("photos/astronaut.png"), dir.join("astronaut.png")).unwrap();
    // A real PNG of about 1.5 MB, over a 1 MiB limit: noise does not compress. Made
    // here rather than taken from the held-out photos, which only the benchmark fetches
    // (a fresh CI clone has none).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise = ::image::RgbImage::from_fn(700, 700, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ::image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    noise.save(dir.join("raccoon face.png")).unwrap();
    assert!(std::fs::metadata(dir.join("raccoon face.png")).unwrap().len() > 1 << 20);
    for (format, with_captions) in [("image", false), ("images", true)] {
        if with_captions {
            std::fs::write(dir.join("captions.csv"), "file,caption\nastronaut.png,宇航员\nraccoon face.png,浣熊\n").unwrap();
        }
        let out = t.path().join(format);
        m6_ok(&["ingest", "--input", s(&dir), "--output", s(&out), "--format", format, "--set", "max_record_mb=1", "--quiet"]);
        let ds = Dataset::open(&out).unwrap();
        assert_eq!(ds.rows(), 1, "{format}");
        let errors: Vec<InputError> = ds.side("errors").unwrap().read_all().unwrap();
        assert_eq!(errors.len(), 1, "{format}: {errors:?}");
        assert!(errors[0].file.ends_with("raccoon face.png") && errors[0].kind == "too_large" && errors[0].message.contains("max_record_mb = 1"), "{:?}", errors[0]);
    }
}

/// Caption files as Chinese Windows editors write them: a sidecar in GBK is an error
/// row naming it (it failed the whole task, a thousand images, with an I/O error), a
/// UTF-8 byte-order mark is not caption text (sidecar) and does not make the first line
/// of captions.jsonl invalid JSON; a GBK line in captions.jsonl is an error row too.
#[test]
fn caption_files_in_gbk_or_with_a_byte_order_mark() {
    let t = tempfile::tempdir().unwrap();
    let photos = data_dir().join("photos");
    let side = t.path().join("in/sidecars");
    let list = t.path().join("in/list");
    std::fs::create_dir_all(&side).unwrap();
    std::fs::create_dir_all(&list).unwrap();
    for (dir, name) in [(&side, "camera.png"), (&side, "coins.png"), (&side, "horse.png"), (&list, "rocket.jpg"), (&list, "moon.png")] {
        std::fs::copy(photos.join(name), dir.join(name)).unwrap();
    }
    std::fs::write(side.join("camera.txt"), "拿着相机的人").unwrap();
    // "一堆硬币" in GBK.
    std::fs::write(side.join("coins.txt"), [0xD2, 0xBB, 0xB6, 0xD1, 0xD3, 0xB2, 0xB1, 0xD2]).unwrap();
    std::fs::write(side.join("horse.txt"), "\u{feff}一匹马\r\n").unwrap();
    let mut jsonl = "\u{feff}{\"file\": \"rocket.jpg\", \"caption\": \"火箭\"}\n".as_bytes().to_vec();
    jsonl.extend_from_slice(b"{\"file\": \"moon.png\", \"caption\": \"\xD4\xC2\xC1\xC1\"}\n");
    std::fs::write(list.join("captions.jsonl"), jsonl).unwrap();
    let out = t.path().join("pairs");
    m6_ok(&["ingest", "--input", s(&t.path().join("in")), "--output", s(&out), "--quiet"]);
    let ds = Dataset::open(&out).unwrap();
    let mut got: Vec<(String, String)> = ds.read_all::<Pair>().unwrap().into_iter().map(|p| (p.source_id.unwrap(), p.caption)).collect();
    got.sort();
    assert_eq!(got, [("list/rocket.jpg".to_string(), "火箭".to_string()), ("sidecars/camera.png".into(), "拿着相机的人".into()), ("sidecars/horse.png".into(), "一匹马".into())]);
    let mut errors: Vec<(String, String, String)> = ds.side("errors").unwrap().read_all::<InputError>().unwrap().into_iter().map(|e| (e.file, e.location, e.kind)).collect();
    errors.sort();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].0.ends_with("list/captions.jsonl") && errors[0].1 == "line 2" && errors[0].2 == "utf8", "{errors:?}");
    assert!(errors[1].0.ends_with("list/moon.png") && errors[1].2 == "no_caption", "{errors:?}");
    assert!(errors[2].0.ends_with("sidecars/coins.txt") && errors[2].2 == "utf8", "{errors:?}");
}

/// Each image's `source` is its own folder's name, whatever the chunking: a task's
/// rows all took the name of the task's first file's folder, so the column changed
/// with `images_per_task` (one folder's photos labelled with another's name).
#[test]
fn each_image_is_named_after_its_own_folder_at_any_task_size() {
    let t = tempfile::tempdir().unwrap();
    let photos = data_dir().join("photos");
    for (dir, name) in [("album/家", "coffee.png"), ("album/家", "horse.png"), ("album/trip", "rocket.jpg"), ("album/trip", "camera.png"), ("album/trip", "coins.png")] {
        std::fs::create_dir_all(t.path().join(dir)).unwrap();
        std::fs::copy(photos.join(name), t.path().join(dir).join(name)).unwrap();
    }
    let mut seen = vec![];
    for per_task in [1, 2, 1000] {
        let out = t.path().join(format!("images-{per_task}"));
        m6_ok(&["ingest", "--input", s(&t.path().join("album")), "--output", s(&out), "--set", &format!("images_per_task={per_task}"), "--quiet"]);
        let mut rows: Vec<(String, String)> = Dataset::open(&out).unwrap().read_all::<Image>().unwrap().into_iter().map(|r| (r.source_id.unwrap(), r.source)).collect();
        rows.sort();
        for (id, source) in &rows {
            assert_eq!(id.split('/').next().unwrap(), source, "images_per_task = {per_task}: {rows:?}");
        }
        seen.push(rows);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
}
