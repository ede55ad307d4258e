//! Dedup as a job of N processes (issue 15): the phases sign / pairs / clusters / write,
//! run as 3 concurrent `m6corpus dedup --task-count 3` processes or phase by phase as
//! separate invocations, give output byte-identical to 1 process; kill -9 of one of
//! them and a rerun of that index completes it with nothing lost or doubled; the work
//! folder goes after a complete run unless `--keep-work`; and `--against OLD` drops a
//! new batch's duplicates of an earlier output without touching it.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use m6_schemas::{Document, Image, Signature};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// A near copy of `text` of one of several kinds (edits, truncation, boilerplate, reordering).
fn copy_of(text: &str, kind: u64, rng: &mut Lcg) -> String {
    let chars: Vec<char> = text.chars().collect();
    match kind % 4 {
        0 => {
            let mut c = chars.clone();
            for _ in 0..c.len() / 40 {
                let i = rng.next() as usize % c.len();
                c[i] = char::from_u32(0x4e00 + (rng.next() % 2000) as u32).unwrap();
            }
            c.into_iter().collect()
        }
        1 => chars[..chars.len() * 4 / 5].iter().collect(),
        2 => format!("首页 > 古诗文 > 正文\n{text}\n本站内容来自网络，版权归原作者所有。联系我们 | 关于本站"),
        _ => {
            let mut p: Vec<&str> = text.split("\n\n").collect();
            p.reverse();
            p.join("\n\n")
        }
    }
}

/// Real poems as 3-poem pages, a quarter of them with a planted copy (and some exact
/// copies), shuffled.
fn corpus(n: usize, seed: u64) -> Vec<Document> {
    let texts = articles(n, 3);
    let mut rng = Lcg(seed);
    let mut rows: Vec<Document> = texts.iter().enumerate().map(|(i, t)| doc("orig", &format!("o{i}"), t)).collect();
    for (i, t) in texts.iter().enumerate().filter(|(i, _)| i % 4 == 0) {
        let c = if i % 12 == 0 { t.clone() } else { copy_of(t, i as u64 / 4, &mut rng) };
        rows.push(doc("copy", &format!("c{i}"), &c));
    }
    for i in (1..rows.len()).rev() {
        let j = rng.next() as usize % (i + 1);
        rows.swap(i, j);
    }
    rows
}

fn m6corpus() -> PathBuf {
    let p = std::env::var_os("M6CORPUS_BIN").map(Into::into).unwrap_or_else(|| repo().join("target/release/m6corpus"));
    assert!(p.is_file(), "{} is missing: build it with `make build`", p.display());
    p
}

fn dedup_cmd(input: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(m6corpus());
    c.args(["dedup", "--quiet", "--threads", "1", "--input"]).arg(input).arg("--output").arg(out).args(extra).env("RUST_LOG", "warn");
    c
}

fn run_ok(mut c: Command) {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?} failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn spawn(input: &Path, out: &Path, i: usize, n: usize, extra: &[&str]) -> Child {
    let (i, n) = (i.to_string(), n.to_string());
    let mut args = vec!["--task-index", &i, "--task-count", &n];
    args.extend_from_slice(extra);
    dedup_cmd(input, out, &args).spawn().unwrap()
}

fn wait_ok(children: Vec<Child>) {
    for mut c in children {
        let s = c.wait().unwrap();
        assert!(s.success(), "a dedup process failed: {s}");
    }
}

/// Every data file of the output and its side datasets, with its blake3 (read from disk).
fn files(out: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for sub in [".", "duplicates", "signatures"] {
        let ds = m6_pipeline::Dataset::open(&out.join(sub)).unwrap();
        for s in ds.shards() {
            let bytes = std::fs::read(ds.shard_path(s)).unwrap();
            assert_eq!(blake3::hash(&bytes).to_hex().to_string(), s.blake3, "{} differs from its manifest", s.file);
            m.insert(format!("{sub}/{}", s.file), s.blake3.clone());
        }
    }
    m
}

