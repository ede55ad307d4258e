//! Issue 15's tests for every stage as a job of N processes, through the real binary on
//! real data: each stage run as 3 concurrent processes (`--task-index i --task-count 3`,
//! all spawned at once) writes the same dataset as 1 process, file for file; `stats`
//! and `sql` answer the same on both; `run all` from a pipeline.toml as 3 processes
//! matches 1; and kill -9 of one of the 3 at several moments, then a rerun of only
//! that index, completes the dataset with the clean run's bytes.
//!
//! Dedup's own 1-vs-3 and kill tests are in stages/dedup/tests/phases.rs (here dedup
//! runs inside `run all`); the crawl's 3-process host partitioning is in crawl.rs.
//!
//! "The same dataset" is compared as everything in the output folder (side datasets
//! and files like tokenize's tokenizer.json included, and no leftover temporaries),
//! by content, except what legitimately differs between runs: the manifest's `runs`
//! (one summary per process, with start times, durations and the process's index) and
//! each commit record's `seconds` (how long the task took). Lock files are left out:
//! they are empty and only coordinate processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use m6_pipeline::{BoxError, OutputSpec, RunOptions, Stage, Task, TaskOutput};
use m6_schemas::{Kind, Page};
use m6_tests::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------- comparing outputs

/// Every file under `dir` (relative path -> content digest), with the run-specific
/// fields of manifests and commit records taken out (see the file comment).
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in walk(dir) {
        let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == ".lock" || rel.starts_with("_locks/") || rel.contains("/_locks/") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let parent = p.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let content = if name == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            m.as_object_mut().unwrap().remove("runs");
            m.to_string()
        } else if parent == "_commits" && name.ends_with(".json") && !name.starts_with('.') {
            let mut c: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            c.as_object_mut().unwrap().remove("seconds");
            c.to_string()
        } else {
            blake3::hash(&bytes).to_hex().to_string()
        };
        out.insert(rel, content);
    }
    out
}

/// Asserts two output folders hold the same data, naming the files that differ.
fn assert_same(what: &str, one: &Path, other: &Path) {
    let (a, b) = (snapshot(one), snapshot(other));
    assert!(a.keys().any(|k| k.ends_with(".parquet")), "{what}: {} holds no shard", one.display());
    let only_a: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_b: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    let differ: Vec<String> = a.iter().filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v)).map(|(k, v)| format!("{k}:\n    {v}\n    {}", b[k])).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty() && differ.is_empty(),
        "{what}: {} and {} differ\nonly in the first: {only_a:?}\nonly in the second: {only_b:?}\ndiffering:\n{}",
        one.display(),
        other.display(),
        differ.join("\n")
    );
}

/// `stats --json` without what names the folder or the runs.
fn stats(dir: &Path) -> serde_json::Value {
    let mut j: serde_json::Value = serde_json::from_str(&m6_ok(&["stats", s(dir), "--json"])).unwrap();
    let o = j.as_object_mut().unwrap();
    o.remove("runs");
    for k in ["path", "dir", "dataset"] {
        o.remove(k);
    }
    j
}

fn sql(query: &str, table: &str, dir: &Path) -> String {
    m6_ok(&["sql", query, "--table", &format!("{table}={}", s(dir)), "--json"])
}

/// `stats` and `sql` give the same answers on both outputs (and find rows in them).
fn assert_same_answers(one: &Path, three: &Path, table: &str, queries: &[&str]) {
    let (a, b) = (stats(one), stats(three));
    assert!(a["rows"].as_u64().unwrap() > 0, "{a}");
    assert_eq!(a, b, "stats differ between the 1- and 3-process outputs");
    for q in queries {
        let (a, b) = (sql(q, table, one), sql(q, table, three));
        assert!(a.len() > 4, "{q}: {a}");
        assert_eq!(a, b, "{q}");
    }
}

// ---------------------------------------------------------------- running processes

/// Starts `m6corpus ARGS` without waiting for it.
fn spawn(args: &[String]) -> Child {
    Command::new(bin()).args(args).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// `args` plus this process's slice of 3, one worker thread each.
fn slice(args: &[&str], i: usize) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    v.extend(["--task-index".into(), i.to_string(), "--task-count".into(), "3".into(), "--threads".into(), "1".into(), "--quiet".into()]);
    v
}

