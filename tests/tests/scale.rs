//! Issue 15's tests for every stage as a job of N processes, through the real binary on
//! real data: each stage run as 3 concurrent processes (`--task-index i --task-count 3`,
//! all spawned at once) writes the same dataset as 1 process, file for file; `stats`
//! and `sql` answer the same on both; `run all` from a pipeline.toml as 3 processes
//! matches 1; and kill -9 of one of the 3 at several moments, then a rerun of only
//! that index, completes the dataset with the clean run's bytes.
//!
//! Dedup's own 1-vs-3 and kill tests are in stages/dedup/tests/phases.rs (here dedup
//! runs inside `run all`); the crawl's host partitioning and its kill -9 test are in
//! crawl.rs, its 1-vs-3 comparison (against six loopback hosts serving the handbook)
//! is here: row for row and shard for shard, less each row's `fetch_time`, which
//! differs from crawl to crawl.
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
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl m6_pipeline::StageRun for &PagesFixture {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(Kind::Page))
    }
    fn plan(&mut self, _: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok(self.0.lock().unwrap().keys().map(|id| Task { id: id.clone(), inputs: vec![] }).collect())
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
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

/// Whether some task of `victim`'s slice of `out` has not committed (or the stage has
/// not even planned yet): the victim still had work of its own left.
fn victim_unfinished(out: &Path, victim: usize) -> bool {
    let Some(plan) = m6_pipeline::manifest::PlanFile::load(out).unwrap() else { return true };
    // The runner slices the plan's task list (sorted by id) by position modulo the count.
    plan.tasks.iter().enumerate().filter(|(i, _)| i % 3 == victim).any(|(_, t)| !m6_pipeline::manifest::CommitRecord::is_done(out, &t.id))
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
        let incomplete = || victim_unfinished(&out, victim);
        let hit = kill_and_rerun(&|i| spawn(&args(&out, i)), victim, full.mul_f64(frac), &incomplete);
        eprintln!("tokenize: kill of process {victim} at {frac} of {full:?}: landed before it finished: {hit}");
        landed += usize::from(hit);
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
        // The last stage's slice of the victim was not done.
        let incomplete = || victim_unfinished(&dir.join("samples"), victim);
        let hit = kill_and_rerun(&|i| run_all(&cfg, i), victim, full.mul_f64(frac), &incomplete);
        eprintln!("run all: kill of process {victim} at {frac} of {full:?}: landed before it finished: {hit}");
        landed += usize::from(hit);
        for d in PIPELINE_OUTPUTS {
            assert_same(&format!("{d} after a kill of process {victim} at {frac} of the run"), &clean.join(d), &dir.join(d));
        }
    }
    assert!(landed > 0, "no kill landed before its process finished ({full:?} for a clean run)");
}

// ---------------------------------------------------------------- crawl, 1 vs 3

/// A static web server on `ip`: the real zh-CN Debian Handbook (pages and their
/// figures), a robots.txt, and answers without a Date header, so two crawls of it get
/// the same bytes.
fn handbook_server(ip: &str) -> String {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let root = data_dir().join("debian-handbook/zh-CN");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Write};
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap().to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let (status, ct, body) = if path == "/robots.txt" {
                    ("200 OK", "text/plain", b"User-agent: *\nDisallow: /private/\n".to_vec())
                } else {
                    let file = root.join(path.trim_start_matches('/'));
                    let ct = if path.ends_with(".png") { "image/png" } else { "text/html; charset=UTF-8" };
                    match std::fs::read(&file) {
                        Ok(b) if !path.contains("..") => ("200 OK", ct, b),
                        _ => ("404 Not Found", "text/html", b"<html><body>404</body></html>".to_vec()),
                    }
                };
                let head = format!("HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(&body)).and_then(|_| conn.flush());
            });
        }
    });
    format!("http://{addr}")
}

/// A crawl output by content: as [`snapshot`], but the rows' `fetch_time` (when each
/// page was fetched) is the one thing in the shards that differs between two crawls,
/// so shards are compared by their rows less that column, and the manifests' and
/// commit records' shard checksums and sizes (which cover it) are left out. The
/// crawler's work state (`_crawl/`: journals and robots.txt log, with fetch times) is
/// left out too.
fn crawl_snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn strip_shards(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                if o.contains_key("blake3") && o.contains_key("file") {
                    o.remove("blake3");
                    o.remove("bytes");
                }
                o.remove("bytes_out");
                for (_, x) in o.iter_mut() {
                    strip_shards(x);
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_shards),
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for (rel, content) in snapshot(dir) {
        if rel.starts_with("_crawl/") {
            continue;
        }
        let p = dir.join(&rel);
        let content = if rel.ends_with(".parquet") {
            let mut rows = String::new();
            for b in m6_pipeline::read_parquet(&p, None, 1024).unwrap() {
                let mut b = b.unwrap();
                if let Ok(i) = b.schema().index_of("fetch_time") {
                    b.remove_column(i);
                }
                rows.push_str(&format!("{b:?}"));
            }
            blake3::hash(rows.as_bytes()).to_hex().to_string()
        } else if rel.ends_with("manifest.json") || rel.starts_with("_commits/") {
            let mut v: serde_json::Value = serde_json::from_str(&content).unwrap();
            strip_shards(&mut v);
            v.to_string()
        } else {
            content
        };
        out.insert(rel, content);
    }
    out
}