fn verify_ok(out: &Path) {
    let o = Command::new(m6corpus()).arg("verify").arg(out).output().unwrap();
    assert!(o.status.success(), "verify: {}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn three_processes_and_separate_phases_match_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = corpus(600, 5);
    let input = write_dataset(&tmp.path().join("in"), &rows, 12);

    let one = tmp.path().join("one");
    run_ok(dedup_cmd(&input, &one, &[]));
    let want = files(&one);
    assert!(Dataset::open(&one.join("duplicates")).unwrap().rows() >= 120, "the planted copies were not found");
    assert!(!one.join("_work").exists(), "the work folder stays after a complete run");

    // Three processes launched at once complete the whole dedup together. The input
    // is small enough for one pairs unit by default: cut into 8 so that every process
    // takes pairs ranges (it changes no output).
    let three = tmp.path().join("three");
    wait_ok((0..3).map(|i| spawn(&input, &three, i, 3, &["--set", "pairs_units=8"])).collect());
    assert_eq!(files(&three), want);
    assert!(!three.join("_work").exists());
    verify_ok(&three);

    // Phase by phase, as a scheduler chains separate jobs (with other task counts).
    let phased = tmp.path().join("phased");
    // A phase before its predecessor fails, naming what is missing.
    let o = dedup_cmd(&input, &phased, &["--phase", "pairs"]).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sign phase has not finished") && err.contains("not signed yet"), "{err}");
    wait_ok((0..3).map(|i| spawn(&input, &phased, i, 3, &["--phase", "sign"])).collect());
    let units = ["--set", "pairs_units=16"];
    wait_ok((0..2).map(|i| spawn(&input, &phased, i, 2, &[&["--phase", "pairs"][..], &units].concat())).collect());
    // The write phase refuses to start before clustering.
    assert!(!dedup_cmd(&input, &phased, &[&["--phase", "write"][..], &units].concat()).output().unwrap().status.success());
    // Clustering with another cut of the pairs phase finds its ranges missing.
    let o = dedup_cmd(&input, &phased, &["--phase", "clusters"]).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("key ranges without pairs yet"), "{err}");
    run_ok(dedup_cmd(&input, &phased, &[&["--phase", "clusters"][..], &units].concat()));
    wait_ok((0..4).map(|i| spawn(&input, &phased, i, 4, &[&["--phase", "write", "--keep-work"][..], &units].concat())).collect());
    assert_eq!(std::fs::read_dir(phased.join("_work/pairs")).unwrap().count(), 16, "one pairs file per range");
    assert_eq!(files(&phased), want);
    assert!(phased.join("_work/clusters.json").is_file(), "--keep-work keeps the work folder");
}