/// Runs `m6corpus ARGS` as 3 processes started at once, and checks each did work.
fn run_three(args: &[&str]) {
    let children: Vec<Child> = (0..3).map(|i| spawn(&slice(args, i))).collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "process {i} of `{}` failed:\n{}", args.join(" "), stderr(&o));
    }
}

/// Runs `m6corpus ARGS` as 1 process of 1 thread.
fn run_one(args: &[&str]) {
    let mut v: Vec<&str> = args.to_vec();
    v.extend(["--threads", "1", "--quiet"]);
    m6_ok(&v);
}

/// The stage run as 1 process into `t/one-NAME` and as 3 into `t/three-NAME`; every
/// task of the plan ran, spread over all 3 processes.
fn one_and_three(t: &Path, name: &str, args: &[&str]) -> (PathBuf, PathBuf) {
    let (one, three) = (t.join(format!("one-{name}")), t.join(format!("three-{name}")));
    let with = |out: &Path| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        v.extend(["--output".into(), s(out).into()]);
        v
    };
    let a = with(&one);
    run_one(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let b = with(&three);
    run_three(&b.iter().map(String::as_str).collect::<Vec<_>>());
    let m = m6_pipeline::Manifest::load(&three).unwrap();
    let c = m.completeness.clone().unwrap();
    assert!(c.complete && c.planned >= 3, "{name}: {c:?}: fewer tasks than processes, so not every process had work");
    // Every process ran its slice (a process with no task would leave no run summary).
    let mut indexes: Vec<usize> = m.runs.iter().filter(|r| r.task_count == 3 && r.tasks_run > 0).map(|r| r.task_index).collect();
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2], "{name}: each of the 3 processes ran tasks");
    assert_same(name, &one, &three);
    (one, three)
}

// ---------------------------------------------------------------- real inputs

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `n` real poems over `files` JSONL files in `dir`.
fn poem_files(dir: &Path, files: usize, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let all = poems(n);
    for (i, chunk) in all.chunks(n.div_ceil(files)).enumerate() {
        write_lines(&dir.join(format!("part-{i:02}.jsonl")), &chunk.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    }
    dir.to_path_buf()
}

/// Plain-text files of real poems (one blank line between poems).
fn text_files(dir: &Path, files: usize, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let all = poems(n);
    for (i, chunk) in all.chunks(n.div_ceil(files)).enumerate() {
        let body: Vec<String> = chunk.iter().map(|p| format!("{}\n{}\n", p["title"].as_str().unwrap(), p["text"].as_str().unwrap())).collect();
        write_lines(&dir.join(format!("poems-{i:02}.txt")), &body);
    }
    dir.to_path_buf()
}

/// A folder of real photos with a caption file each (ingest makes `pair` rows).
const PHOTOS: [(&str, &str); 10] = [
    ("horse.png", "一匹奔跑的马的剪影"),
    ("moon.png", "月球表面的环形山"),
    ("page.png", "一页印刷的文字"),
    ("text.png", "写在石头上的文字"),
    ("coins.png", "桌上的一堆硬币"),
    ("camera.png", "拿着相机的摄影师"),
    ("cell.png", "显微镜下的细胞"),
    ("clock_motion.png", "运动模糊的时钟"),
    ("rocket.jpg", "发射台上的火箭"),
    ("brick.png", "一面砖墙的纹理"),
];

fn photo_folder(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, caption) in PHOTOS {
        std::fs::copy(data_dir().join("photos").join(name), dir.join(name)).unwrap();
        std::fs::write(dir.join(Path::new(name).with_extension("txt")), format!("{caption}\n")).unwrap();
    }
    dir.to_path_buf()
}

/// A stage with no input whose tasks each write one given list of page rows: how these
/// tests build a `page` dataset of several shards through the real pipeline writer.
struct PagesFixture(Mutex<BTreeMap<String, Vec<Page>>>);

