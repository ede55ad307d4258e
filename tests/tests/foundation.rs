//! End-to-end checks of the foundation (issue 2) through the real binary: ingest of
//! every input format, verify, resume after SIGKILL, task slicing, pyarrow
//! compatibility of every shard kind, and malformed input reporting.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use m6_pipeline::{Dataset, Manifest, OutputSpec, RunOptions, Stage, Task, TaskOutput};
use m6_schemas::*;
use m6_tests::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Splits `n` real poems over `files` JSONL files in `dir`.
fn poem_files(dir: &Path, files: usize, n: usize) -> Vec<serde_json::Value> {
    std::fs::create_dir_all(dir).unwrap();
    let poems = poems(n);
    for (i, chunk) in poems.chunks(n.div_ceil(files)).enumerate() {
        let mut f = std::fs::File::create(dir.join(format!("part-{i:04}.jsonl"))).unwrap();
        for p in chunk {
            writeln!(f, "{}", p).unwrap();
        }
    }
    poems
}

fn shard_set(dir: &Path) -> Vec<(String, u64, String)> {
    let m = Manifest::load(dir).unwrap();
    m.shards.iter().map(|s| (s.file.clone(), s.rows, s.blake3.clone())).collect()
}

#[test]
fn jsonl_ingest_keeps_every_field_and_verifies() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    let poems = poem_files(&input, 3, 300);
    let out = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&out), "--source", "tang", "--quiet"]);
    let docs: Vec<Document> = Dataset::open(&out).unwrap().read_all().unwrap();
    assert_eq!(docs.len(), poems.len());
    let by_sid: std::collections::HashMap<String, &Document> = docs.iter().map(|d| (d.source_id.clone().unwrap(), d)).collect();
    for p in &poems {
        let d = by_sid[p["id"].as_str().unwrap()];
        assert_eq!(d.text, p["text"].as_str().unwrap());
        assert_eq!(d.title.as_deref(), p["title"].as_str());
        assert_eq!(d.source, "tang");
        assert_eq!(d.char_count as usize, d.text.chars().count());
        let meta: serde_json::Value = serde_json::from_str(d.meta.as_deref().unwrap()).unwrap();
        assert_eq!(meta["author"], p["author"], "unknown fields are kept in meta");
        assert_eq!(d.id, Document::make_id("tang", d.source_id.as_deref(), None, &d.text));
    }
    let v = m6_ok(&["verify", s(&out)]);
    assert!(v.contains(": ok"), "{v}");
}

#[test]
fn verify_catches_a_flipped_byte_and_a_truncated_shard() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    poem_files(&input, 2, 200);
    let out = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&out), "--quiet"]);
    let m = Manifest::load(&out).unwrap();
    assert_eq!(m.shards.len(), 2);

    let flipped = out.join(&m.shards[0].file);
    let mut bytes = std::fs::read(&flipped).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&flipped, &bytes).unwrap();
    let r = m6(&["verify", s(&out)]);
    assert!(!r.status.success());
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains(&m.shards[0].file) && stdout.contains("blake3"), "{stdout}");
    bytes[mid] ^= 0x01;
    std::fs::write(&flipped, &bytes).unwrap();
    m6_ok(&["verify", s(&out)]);

    let truncated = out.join(&m.shards[1].file);
    let len = std::fs::metadata(&truncated).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&truncated).unwrap().set_len(len - 100).unwrap();
    let r = m6(&["verify", s(&out)]);
    assert!(!r.status.success());
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains(&m.shards[1].file) && stdout.contains("truncated"), "{stdout}");
}