#[test]
fn images_three_processes_match_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = vec![];
    for name in ["astronaut.png", "coffee.png", "chelsea.png", "camera.png", "horse.png", "rocket.jpg"] {
        let bytes = std::fs::read(data_dir().join("photos").join(name)).unwrap();
        let img = image::load_from_memory(&bytes).unwrap();
        let mut png = std::io::Cursor::new(vec![]);
        img.resize(img.width() / 2, img.height() / 2, image::imageops::FilterType::Triangle).write_to(&mut png, image::ImageFormat::Png).unwrap();
        rows.push(image_row("orig", name, bytes));
        rows.push(image_row("small", name, png.into_inner()));
    }
    // Copies whose tones went through a curve: the verifier settles some of them only
    // in its later steps (thorough alignment, tone matching), whose scores once reached
    // the audit rows from one process's memory of them, and not phase by phase.
    for name in ["camera.png", "coffee.png", "phantom.png", "clock_motion.png", "page.png", "microaneurysms.png"] {
        let img = image::load_from_memory(&std::fs::read(data_dir().join("photos").join(name)).unwrap()).unwrap();
        let curves: [(&str, fn(f32) -> f32); 3] = [("brighter", |v| v * 1.4), ("posterized", |v| ((v as u32) & 0xE0) as f32), ("gamma15", |v| 255.0 * (v / 255.0).powf(1.5))];
        for (kind, f) in curves {
            let mut jpg = std::io::Cursor::new(vec![]);
            curve(&img, f).to_rgb8().write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 90)).unwrap();
            rows.push(image_row(kind, name, jpg.into_inner()));
        }
    }
    let input = write_dataset(&tmp.path().join("in"), &rows, 5);
    let one = tmp.path().join("one");
    run_ok(dedup_cmd(&input, &one, &[]));
    // Every original is kept and every halved copy removed, as before the curved copies
    // came in; of those, at least 12 of 18 are removed too.
    let kept = Dataset::open(&one).unwrap().read_all::<Image>().unwrap();
    let firsts: Vec<&str> = kept.iter().map(|r| r.source.as_str()).filter(|s| ["orig", "small"].contains(s)).collect();
    assert_eq!(firsts, ["orig"; 6]);
    assert!(duplicates(&one).len() >= 18, "too few copies found for the comparison to mean anything");
    let three = tmp.path().join("three");
    wait_ok((0..3).map(|i| spawn(&input, &three, i, 3, &[])).collect());
    assert_eq!(files(&three), files(&one));
    // Phase by phase, each a process of its own (nothing remembered between them).
    let phased = tmp.path().join("phased");
    for ph in ["sign", "pairs", "clusters", "write"] {
        run_ok(dedup_cmd(&input, &phased, &["--phase", ph]));
    }
    assert_eq!(files(&phased), files(&one), "phase by phase");

    // A later batch against this output: a recompressed copy of a kept photo is
    // dropped in favour of the old row, a photo new to the corpus is kept.
    let coffee = image::load_from_memory(&std::fs::read(data_dir().join("photos/coffee.png")).unwrap()).unwrap();
    let mut jpg = std::io::Cursor::new(vec![]);
    coffee.to_rgb8().write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 50)).unwrap();
    let batch = vec![image_row("later", "coffee.jpg", jpg.into_inner()), image_row("later", "moon.png", std::fs::read(data_dir().join("photos/moon.png")).unwrap())];
    let new_in = write_dataset(&tmp.path().join("new_in"), &batch, 2);
    let later = tmp.path().join("later");
    run_ok(dedup_cmd(&new_in, &later, &["--against", one.to_str().unwrap()]));
    let kept: Vec<String> = Dataset::open(&later).unwrap().read_all::<Image>().unwrap().into_iter().map(|r| r.source_id.unwrap()).collect();
    assert_eq!(kept, ["moon.png"]);
    let d = duplicates(&later);
    assert_eq!(d.len(), 1);
    assert!(d[0].reason.starts_with("against_") && d[0].reason.ends_with("_image"), "{}", d[0].reason);
}