impl Stage for PagesFixture {
    fn name(&self) -> &'static str {
        "fixture"
    }
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(Kind::Page))
    }
    fn plan(&self, _: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok(self.0.lock().unwrap().keys().map(|id| Task { id: id.clone(), inputs: vec![] }).collect())
    }
    fn process(&self, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let rows = self.0.lock().unwrap().remove(&task.id).unwrap_or_default();
        for chunk in rows.chunks(16) {
            out.write_rows(chunk)?;
        }
        Ok(())
    }
}

const HOST: &str = "http://handbook.test";

fn page(url: &str, content_type: &str, body: Vec<u8>) -> Page {
    Page {
        id: Page::make_id(url, Some(&body)),
        url: url.to_string(),
        status: Some(200),
        headers: vec![("content-type".to_string(), content_type.to_string())],
        content_type: Some(content_type.to_string()),
        body: Some(body),
        fetch_time: 1_700_000_000_000,
        source: "debian-handbook".into(),
        ..Default::default()
    }
}

/// Real Debian Handbook pages (zh-CN and zh-TW), each followed by the figures it shows
/// (as the crawler writes them), spread over `shards` shards.
fn handbook_pages(dir: &Path, shards: usize) -> PathBuf {
    let mut units: Vec<Vec<Page>> = vec![];
    for lang in ["zh-CN", "zh-TW"] {
        let root = data_dir().join("debian-handbook").join(lang);
        let files: Vec<PathBuf> = walk(&root).into_iter().filter(|p| p.parent() == Some(root.as_path()) && p.extension().is_some_and(|e| e == "html")).collect();
        // A third of the pages keeps the input small; every page with figures is kept.
        for (n, f) in files.iter().enumerate() {
            let html = std::fs::read_to_string(f).unwrap();
            let figures = html.contains("class=\"figure\"");
            if !figures && n % 3 != 0 {
                continue;
            }
            let url = format!("{HOST}/{lang}/{}", f.file_name().unwrap().to_string_lossy());
            let mut unit = vec![page(&url, "text/html; charset=UTF-8", html.clone().into_bytes())];
            for fig in html.split("<div class=\"figure\">").skip(1) {
                let body = &fig[..fig.find("</div>").unwrap_or(fig.len())];
                for src in body.split("src=\"").skip(1) {
                    let src = &src[..src.find('"').unwrap()];
                    if let Ok(bytes) = std::fs::read(root.join(src)) {
                        unit.push(page(&format!("{HOST}/{lang}/{src}"), "image/png", bytes));
                    }
                }
            }
            units.push(unit);
        }
    }
    let mut tasks: BTreeMap<String, Vec<Page>> = BTreeMap::new();
    for (i, unit) in units.into_iter().enumerate() {
        tasks.entry(m6_schemas::content_id(&[b"pages", &((i % shards) as u64).to_le_bytes()])).or_default().extend(unit);
    }
    let opts = RunOptions { progress: false, threads: 1, ..RunOptions::default() };
    m6_pipeline::run_stage(&PagesFixture(Mutex::new(tasks)), &[], dir, &opts).unwrap();
    dir.to_path_buf()
}

/// A WordPiece vocabulary trained on real poems.
fn vocab(t: &Path) -> PathBuf {
    let docs = t.join("vocab-docs");
    let input = poem_files(&t.join("vocab-poems"), 1, 1500);
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--quiet"]);
    let v = t.join("vocab.txt");
    m6_ok(&["tokenizer", "train", "--input", s(&docs), "--output", s(&v), "--vocab-size", "4000"]);
    v
}

// ---------------------------------------------------------------- 1 vs 3 processes

const DOC_QUERIES: [&str; 3] = [
    "SELECT count(*) AS n, sum(char_count) AS chars, min(id) AS lo, max(id) AS hi FROM t",
    "SELECT source, count(*) AS n FROM t GROUP BY source ORDER BY source",
    "SELECT id, char_count FROM t ORDER BY char_count DESC, id LIMIT 5",
];
const PAIR_QUERIES: [&str; 2] = ["SELECT count(*) AS n, sum(width * height) AS px, min(id) AS lo FROM t", "SELECT caption, width, height FROM t ORDER BY caption"];