#[test]
fn sigkill_mid_run_then_rerun_gives_exactly_the_uninterrupted_output() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    poem_files(&input, 120, 24_000);
    let reference = t.path().join("reference");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&reference), "--threads", "1", "--quiet"]);
    let expected = shard_set(&reference);
    assert_eq!(expected.len(), 120);

    let out = t.path().join("killed");
    let mut child = Command::new(bin())
        .args(["ingest", "--input", s(&input), "--output", s(&out), "--threads", "1", "--quiet"])
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    let commits = out.join("_commits");
    let started = Instant::now();
    let done_at_kill = loop {
        let n = std::fs::read_dir(&commits).map(|d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json")).count()).unwrap_or(0);
        if n >= 10 {
            child.kill().unwrap(); // SIGKILL
            break n;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "ingest made no progress");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.wait().unwrap();
    assert!(done_at_kill < 120, "the kill came after the run finished; the test proved nothing");
    // What the killed run left is a valid (possibly partial) dataset.
    let partial = m6(&["verify", s(&out)]);
    assert!(partial.status.success(), "{}", String::from_utf8_lossy(&partial.stdout));

    let rerun = m6_ok(&["ingest", "--input", s(&input), "--output", s(&out), "--threads", "2", "--quiet", "--json"]);
    let summary: serde_json::Value = serde_json::from_str(rerun.trim()).unwrap();
    assert!(summary["tasks_skipped"].as_u64().unwrap() >= 10, "{summary}");
    assert_eq!(shard_set(&out), expected, "same shards, same bytes as an uninterrupted run");
    // The poems themselves repeat (the same poem, id and text in two places), so rows
    // are compared as a multiset with the uninterrupted run's.
    let ids = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = Dataset::open(dir).unwrap().read_all::<Document>().unwrap().into_iter().map(|d| d.id).collect();
        v.sort();
        v
    };
    let got = ids(&out);
    assert_eq!(got.len(), 24_000, "no row lost or duplicated");
    assert_eq!(got, ids(&reference));
    let leftovers: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.starts_with(".tmp-")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    m6_ok(&["verify", s(&out)]);
}