/// `--against` for images: the bodies in OLD/signatures (window hashes and thumbnail)
/// are enough to find a cropped, shrunk copy of an old photo without its bytes, and
/// signatures made with other image signing settings are refused.
#[test]
fn images_against_old_signatures_find_crops_and_other_image_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let png = |img: &image::DynamicImage| {
        let mut buf = std::io::Cursor::new(vec![]);
        img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
        buf.into_inner()
    };
    let names = ["astronaut.png", "coffee.png", "chelsea.png", "camera.png"];
    let photos: Vec<image::DynamicImage> = names.iter().map(|n| image::load_from_memory(&std::fs::read(data_dir().join("photos").join(n)).unwrap()).unwrap()).collect();
    let old_rows: Vec<Image> = names.iter().zip(&photos).map(|(n, p)| image_row("old", n, png(p))).collect();
    let old_in = write_dataset(&tmp.path().join("old_in"), &old_rows, 2);
    let old = tmp.path().join("old");
    run_ok(dedup_cmd(&old_in, &old, &[]));
    let old_ids: HashSet<String> = old_rows.iter().map(|r| r.id.clone()).collect();

    // New batch: 7% cropped (asymmetric) and shrunk copies of two old photos, and two
    // photos OLD does not hold.
    let crop = |img: &image::DynamicImage| {
        let (w, h) = (img.width(), img.height());
        let c = img.crop_imm(w * 7 / 100, h * 3 / 100, w - w * 7 / 100 - w * 2 / 100, h - h * 3 / 100 - h * 6 / 100);
        c.resize(c.width() * 2 / 3, c.height() * 2 / 3, image::imageops::FilterType::Triangle)
    };
    let mut new_rows = vec![image_row("new", "astronaut-crop", png(&crop(&photos[0]))), image_row("new", "coffee-crop", png(&crop(&photos[1])))];
    for n in ["horse.png", "rocket.jpg"] {
        new_rows.push(image_row("new", n, std::fs::read(data_dir().join("photos").join(n)).unwrap()));
    }
    let new_in = write_dataset(&tmp.path().join("new_in"), &new_rows, 2);
    let out = tmp.path().join("out");
    run_ok(dedup_cmd(&new_in, &out, &["--against", old.to_str().unwrap()]));
    let kept: HashSet<String> = Dataset::open(&out).unwrap().read_all::<Image>().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(kept, new_rows[2..].iter().map(|r| r.id.clone()).collect::<HashSet<_>>(), "only the photos OLD lacks are kept");
    let dups = duplicates(&out);
    assert_eq!(dups.len(), 2);
    for d in &dups {
        assert!(old_ids.contains(&d.kept_id), "{} removed for {}, not an old row", d.id, d.kept_id);
        assert_eq!(d.reason, "against_near_image");
        assert!(d.similarity > 0.8 && d.similarity < 1.0, "similarity {}", d.similarity);
    }

    // Other image signing settings: the old bodies cannot be compared, so refused.
    let o = dedup_cmd(&new_in, &tmp.path().join("out2"), &["--against", old.to_str().unwrap(), "--set", "image_exact=\"pixels\""]).output().unwrap();
    assert!(!o.status.success(), "signatures of other image settings were used");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("was signed with") && err.contains("m6-dedup-image-signature-v5"), "{err}");
}

#[test]
fn kill_9_of_one_process_then_rerun_of_its_index_completes_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = corpus(3000, 9);
    let input = write_dataset(&tmp.path().join("in"), &rows, 18);
    let clean = tmp.path().join("clean");
    let t0 = Instant::now();
    wait_ok((0..3).map(|i| spawn(&input, &clean, i, 3, &[])).collect());
    let full = t0.elapsed();
    let want = files(&clean);

    let mut kills = 0;
    for (k, frac) in [0.15, 0.35, 0.55, 0.75, 0.9].into_iter().enumerate() {
        let out = tmp.path().join(format!("killed{k}"));
        let victim = k % 3;
        let mut procs: Vec<Child> = (0..3).map(|i| spawn(&input, &out, i, 3, &[])).collect();
        std::thread::sleep(full.mul_f64(frac));
        if procs[victim].try_wait().unwrap().is_none() {
            procs[victim].kill().unwrap(); // SIGKILL
            kills += 1;
        }
        procs[victim].wait().unwrap();
        // The others wait for the dead one's units; only its index is run again.
        let again = spawn(&input, &out, victim, 3, &[]);
        procs[victim] = again;
        let deadline = Instant::now() + Duration::from_secs(120);
        for mut p in procs {
            loop {
                if let Some(s) = p.try_wait().unwrap() {
                    assert!(s.success(), "a process failed after the rerun");
                    break;
                }
                assert!(Instant::now() < deadline, "the job did not complete after the rerun");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        assert_eq!(files(&out), want, "kill at {frac} of the run");
        verify_ok(&out);
        let ids: Vec<String> = Dataset::open(&out).unwrap().read_all::<Document>().unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "a row was written twice");
    }
    assert!(kills > 0, "every process finished before it could be killed");
}