/// Six hosts serving the real handbook, crawled from two seed pages each (their links
/// at depth 1 and their figures too) by 1 process into `t/one` and by 3 into `t/three`.
/// `host_partitions = 3` (one partition a process; partitions hash the host's IP, so
/// which hosts land together is fixed) and `round_size = 16`, so each task writes
/// several rounds.
fn crawl_one_and_three(t: &Path) -> (PathBuf, PathBuf) {
    let hosts: Vec<String> = (1..=6).map(|i| handbook_server(&format!("127.0.0.{i}"))).collect();
    let seeds = t.join("seeds.txt");
    let pages = ["sect.apt-get.html", "sect.config-printing.html", "sect.backup.html", "sect.apt-cache.html", "sect.computer-layers.html", "sect.automatic-upgrades.html"];
    let lines: Vec<String> = hosts.iter().enumerate().flat_map(|(i, h)| [format!("{h}/{}", pages[i]), format!("{h}/{}", pages[(i + 2) % 6])]).collect();
    write_lines(&seeds, &lines);
    #[rustfmt::skip]
    let args = [
        "crawl", "--input", s(&seeds), "--allow-private", "127.0.0.0/8", "--max-depth", "1",
        "--set", "per_host_delay_ms=0", "--set", "host_partitions=3", "--set", "round_size=16",
    ];
    let (one, three) = (t.join("one"), t.join("three"));
    let with = |out: &Path| -> Vec<String> { args.iter().map(|a| a.to_string()).chain(["--output".to_string(), s(out).to_string()]).collect() };
    run_one(&with(&one).iter().map(String::as_str).collect::<Vec<_>>());
    run_three(&with(&three).iter().map(String::as_str).collect::<Vec<_>>());
    let m = m6_pipeline::Manifest::load(&one).unwrap();
    let images = m6_pipeline::Manifest::load(&one.join("images")).unwrap().rows();
    assert!(m.rows() >= 100 && m.shards.len() >= 6 && images >= 5, "{} rows in {} shards, {images} images", m.rows(), m.shards.len());
    let m3 = m6_pipeline::Manifest::load(&three).unwrap();
    assert!(m3.completeness.as_ref().unwrap().complete);
    let mut indexes: Vec<usize> = m3.runs.iter().filter(|r| r.rows_out > 0).map(|r| r.task_index).collect();
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2], "each of the 3 processes crawled hosts");
    (one, three)
}

/// Every page row by URL (less `fetch_time`) and every image row by URL; an embedded
/// image's `depth` and `page_url` (which page it follows) are checked by the
/// shard-for-shard test below.
fn crawl_rows(dir: &Path) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let ds = m6_pipeline::Dataset::open(dir).unwrap();
    let mut pages = BTreeMap::new();
    for mut p in ds.read_all::<Page>().unwrap() {
        p.fetch_time = 0;
        if p.content_type.as_deref().is_some_and(|c| c.starts_with("image/")) && p.depth > 0 {
            p.depth = 1;
        }
        assert!(pages.insert(p.url.clone(), format!("{p:?}")).is_none(), "{} has two rows", p.url);
    }
    let mut images = BTreeMap::new();
    for mut i in m6_pipeline::Dataset::open(&dir.join("images")).unwrap().read_all::<m6_schemas::Image>().unwrap() {
        i.page_url = None;
        assert!(images.insert(i.url.clone().unwrap(), format!("{i:?}")).is_none(), "{:?} has two image rows", i.url);
    }
    (pages, images)
}

#[test]
fn crawl_of_six_hosts_as_three_processes_fetches_and_writes_the_same_rows_as_one() {
    let t = tempfile::tempdir().unwrap();
    let (one, three) = crawl_one_and_three(t.path());
    let (a, b) = (crawl_rows(&one), crawl_rows(&three));
    assert!(a.0.len() >= 100, "{} pages", a.0.len());
    let differ: Vec<&String> = a.0.keys().chain(b.0.keys()).filter(|k| a.0.get(*k) != b.0.get(*k)).collect();
    assert!(differ.is_empty(), "page rows differ between the 1- and 3-process crawls: {differ:?}");
    let differ: Vec<&String> = a.1.keys().chain(b.1.keys()).filter(|k| a.1.get(*k) != b.1.get(*k)).collect();
    assert!(differ.is_empty(), "image rows differ between the 1- and 3-process crawls: {differ:?}");
    // The same tasks and rounds committed, into shards of the same names.
    let names = |d: &Path| -> Vec<String> { crawl_snapshot(d).into_keys().collect() };
    assert_eq!(names(&one), names(&three));
    // stats and sql: the same answers, but for the shards' sizes in bytes (fetch times
    // compress differently).
    let stats_less_bytes = |d: &Path| {
        let mut j = stats(d);
        j.as_object_mut().unwrap().remove("bytes");
        j.as_object_mut().unwrap().remove("shard_bytes");
        j
    };
    assert_eq!(stats_less_bytes(&one), stats_less_bytes(&three));
    let q = "SELECT count(*) AS n, count(DISTINCT url) AS urls, sum(length(body)) AS bytes, sum(depth) AS depths FROM t WHERE content_type NOT LIKE 'image/%'";
    assert_eq!(sql(q, "t", &one), sql(q, "t", &three));
}

/// The crawl's output, shard for shard (less `fetch_time`). An image several pages of
/// a task show (the handbook's banner logos) is fetched once, by whichever page's fetch
/// reaches it first; its rows used to follow that page, so they moved between rounds'
/// shards from one crawl to the next; they now follow the first page in write order.
#[test]
fn crawl_of_six_hosts_as_three_processes_matches_one_shard_for_shard() {
    let t = tempfile::tempdir().unwrap();
    let (one, three) = crawl_one_and_three(t.path());
    let (a, b) = (crawl_snapshot(&one), crawl_snapshot(&three));
    let differ: Vec<&String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).collect();
    assert!(differ.is_empty(), "the 1- and 3-process crawls differ in {differ:?}");
}