#[test]
fn ingest_jsonl_text_and_an_image_folder_as_three_processes_match_one() {
    let t = tempfile::tempdir().unwrap();
    let jsonl = poem_files(&t.path().join("jsonl"), 6, 1200);
    let (one, three) = one_and_three(t.path(), "jsonl", &["ingest", "--input", s(&jsonl), "--source", "tang"]);
    assert_eq!(m6_pipeline::Manifest::load(&one).unwrap().rows(), 1200);
    assert_same_answers(&one, &three, "t", &DOC_QUERIES);

    let text = text_files(&t.path().join("text"), 5, 600);
    let (one, three) = one_and_three(t.path(), "text", &["ingest", "--input", s(&text)]);
    assert_same_answers(&one, &three, "t", &DOC_QUERIES);

    // Two images a task: 5 tasks.
    let photos = photo_folder(&t.path().join("photos"));
    let (one, three) = one_and_three(t.path(), "images", &["ingest", "--input", s(&photos), "--set", "images_per_task=2"]);
    assert_eq!(m6_pipeline::Manifest::load(&one).unwrap().rows(), PHOTOS.len() as u64);
    assert_same_answers(&one, &three, "t", &PAIR_QUERIES);
}

#[test]
fn extract_of_real_handbook_pages_as_three_processes_matches_one() {
    let t = tempfile::tempdir().unwrap();
    let pages = handbook_pages(&t.path().join("pages"), 6);
    let (one, three) = one_and_three(t.path(), "extract", &["extract", "--input", s(&pages)]);
    // The figures became pairs, in the side dataset compared above.
    let pairs = m6_pipeline::Manifest::load(&one.join("pairs")).unwrap().rows();
    assert!(pairs >= 10, "{pairs} pairs");
    assert_same_answers(&one, &three, "t", &DOC_QUERIES);
    assert_same_answers(&one.join("pairs"), &three.join("pairs"), "t", &PAIR_QUERIES);
}

#[test]
fn filter_of_text_and_images_as_three_processes_matches_one() {
    let t = tempfile::tempdir().unwrap();
    // Poems and handbook text (extracted), so text rules drop some rows.
    let docs = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&poem_files(&t.path().join("in"), 6, 1500)), "--output", s(&docs), "--quiet"]);
    let (one, three) = one_and_three(t.path(), "filter-docs", &["filter", "--input", s(&docs), "--set", "text.min_chars=40"]);
    assert!(m6_pipeline::Manifest::load(&one.join("rejects")).unwrap().rows() > 0, "no row was dropped, so the rejects were not compared");
    assert_same_answers(&one, &three, "t", &DOC_QUERIES);

    // Image rules on captioned photos: the small ones are dropped.
    let pairs = t.path().join("pairs");
    m6_ok(&["ingest", "--input", s(&photo_folder(&t.path().join("photos"))), "--output", s(&pairs), "--set", "images_per_task=2", "--quiet"]);
    let (one, three) = one_and_three(t.path(), "filter-pairs", &["filter", "--input", s(&pairs), "--set", "image.min_side=300"]);
    let kept = m6_pipeline::Manifest::load(&one).unwrap().rows();
    assert!(kept > 0 && kept < PHOTOS.len() as u64, "image rules kept {kept} of {}", PHOTOS.len());
    assert_same_answers(&one, &three, "t", &PAIR_QUERIES);
}

#[test]
fn tokenize_of_text_and_images_as_three_processes_matches_one() {
    let t = tempfile::tempdir().unwrap();
    let v = vocab(t.path());
    let docs = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&poem_files(&t.path().join("in"), 6, 900)), "--output", s(&docs), "--quiet"]);
    let (one, three) = one_and_three(t.path(), "tok-docs", &["tokenize", "--input", s(&docs), "--tokenizer", s(&v), "--max-len", "64"]);
    let q = ["SELECT count(*) AS n, sum(length) AS tokens, min(id) AS lo FROM t", "SELECT id, length FROM t ORDER BY length DESC, id LIMIT 5"];
    assert_same_answers(&one, &three, "t", &q);

    let pairs = t.path().join("pairs");
    m6_ok(&["ingest", "--input", s(&photo_folder(&t.path().join("photos"))), "--output", s(&pairs), "--set", "images_per_task=2", "--quiet"]);
    let (one, three) = one_and_three(
        t.path(),
        "tok-pairs",
        &["tokenize", "--input", s(&pairs), "--tokenizer", s(&v), "--max-len", "32", "--set", "image_size=64", "--set", "patch_size=16"],
    );
    assert_same_answers(&one, &three, "t", &q);
}