use m6_pipeline::Dataset;

fn checksums(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(p.clone(), blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string());
            }
        }
    }
    m
}

#[test]
fn against_old_drops_the_new_batch_duplicates_and_leaves_old_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = articles(700, 3);
    let (old_texts, rest) = texts.split_at(400);
    let (fresh, _) = rest.split_at(200);
    let old_rows: Vec<Document> = old_texts.iter().enumerate().map(|(i, t)| doc("crawl1", &format!("o{i}"), t)).collect();
    let old_in = write_dataset(&tmp.path().join("old_in"), &old_rows, 4);
    let old = tmp.path().join("old");
    run_ok(dedup_cmd(&old_in, &old, &[]));
    let sigs = Dataset::open(&old.join("signatures")).unwrap().read_all::<Signature>().unwrap();
    let old_kept: HashSet<String> = Dataset::open(&old).unwrap().read_all::<Document>().unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(sigs.iter().map(|s| s.id.clone()).collect::<HashSet<_>>(), old_kept, "one signature per kept row");
    let before = checksums(&old);

    // The new crawl: unique pages, exact and near copies of old pages, and a pair of
    // copies of one new page.
    let mut rng = Lcg(21);
    let mut new_rows = vec![];
    let mut unique = vec![];
    for (i, t) in fresh.iter().enumerate() {
        let d = doc("crawl2", &format!("n{i}"), t);
        unique.push(d.id.clone());
        new_rows.push(d);
    }
    let mut planted = vec![];
    for (i, t) in old_texts.iter().enumerate().filter(|(i, _)| i % 5 == 0 && old_kept.contains(&old_rows[*i].id)) {
        let c = if i % 10 == 0 { t.clone() } else { copy_of(t, i as u64, &mut rng) };
        let d = doc("crawl2", &format!("p{i}"), &c);
        planted.push(d.id.clone());
        new_rows.push(d);
    }
    // Truncated, so the longer original is the one kept.
    let twin = doc("crawl2", "twin", &copy_of(&fresh[0], 1, &mut rng));
    new_rows.push(twin.clone());
    let new_in = write_dataset(&tmp.path().join("new_in"), &new_rows, 3);

    let out = tmp.path().join("out");
    wait_ok((0..2).map(|i| spawn(&new_in, &out, i, 2, &["--against", old.to_str().unwrap()])).collect());
    assert_eq!(checksums(&old), before, "the earlier output changed");
    let kept: HashSet<String> = Dataset::open(&out).unwrap().read_all::<Document>().unwrap().into_iter().map(|d| d.id).collect();
    let dups = duplicates(&out);
    for p in &planted {
        let d = dups.iter().find(|d| &d.id == p).unwrap_or_else(|| panic!("planted copy {p} of an old page was kept"));
        assert!(old_kept.contains(&d.kept_id), "{p} removed for {}, not a kept old row", d.kept_id);
        assert!(d.reason.starts_with("against_"), "{}", d.reason);
    }
    for u in &unique {
        assert!(kept.contains(u), "a page unique to the batch was dropped: {:?}", dups.iter().find(|d| &d.id == u));
    }
    assert!(!kept.contains(&twin.id) && dups.iter().any(|d| d.id == twin.id && d.reason == "near_text"), "a duplicate inside the batch was kept");
    assert_eq!(kept.len() + dups.len(), new_rows.len());
    // Chained: the batch's own signatures are in its output, for the next batch.
    assert_eq!(Dataset::open(&out.join("signatures")).unwrap().rows(), kept.len() as u64);

    // Other signing settings cannot be compared: refused, naming the setting.
    let o = dedup_cmd(&new_in, &tmp.path().join("bad"), &["--against", old.to_str().unwrap(), "--set", "num_perm=64", "--set", "bands=16"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("signed with"), "{}", String::from_utf8_lossy(&o.stderr));
}