#[test]
fn task_slices_run_concurrently_cover_every_task_exactly_once() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    poem_files(&input, 17, 3_400);
    let reference = t.path().join("reference");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&reference), "--quiet"]);

    let out = t.path().join("sliced");
    let children: Vec<_> = (0..3)
        .map(|i| {
            Command::new(bin())
                .args(["ingest", "--input", s(&input), "--output", s(&out), "--task-index", &i.to_string(), "--task-count", "3", "--threads", "1", "--quiet", "--json"])
                .env("RUST_LOG", "error")
                .output()
        })
        .collect();
    let mut run = 0;
    for c in children {
        let c = c.unwrap();
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
        let summary: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&c.stdout).trim()).unwrap();
        assert_eq!(summary["tasks_skipped"], 0);
        run += summary["tasks_run"].as_u64().unwrap();
    }
    assert_eq!(run, 17, "each task run by exactly one slice");
    assert_eq!(shard_set(&out), shard_set(&reference));
    m6_ok(&["verify", s(&out)]);
    let bad = m6(&["ingest", "--input", s(&input), "--output", s(&out), "--task-index", "3", "--task-count", "3"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--task-index"));
}

#[test]
fn malformed_jsonl_lines_are_reported_with_file_and_line_and_the_rest_ingests() {
    let t = tempfile::tempdir().unwrap();
    let poems = poems(4);
    let input = t.path().join("bad.jsonl");
    let lines = [
        poems[0].to_string(),
        "{\"text\": \"未完".to_string(),
        "{\"title\": \"無文\"}".to_string(),
        poems[1].to_string(),
        "[1, 2]".to_string(),
        String::new(),
        poems[2].to_string(),
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = t.path().join("docs");
    let r = m6(&["ingest", "--input", s(&input), "--output", s(&out), "--quiet", "--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("bad.jsonl") && stderr.contains("line 2"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&r.stdout).trim()).unwrap();
    assert_eq!(summary["counts"]["malformed"], 3);
    let docs: Vec<Document> = Dataset::open(&out).unwrap().read_all().unwrap();
    assert_eq!(docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(), [0, 1, 2].map(|i| poems[i]["text"].as_str().unwrap()));
    let errors: Vec<InputError> = Dataset::open(&out).unwrap().side("errors").unwrap().read_all().unwrap();
    let got: Vec<(String, String)> = errors.iter().map(|e| (e.location.clone(), e.kind.clone())).collect();
    assert_eq!(got, [("line 2".into(), "json".into()), ("line 3".into(), "missing_text".into()), ("line 5".into(), "not_object".into())]);
    assert!(errors.iter().all(|e| e.file.ends_with("bad.jsonl")));
}

/// A JSONL file saved by a Windows editor starts with a UTF-8 byte-order mark: its
/// first record is read like the others (it was an invalid-JSON error row), and a BOM
/// anywhere else is still an error.
#[test]
fn a_byte_order_mark_before_the_first_jsonl_record_is_not_an_error() {
    let t = tempfile::tempdir().unwrap();
    let poems = poems(3);
    let input = t.path().join("notepad.jsonl");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(format!("{}\n{}\n\u{feff}{}\n", poems[0], poems[1], poems[2]).as_bytes());
    std::fs::write(&input, bytes).unwrap();
    let out = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&out), "--quiet"]);
    let docs: Vec<Document> = Dataset::open(&out).unwrap().read_all().unwrap();
    assert_eq!(docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(), [0, 1].map(|i| poems[i]["text"].as_str().unwrap()));
    let errors: Vec<InputError> = Dataset::open(&out).unwrap().side("errors").unwrap().read_all().unwrap();
    assert_eq!(errors.iter().map(|e| (e.location.as_str(), e.kind.as_str())).collect::<Vec<_>>(), [("line 3", "json")]);
}

/// A JSONL line with an unpaired UTF-16 surrogate escape (Python's `json.dumps` of
/// text read with `surrogateescape`) is kept, the surrogate read as U+FFFD and the
/// repair counted; a surrogate pair is the character it encodes.
#[test]
fn jsonl_lines_with_lone_surrogates_are_kept() {
    let t = tempfile::tempdir().unwrap();
    let poems = poems(2);
    let text = |i: usize| poems[i]["text"].as_str().unwrap().to_string();
    let input = t.path().join("py.jsonl");
    // The poems as JSON string bodies (their newlines escaped), a surrogate written next to each.
    let body = |i: usize| {
        let q = serde_json::to_string(&text(i)).unwrap();
        q[1..q.len() - 1].to_string()
    };
    let lines = [format!(r#"{{"id": "a", "text": "{}\udcb3"}}"#, body(0)), format!(r#"{{"id": "b", "text": "\ud83d\ude00{}"}}"#, body(1))];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = t.path().join("docs");
    let summary: serde_json::Value = serde_json::from_str(&m6_ok(&["ingest", "--input", s(&input), "--output", s(&out), "--quiet", "--json"])).unwrap();
    let docs: Vec<Document> = Dataset::open(&out).unwrap().read_all().unwrap();
    assert_eq!(docs.iter().map(|d| d.text.clone()).collect::<Vec<_>>(), [format!("{}\u{fffd}", text(0)), format!("\u{1f600}{}", text(1))]);
    assert_eq!(summary["counts"]["repaired.lone_surrogate"], 1, "{summary}");
    assert!(summary["counts"].get("malformed").is_none(), "{summary}");
}

/// Chinese text files saved in a legacy encoding are read, not error rows: a GBK and a
/// Big5 `.txt` by detection (`encoding = "auto"`, the default), a UTF-16 one by its
/// byte-order mark, and a GBK JSONL file (whose lines are not guessed one by one) with
/// `encoding = "gbk"`, which also reads a GBK caption sidecar too short to guess.
#[test]
fn gbk_big5_and_utf16_text_files_are_read() {
    let t = tempfile::tempdir().unwrap();
    let enc = |e: &'static encoding_rs::Encoding, s: &str| {
        let (b, _, bad) = e.encode(s);
        assert!(!bad, "{s} is not all in {}", e.name());
        b.into_owned()
    };
    // The poems are in traditional characters: Big5 as they are, GBK simplified. Rare
    // characters are in neither, so the first four poems each encoding holds are taken.
    let fits = |e: &'static encoding_rs::Encoding, s: &str| !e.encode(s).2;
    let all: Vec<String> = poems(200).iter().map(|p| p["text"].as_str().unwrap().to_string()).collect();
    let pick: Vec<String> = all.iter().filter(|p| fits(encoding_rs::BIG5, p) && fits(encoding_rs::GBK, &m6_text::opencc::t2s(p))).take(4).cloned().collect();
    assert_eq!(pick.len(), 4);
    let text = |i: usize| pick[i].clone();
    let simplified = m6_text::opencc::t2s(&text(0));
    let txt = t.path().join("txt");
    std::fs::create_dir_all(&txt).unwrap();
    std::fs::write(txt.join("gbk.txt"), enc(encoding_rs::GBK, &simplified)).unwrap();
    std::fs::write(txt.join("big5.txt"), enc(encoding_rs::BIG5, &text(1))).unwrap();
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(text(2).encode_utf16().flat_map(|u| u.to_le_bytes()));
    std::fs::write(txt.join("notepad.txt"), utf16).unwrap();
    let out = t.path().join("docs");
    let summary: serde_json::Value = serde_json::from_str(&m6_ok(&["ingest", "--input", s(&txt), "--output", s(&out), "--quiet", "--json"])).unwrap();
    let mut docs: Vec<(String, String)> = Dataset::open(&out).unwrap().read_all::<Document>().unwrap().into_iter().map(|d| (d.source_id.unwrap(), d.text)).collect();
    docs.sort();
    assert_eq!(docs, [("big5.txt".to_string(), text(1)), ("gbk.txt".into(), simplified.clone()), ("notepad.txt".into(), text(2))]);
    assert_eq!(summary["counts"]["charset.gbk"], 1, "{summary}");
    assert_eq!(summary["counts"]["charset.big5"], 1, "{summary}");

    let jsonl = t.path().join("gbk.jsonl");
    let line = serde_json::json!({"id": "p3", "text": m6_text::opencc::t2s(&text(3))}).to_string();
    std::fs::write(&jsonl, enc(encoding_rs::GBK, &format!("{line}\n"))).unwrap();
    let out = t.path().join("jsonl-auto");
    m6_ok(&["ingest", "--input", s(&jsonl), "--output", s(&out), "--quiet"]);
    let errors: Vec<InputError> = Dataset::open(&out).unwrap().side("errors").unwrap().read_all().unwrap();
    assert!(errors.len() == 1 && errors[0].kind == "utf8" && errors[0].message.contains("set `encoding`"), "{errors:?}");
    let out = t.path().join("jsonl-gbk");
    m6_ok(&["ingest", "--input", s(&jsonl), "--output", s(&out), "--quiet", "--set", "encoding=\"gbk\""]);
    let docs: Vec<Document> = Dataset::open(&out).unwrap().read_all().unwrap();
    assert_eq!(docs.iter().map(|d| d.text.clone()).collect::<Vec<_>>(), [m6_text::opencc::t2s(&text(3))]);

    let pics = t.path().join("pics");
    std::fs::create_dir_all(&pics).unwrap();
    std::fs::copy(data_dir().join("photos/coffee.png"), pics.join("coffee.png")).unwrap();
    std::fs::write(pics.join("coffee.txt"), enc(encoding_rs::GBK, "一杯咖啡")).unwrap();
    let out = t.path().join("pairs");
    m6_ok(&["ingest", "--input", s(&pics), "--output", s(&out), "--quiet", "--set", "encoding=\"gbk\""]);
    let pairs: Vec<Pair> = Dataset::open(&out).unwrap().read_all().unwrap();
    assert_eq!(pairs.iter().map(|p| p.caption.as_str()).collect::<Vec<_>>(), ["一杯咖啡"]);
    let bad = m6(&["ingest", "--input", s(&pics), "--output", s(&t.path().join("x")), "--quiet", "--set", "encoding=\"klingon\""]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("not an encoding label"));
}

fn warc_record(url: &str, http: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{}>\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2024-03-01T12:00:00Z\r\nContent-Type: application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n",
        &content_id(&[url.as_bytes()])[..32],
        http.len()
    )
    .into_bytes();
    r.extend_from_slice(http);
    r.extend_from_slice(b"\r\n\r\n");
    r
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn warc_of_real_pages_with_a_corrupt_record_keeps_the_good_ones() {
    let t = tempfile::tempdir().unwrap();
    let pages = ["apt.html", "basic-configuration.html", "network-services.html", "security.html"];
    let html_dir = data_dir().join("debian-handbook/zh-CN");
    let mut file = vec![];
    let mut bad_offset = 0;
    for (i, p) in pages.iter().enumerate() {
        let body = std::fs::read(html_dir.join(p)).unwrap();
        let mut http = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        http.extend_from_slice(&body);
        let mut member = gz(&warc_record(&format!("http://handbook.example/{p}"), &http));
        if i == 2 {
            bad_offset = file.len();
            let n = member.len();
            member[n / 2] ^= 0xff;
            member[n / 2 + 1] ^= 0x55;
        }
        file.extend_from_slice(&member);
    }
    let input = t.path().join("crawl.warc.gz");
    std::fs::write(&input, &file).unwrap();
    let out = t.path().join("pages");
    let r = m6(&["ingest", "--input", s(&input), "--output", s(&out), "--quiet", "--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let got: Vec<Page> = Dataset::open(&out).unwrap().read_all().unwrap();
    assert_eq!(got.len(), 3);
    for page in &got {
        let name = page.url.rsplit('/').next().unwrap();
        assert_eq!(page.body.as_deref().unwrap(), std::fs::read(html_dir.join(name)).unwrap(), "{name}");
        assert_eq!(page.status, Some(200));
        assert_eq!(page.content_type.as_deref(), Some("text/html; charset=UTF-8"));
        assert_eq!(page.fetch_time, 1_709_294_400_000);
    }
    let errors: Vec<InputError> = Dataset::open(&out).unwrap().side("errors").unwrap().read_all().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].location, format!("offset {bad_offset}"));
    assert!(errors[0].file.ends_with("crawl.warc.gz"));
}

#[test]
fn image_folder_with_sidecars_and_a_captions_csv() {
    let t = tempfile::tempdir().unwrap();
    let photos = data_dir().join("photos");
    let a = t.path().join("imgs/a");
    let b = t.path().join("imgs/b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::copy(photos.join("astronaut.png"), a.join("astronaut.png")).unwrap();
    std::fs::write(a.join("astronaut.txt"), "宇航员的肖像\n").unwrap();
    std::fs::copy(photos.join("coffee.png"), a.join("coffee.png")).unwrap(); // no caption
    std::fs::copy(photos.join("chelsea.png"), b.join("chelsea.png")).unwrap();
    std::fs::copy(photos.join("rocket.jpg"), b.join("rocket.jpg")).unwrap();
    std::fs::write(b.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(b.join("captions.csv"), "file,caption\nchelsea.png,一只猫\nrocket.jpg,火箭发射\nbroken.png,坏图\n").unwrap();
    let out = t.path().join("pairs");
    let r = m6(&["ingest", "--input", s(&t.path().join("imgs")), "--output", s(&out), "--quiet", "--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let mut pairs: Vec<Pair> = Dataset::open(&out).unwrap().read_all().unwrap();
    pairs.sort_by(|x, y| x.caption.cmp(&y.caption));
    let got: Vec<(&str, &str, u32, u32, &str)> = pairs.iter().map(|p| (p.caption.as_str(), p.caption_origin.as_str(), p.width, p.height, p.format.as_str())).collect();
    assert_eq!(
        got,
        [("一只猫", "captions.csv", 451, 300, "png"), ("宇航员的肖像", "sidecar", 512, 512, "png"), ("火箭发射", "captions.csv", 640, 427, "jpeg")]
    );
    assert_eq!(pairs[1].image_bytes, std::fs::read(photos.join("astronaut.png")).unwrap());
    let mut kinds: Vec<String> = Dataset::open(&out).unwrap().side("errors").unwrap().read_all::<InputError>().unwrap().into_iter().map(|e| e.kind).collect();
    kinds.sort();
    assert_eq!(kinds, ["image_decode", "no_caption"]);
}

#[test]
fn pipeline_toml_runs_ingest_and_rejects_unknown_fields() {
    let t = tempfile::tempdir().unwrap();
    poem_files(&t.path().join("raw"), 2, 100);
    let cfg = t.path().join("pipeline.toml");
    std::fs::write(&cfg, "[corpus]\nthreads = 1\n\n[ingest]\ninput = \"raw\"\noutput = \"corpus/docs\"\nsource = \"tang\"\n").unwrap();
    m6_ok(&["run", "all", "--config", s(&cfg), "--quiet"]);
    let ds = Dataset::open(&t.path().join("corpus/docs")).unwrap();
    assert_eq!(ds.rows(), 100);
    assert_eq!(ds.manifest().runs.len(), 1);
    assert_eq!(ds.manifest().runs[0].rows_out, 100);
    std::fs::write(&cfg, "[ingest]\ninput = \"raw\"\noutput = \"corpus/docs2\"\nsorce = \"x\"\n").unwrap();
    let r = m6(&["run", "ingest", "--config", s(&cfg)]);
    assert!(!r.status.success());
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(e.contains("[ingest]") && e.contains("sorce"), "{e}");
}

/// Writes fixed rows of one kind through the real runner.
struct Fixed(Kind, RecordBatch);
impl Stage for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl m6_pipeline::StageRun for &Fixed {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, m6_pipeline::BoxError> {
        Ok(OutputSpec::new(self.0))
    }
    fn plan(&mut self, _: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok(vec![Task { id: content_id(&[self.0.name().as_bytes()]), inputs: vec![] }])
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, _: &Task, out: &mut TaskOutput) -> Result<(), m6_pipeline::BoxError> {
        out.write(&self.1)?;
        Ok(())
    }
}
use arrow::array::RecordBatch;

#[test]
fn pyarrow_reads_every_shard_kind() {
    let t = tempfile::tempdir().unwrap();
    let poems = poems(3);
    let text = poems[0]["text"].as_str().unwrap().to_string();
    let png = std::fs::read(data_dir().join("photos/coffee.png")).unwrap();
    let batches: Vec<(Kind, RecordBatch)> = vec![
        (Kind::Page, Page::to_batch(&[Page { id: "p".into(), url: "http://x/".into(), status: Some(200), headers: vec![("content-type".into(), "text/html".into())], body: Some(text.clone().into_bytes()), fetch_time: 5, source: "s".into(), ..Default::default() }]).unwrap()),
        (Kind::Document, Document::to_batch(&[Document::new("tang", Some("1".into()), None, None, text.clone(), None)]).unwrap()),
        (Kind::Image, Image::to_batch(&[Image { id: Image::make_id(&png), bytes: png.clone(), width: 400, height: 400, format: "png".into(), source: "s".into(), ..Default::default() }]).unwrap()),
        (Kind::Pair, Pair::to_batch(&[Pair { id: "q".into(), image_id: "i".into(), image_bytes: png.clone(), caption: text.clone(), caption_origin: "alt".into(), source: "s".into(), ..Default::default() }]).unwrap()),
        (Kind::Sample, Sample::to_batch(&[Sample { id: "x".into(), task: "text".into(), input_ids: vec![2, 101, 3], length: 3, image_patches: None, source_ids: vec!["a".into()] }]).unwrap()),
        (Kind::Duplicate, Duplicate::to_batch(&[Duplicate { id: "d".into(), source: "s".into(), cluster_id: "c".into(), kept_id: "k".into(), similarity: 0.875, reason: "near_text".into(), ..Default::default() }]).unwrap()),
        (Kind::Reject, Reject::to_batch(&[Reject { id: "r".into(), source: "s".into(), rule: "min_chars".into(), value: 3.0, threshold: 5.0, snippet: Some(text.clone()), ..Default::default() }]).unwrap()),
        (Kind::Error, InputError::to_batch(&[InputError { file: "f".into(), location: "line 1".into(), kind: "json".into(), message: "m".into() }]).unwrap()),
    ];
    let mut dirs = vec![];
    for (kind, b) in batches {
        let dir = t.path().join(kind.name());
        m6_pipeline::run_stage(&Fixed(kind, b), &[], &dir, &RunOptions { progress: false, ..Default::default() }).unwrap();
        dirs.push((kind, dir));
    }
    let script = r#"
import json, sys, pyarrow.parquet as pq
for kind, d in json.loads(sys.argv[1]):
    m = json.load(open(d + "/manifest.json"))
    assert m["kind"] == kind, (m["kind"], kind)
    for s in m["shards"]:
        t = pq.read_table(d + "/" + s["file"])
        assert t.num_rows == s["rows"], (kind, t.num_rows)
        md = t.schema.metadata
        assert md[b"m6corpus.kind"].decode() == kind
        print(kind, t.num_rows, ",".join(t.column_names), json.dumps(t.to_pylist()[0], default=lambda v: len(v) if isinstance(v, (bytes, bytearray)) else str(v), ensure_ascii=False))
"#;
    let arg = serde_json::to_string(&dirs.iter().map(|(k, d)| (k.name(), d.display().to_string())).collect::<Vec<_>>()).unwrap();
    let out = Command::new(venv_python()).args(["-c", script, &arg]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 8, "{stdout}");
    assert!(stdout.contains(&format!("\"text\": \"{}\"", text.replace('\n', "\\n"))), "{stdout}");
    assert!(stdout.contains("\"input_ids\": [2, 101, 3]"), "{stdout}");
    assert!(stdout.contains("\"headers\": [[\"content-type\", \"text/html\"]]"), "{stdout}");
}