/// A pipeline over real poems and real handbook pages: ingest, extract, dedup of the
/// text and of the figure pairs, filter of both, tokenize of both.
fn pipeline(dir: &Path, poems: &Path, pages: &Path, vocab: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("pipeline.toml");
    let text = format!(
        "[corpus]\nthreads = 1\n\n\
         [ingest]\ninput = '{poems}'\noutput = 'docs'\n\n\
         [extract]\ninput = '{pages}'\noutput = 'web'\n\n\
         [[dedup]]\ninput = ['docs', 'web']\noutput = 'docs-dedup'\n\n\
         [[dedup]]\ninput = 'web/pairs'\noutput = 'pairs-dedup'\n\n\
         [[filter]]\ninput = 'docs-dedup'\noutput = 'docs-clean'\n\n\
         [[filter]]\ninput = 'pairs-dedup'\noutput = 'pairs-clean'\n\n\
         [tokenize]\ninput = ['docs-clean', 'pairs-clean']\noutput = 'samples'\ntokenizer = '{vocab}'\nmax_len = 64\nimage_size = 64\npatch_size = 16\n",
        poems = s(poems),
        pages = s(pages),
        vocab = s(vocab)
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

const PIPELINE_OUTPUTS: [&str; 7] = ["docs", "web", "docs-dedup", "pairs-dedup", "docs-clean", "pairs-clean", "samples"];

fn run_all(cfg: &Path, i: usize) -> Child {
    spawn(&["run", "all", "--config", s(cfg), "--task-index", &i.to_string(), "--task-count", "3", "--wait-timeout", "300", "--quiet"].map(String::from))
}

/// Real poems, with every fifth poem planted again in another file (so dedup drops rows
/// across tasks), and the handbook pages.
fn pipeline_inputs(t: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let dir = poem_files(&t.join("poems"), 6, 900);
    let copies: Vec<String> = poems(900).iter().step_by(5).map(|p| p.to_string()).collect();
    write_lines(&dir.join("part-99-copies.jsonl"), &copies);
    let pages = handbook_pages(&t.join("pages"), 4);
    (dir, pages, vocab(t))
}

#[test]
fn run_all_as_three_processes_matches_one() {
    let t = tempfile::tempdir().unwrap();
    let (poems, pages, v) = pipeline_inputs(t.path());
    let one = t.path().join("one");
    let cfg1 = pipeline(&one, &poems, &pages, &v);
    m6_ok(&["run", "all", "--config", s(&cfg1), "--quiet"]);
    let three = t.path().join("three");
    let cfg3 = pipeline(&three, &poems, &pages, &v);
    let children: Vec<Child> = (0..3).map(|i| run_all(&cfg3, i)).collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "run all process {i}:\n{}", stderr(&o));
    }
    assert!(m6_pipeline::Manifest::load(&one.join("docs-dedup/duplicates")).unwrap().rows() >= 150, "the planted copies were not found");
    for d in PIPELINE_OUTPUTS {
        assert_same(d, &one.join(d), &three.join(d));
    }
    assert_same_answers(&one.join("docs-clean"), &three.join("docs-clean"), "t", &DOC_QUERIES);
    assert_same_answers(&one.join("samples"), &three.join("samples"), "t", &["SELECT task, count(*) AS n, sum(length) AS tokens FROM t GROUP BY task ORDER BY task"]);
}

// ---------------------------------------------------------------- kill -9 and rerun

/// Waits for `c` to exit within `secs`, killing it and failing otherwise.
fn wait_ok(mut c: Child, secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            let o = c.wait_with_output().unwrap();
            assert!(st.success(), "{what} failed ({st}):\n{}", stderr(&o));
            return;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("{what} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts 3 processes with `start(i)`, kills process `victim` with SIGKILL `after` the
/// start, lets the others finish (or keep waiting, for `run all`), reruns only
/// `victim`'s index and waits for all. Returns whether the kill landed while the victim
/// was still running with work of its own left (`unfinished(out)` true at the kill).
fn kill_and_rerun(start: &dyn Fn(usize) -> Child, victim: usize, after: Duration, unfinished: &dyn Fn() -> bool) -> bool {
    let mut procs: Vec<Option<Child>> = (0..3).map(|i| Some(start(i))).collect();
    std::thread::sleep(after);
    let mut c = procs[victim].take().unwrap();
    let running = c.try_wait().unwrap().is_none();
    let _ = c.kill(); // SIGKILL; an error only when it had already exited
    let st = c.wait().unwrap();
    let landed = running && st.code().is_none() && unfinished();
    // Only the victim's index runs again; the others are still the first processes.
    procs[victim] = Some(start(victim));
    for (i, p) in procs.into_iter().enumerate() {
        wait_ok(p.unwrap(), 300, &format!("process {i}"));
    }
    landed
}

#[test]
fn kill_9_of_one_of_three_tokenize_processes_then_rerun_of_its_index_completes_it() {
    let t = tempfile::tempdir().unwrap();
    let v = vocab(t.path());
    let docs = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&poem_files(&t.path().join("in"), 9, 4500)), "--output", s(&docs), "--quiet"]);
    let args = |out: &Path, i: usize| slice(&["tokenize", "--input", s(&docs), "--output", s(out), "--tokenizer", s(&v), "--max-len", "64"], i);
    let clean = t.path().join("clean");
    let t0 = Instant::now();
    let procs: Vec<Child> = (0..3).map(|i| spawn(&args(&clean, i))).collect();
    for (i, p) in procs.into_iter().enumerate() {
        wait_ok(p, 300, &format!("clean process {i}"));
    }
    let full = t0.elapsed();
    let one = t.path().join("one");
    run_one(&["tokenize", "--input", s(&docs), "--output", s(&one), "--tokenizer", s(&v), "--max-len", "64"]);
    assert_same("tokenize 1 vs 3", &one, &clean);

    let mut landed = 0;
    for (k, frac) in [0.1, 0.3, 0.5, 0.75, 0.95].into_iter().enumerate() {
        let out = t.path().join(format!("killed{k}"));
        let victim = k % 3;
        // The victim had work left when the dataset was not complete at the kill.
        let incomplete = || m6(&["status", s(&out)]).status.code() != Some(0);
        if kill_and_rerun(&|i| spawn(&args(&out, i)), victim, full.mul_f64(frac), &incomplete) {
            landed += 1;
        }
        assert_same(&format!("kill of process {victim} at {frac} of the run"), &clean, &out);
        m6_ok(&["verify", s(&out)]);
    }
    assert!(landed > 0, "no kill landed before its process finished ({full:?} for a clean run)");
}

#[test]
fn kill_9_of_one_of_three_run_all_processes_then_rerun_of_its_index_completes_it() {
    let t = tempfile::tempdir().unwrap();
    let (poems, pages, v) = pipeline_inputs(t.path());
    let clean = t.path().join("clean");
    let cfg = pipeline(&clean, &poems, &pages, &v);
    let t0 = Instant::now();
    let procs: Vec<Child> = (0..3).map(|i| run_all(&cfg, i)).collect();
    for (i, p) in procs.into_iter().enumerate() {
        wait_ok(p, 300, &format!("clean run all {i}"));
    }
    let full = t0.elapsed();

    let mut landed = 0;
    for (k, frac) in [0.15, 0.45, 0.8].into_iter().enumerate() {
        let dir = t.path().join(format!("killed{k}"));
        let cfg = pipeline(&dir, &poems, &pages, &v);
        let victim = (k + 1) % 3;
        let incomplete = || m6(&["status", s(&dir.join("samples"))]).status.code() != Some(0);
        if kill_and_rerun(&|i| run_all(&cfg, i), victim, full.mul_f64(frac), &incomplete) {
            landed += 1;
        }
        for d in PIPELINE_OUTPUTS {
            assert_same(&format!("{d} after a kill of process {victim} at {frac} of the run"), &clean.join(d), &dir.join(d));
        }
    }
    assert!(landed > 0, "no kill landed before its process finished ({full:?} for a clean run)");
}
