//! End-to-end checks of issue 14 (points 1, 2, 7 and parts of 8) and issue 15's
//! dataset completeness, through the real binary on real poems: checksums on read,
//! reruns keyed on input checksums and settings, per-task locks, config validation,
//! skipped-file warnings, full-disk errors, `status`, `--allow-partial` and `--wait`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use m6_pipeline::{Dataset, Manifest};
use m6_schemas::*;
use m6_tests::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_poems(path: &Path, poems: &[serde_json::Value]) {
    let mut f = std::fs::File::create(path).unwrap();
    for p in poems {
        writeln!(f, "{p}").unwrap();
    }
}

/// Splits `poems` over `files` JSONL files in `dir`.
fn poem_files(dir: &Path, files: usize, poems: &[serde_json::Value]) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, chunk) in poems.chunks(poems.len().div_ceil(files)).enumerate() {
        write_poems(&dir.join(format!("part-{i:04}.jsonl")), chunk);
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn docs(dir: &Path) -> Vec<Document> {
    Dataset::open(dir).unwrap().read_all().unwrap()
}

/// The texts of a document dataset, sorted: a multiset, so a stale copy of a row
/// shows up as an extra element (real poems repeat ids, so ids cannot tell).
fn texts(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = docs(dir).into_iter().map(|d| d.text).collect();
    v.sort();
    v
}

/// A committed output with no rows, or no output at all: nothing was written.
fn assert_wrote_nothing(out: &Path) {
    if Manifest::exists(out) {
        let m = Manifest::load(out).unwrap();
        assert_eq!(m.rows(), 0, "{}: rows were committed from a corrupt input", out.display());
        m6_ok(&["verify", s(out)]);
    }
}

#[test]
fn a_flipped_byte_in_a_shard_fails_every_reading_stage_by_name() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("poems.jsonl");
    write_poems(&input, &poems(3000));
    let docs = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--quiet"]);
    let vocab = t.path().join("vocab.txt");
    m6_ok(&["tokenizer", "train", "--input", s(&docs), "--output", s(&vocab), "--vocab-size", "3000"]);
    let m = Manifest::load(&docs).unwrap();
    assert_eq!(m.shards.len(), 1);
    let shard = m.shards[0].file.clone();
    let path = docs.join(&shard);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    let runs: Vec<(&str, Vec<String>, Option<PathBuf>)> = vec![
        ("filter", vec!["filter".into(), "--input".into(), s(&docs).into(), "--output".into(), s(&t.path().join("f")).into(), "--quiet".into()], Some(t.path().join("f"))),
        ("dedup", vec!["dedup".into(), "--input".into(), s(&docs).into(), "--output".into(), s(&t.path().join("d")).into(), "--quiet".into()], Some(t.path().join("d"))),
        (
            "tokenize",
            vec!["tokenize".into(), "--input".into(), s(&docs).into(), "--output".into(), s(&t.path().join("k")).into(), "--tokenizer".into(), s(&vocab).into(), "--quiet".into()],
            Some(t.path().join("k")),
        ),
        ("stats", vec!["stats".into(), s(&docs).into()], None),
        ("sql", vec!["sql".into(), "SELECT count(*), sum(char_count) FROM docs".into(), "--table".into(), format!("docs={}", s(&docs))], None),
        ("report", vec!["report".into(), s(&docs).into(), "--output".into(), s(&t.path().join("r.html")).into()], None),
    ];
    for (name, args, out) in runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = m6(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{name} accepted a corrupt shard:\n{err}");
        assert!(err.contains(&shard), "{name}: the error does not name the shard {shard}:\n{err}");
        assert!(err.contains("blake3") && err.contains("corrupt"), "{name}: {err}");
        if let Some(out) = out {
            assert_wrote_nothing(&out);
        }
    }
    assert!(!t.path().join("r.html").exists());
    // verify agrees, and a repaired shard reads again.
    assert!(!m6(&["verify", s(&docs)]).status.success());
    bytes[mid] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&t.path().join("f")), "--quiet"]);
    m6_ok(&["stats", s(&docs)]);
}

#[test]
fn a_grown_input_rerun_into_the_same_outputs_keeps_no_stale_rows() {
    let t = tempfile::tempdir().unwrap();
    let all = poems(1200);
    let input = t.path().join("in");
    poem_files(&input, 2, &all[..600]);
    let (docs, out) = (t.path().join("docs"), t.path().join("filtered"));
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--quiet"]);
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&out), "--quiet"]);
    let first = texts(&out);

    // The input grows: both files get more poems (different sizes, so new ingest tasks).
    poem_files(&input, 2, &all);
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--quiet"]);
    assert_eq!(texts(&docs).len(), 1200, "the re-ingest replaced the old rows instead of adding to them");
    let summary: serde_json::Value = serde_json::from_str(m6_ok(&["filter", "--input", s(&docs), "--output", s(&out), "--quiet", "--json"]).trim()).unwrap();
    assert_eq!(summary["tasks_run"], 2, "{summary}");
    let after = texts(&out);
    assert!(after.len() > first.len(), "the grown input's rows were filtered");
    // Exactly what a fresh run into an empty folder gives: no row twice.
    let fresh = t.path().join("fresh");
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&fresh), "--quiet"]);
    assert_eq!(after, texts(&fresh));
    m6_ok(&["verify", s(&out)]);
    let orphans = m6_ok(&["verify", s(&out), "--json"]);
    assert!(orphans.contains("\"orphans\":[]"), "old shards were left behind: {orphans}");

    // Other settings redo every task rather than keeping rows made under the old ones.
    let summary: serde_json::Value =
        serde_json::from_str(m6_ok(&["filter", "--input", s(&docs), "--output", s(&out), "--set", "text.min_chars=40", "--quiet", "--json"]).trim()).unwrap();
    assert_eq!(summary["tasks_run"], 2, "{summary}");
    let strict = t.path().join("strict");
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&strict), "--set", "text.min_chars=40", "--quiet"]);
    assert_eq!(texts(&out), texts(&strict));
    assert!(texts(&strict).len() < after.len());
    // Unchanged inputs and settings: nothing redone.
    let summary: serde_json::Value =
        serde_json::from_str(m6_ok(&["filter", "--input", s(&docs), "--output", s(&out), "--set", "text.min_chars=40", "--quiet", "--json"]).trim()).unwrap();
    assert_eq!((summary["tasks_run"].as_u64(), summary["tasks_skipped"].as_u64()), (Some(0), Some(2)), "{summary}");
}

#[test]
fn an_input_edited_without_changing_its_size_is_reprocessed() {
    let t = tempfile::tempdir().unwrap();
    let poems = poems(200);
    let input = t.path().join("poems.jsonl");
    write_poems(&input, &poems);
    let docs = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--quiet"]);
    let before = texts(&docs);
    // One character replaced by another of the same UTF-8 length.
    let text = std::fs::read_to_string(&input).unwrap();
    let poem = poems[100]["text"].as_str().unwrap();
    let target = poem.chars().next().unwrap();
    let replacement = if target == '春' { '秋' } else { '春' };
    assert_eq!(target.len_utf8(), replacement.len_utf8());
    // The file holds the text JSON-escaped; its first line appears verbatim.
    let at = text.find(poem.split('\n').next().unwrap()).unwrap();
    let edited = format!("{}{}{}", &text[..at], replacement, &text[at + target.len_utf8()..]);
    assert_eq!(edited.len(), text.len());
    let mtime = std::fs::metadata(&input).unwrap().modified().unwrap();
    std::fs::write(&input, &edited).unwrap();
    // Even with the old modification time, the content decides.
    std::fs::File::options().write(true).open(&input).unwrap().set_modified(mtime).unwrap();
    let summary: serde_json::Value = serde_json::from_str(m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--quiet", "--json"]).trim()).unwrap();
    assert_eq!(summary["tasks_run"], 1, "{summary}");
    let after = texts(&docs);
    assert_eq!(after.len(), before.len(), "no row twice");
    let new_text = format!("{replacement}{}", &poem[target.len_utf8()..]);
    assert!(after.contains(&new_text), "the edit reached the output");
    let removed: Vec<&String> = before.iter().filter(|t| !after.contains(t)).collect();
    assert_eq!(removed, [&poem.to_string()], "only the edited poem changed");
}

#[test]
fn an_edited_caption_file_is_reingested() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("imgs");
    photo_folder(&dir, &["astronaut.png", "chelsea.png"]);
    std::fs::write(dir.join("astronaut.txt"), "宇航员的肖像\n").unwrap();
    std::fs::write(dir.join("captions.csv"), "file,caption\nchelsea.png,一只猫\n").unwrap();
    let out = t.path().join("pairs");
    let captions = |out: &Path| -> Vec<String> {
        let mut v: Vec<String> = Dataset::open(out).unwrap().read_all::<Pair>().unwrap().into_iter().map(|p| p.caption).collect();
        v.sort();
        v
    };
    m6_ok(&["ingest", "--input", s(&dir), "--output", s(&out), "--quiet"]);
    assert_eq!(captions(&out), ["一只猫", "宇航员的肖像"]);
    // Same sizes, other words: the images are unchanged, the captions are not.
    std::fs::write(dir.join("astronaut.txt"), "太空人的肖像\n").unwrap();
    std::fs::write(dir.join("captions.csv"), "file,caption\nchelsea.png,一只狗\n").unwrap();
    let summary: serde_json::Value = serde_json::from_str(m6_ok(&["ingest", "--input", s(&dir), "--output", s(&out), "--quiet", "--json"]).trim()).unwrap();
    assert_eq!(summary["tasks_run"], 1, "{summary}");
    assert_eq!(captions(&out), ["一只狗", "太空人的肖像"]);
    m6_ok(&["verify", s(&out)]);
}

#[test]
fn two_concurrent_identical_runs_leave_one_complete_verified_dataset() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    poem_files(&input, 8, &poems(4000));
    let docs = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--quiet", "--shard-mb", "1"]);
    let reference = t.path().join("reference");
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&reference), "--quiet"]);
    let expected = Dataset::open(&reference).unwrap().rows();
    for round in 0..3 {
        for (stage, input, out) in [("ingest", &input, t.path().join(format!("i{round}"))), ("filter", &docs, t.path().join(format!("f{round}")))] {
            let spawn = || {
                Command::new(bin())
                    .args([stage, "--input", s(input), "--output", s(&out), "--threads", "2", "--quiet", "--json"])
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            };
            let (a, b) = (spawn(), spawn());
            let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
            assert!(a.status.success(), "{stage}: {}", stderr(&a));
            assert!(b.status.success(), "{stage}: {}", stderr(&b));
            let run = |o: &std::process::Output| -> u64 { serde_json::from_str::<serde_json::Value>(String::from_utf8_lossy(&o.stdout).trim()).unwrap()["tasks_run"].as_u64().unwrap() };
            let tasks = Manifest::load(&out).unwrap().completeness.unwrap().planned;
            assert_eq!(run(&a) + run(&b), tasks, "{stage}: every task run by exactly one of the two");
            m6_ok(&["verify", s(&out)]);
            assert_eq!(m6(&["status", s(&out)]).status.code(), Some(0));
            if stage == "filter" {
                assert_eq!(Dataset::open(&out).unwrap().rows(), expected);
            } else {
                assert_eq!(Dataset::open(&out).unwrap().rows(), 4000);
            }
        }
    }
}

#[test]
fn misspelt_sections_and_bad_zstd_levels_are_refused_before_any_work() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("poems.jsonl");
    write_poems(&input, &poems(50));
    let cfg = t.path().join("p.toml");
    std::fs::write(&cfg, "[filtr]\nmin_chars = 3\n").unwrap();
    let out = t.path().join("out");
    let o = m6(&["ingest", "--input", s(&input), "--output", s(&out), "--config", s(&cfg)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown section [filtr]") && stderr(&o).contains("[filter]"), "{}", stderr(&o));
    std::fs::write(&cfg, "[corpus]\nzstd_level = 99\n").unwrap();
    let o = m6(&["ingest", "--input", s(&input), "--output", s(&out), "--config", s(&cfg)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("zstd_level = 99"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing is written before the config is refused");
}

#[test]
fn files_ingest_does_not_read_are_warned_about_and_counted() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    write_poems(&input.join("a.jsonl"), &poems(20));
    std::fs::write(input.join("b.csv"), "id,text\n1,x\n").unwrap();
    std::fs::write(input.join("notes.md"), "# notes\n").unwrap();
    let out = t.path().join("docs");
    let o = m6(&["ingest", "--input", s(&input), "--output", s(&out), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("skipped") && err.contains("b.csv") && err.contains("notes.md"), "{err}");
    let m = Manifest::load(&out).unwrap();
    assert_eq!(m.properties["ingest.skipped_files"], 2);
    assert_eq!(m.rows(), 20);
    // The run summary says so too, in JSON and in text.
    let again = t.path().join("docs-json");
    let j: serde_json::Value = serde_json::from_str(m6_ok(&["ingest", "--input", s(&input), "--output", s(&again), "--quiet", "--json"]).trim()).unwrap();
    assert_eq!(j["properties"]["ingest.skipped_files"], 2, "{j}");
    assert_eq!(j["rows_out"], 20, "{j}");
    let text = m6_ok(&["ingest", "--input", s(&input), "--output", s(&t.path().join("docs-text")), "--quiet"]);
    assert!(text.contains("ingest.skipped_files: 2"), "{text}");
    // Past the ten files named, every kind skipped is still named, with its count.
    for i in 0..12 {
        std::fs::write(input.join(format!("scan{i:02}.tif")), b"II*\0").unwrap();
    }
    std::fs::write(input.join("README"), "x").unwrap();
    let many = t.path().join("docs-many");
    let text = m6_ok(&["ingest", "--input", s(&input), "--output", s(&many), "--quiet"]);
    let m = Manifest::load(&many).unwrap();
    assert_eq!(m.properties["ingest.skipped_files"], 15);
    assert_eq!(m.properties["ingest.skipped_examples"].as_array().unwrap().len(), 10);
    assert_eq!(m.properties["ingest.skipped_extensions"], serde_json::json!({"": 1, "csv": 1, "md": 1, "tif": 12}));
    assert!(text.contains("ingest.skipped_extensions: (no extension) 1, csv 1, md 1, tif 12"), "{text}");
}

#[test]
fn a_full_disk_error_names_the_task_that_failed() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("poems.jsonl");
    write_poems(&input, &poems(3000));
    let mnt = t.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    // A 256 KiB tmpfs in a private mount namespace (no root needed where user
    // namespaces are allowed); the shard does not fit, the manifest does.
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs {mnt} || exit 77; exec {bin} ingest --input {input} --output {mnt}/out --quiet",
        mnt = s(&mnt),
        bin = s(&bin()),
        input = s(&input)
    );
    let o = Command::new("unshare").args(["-rm", "sh", "-c", &script]).env("RUST_LOG", "warn").output();
    let Ok(o) = o else {
        eprintln!("skipped: unshare is not available");
        return;
    };
    if o.status.code() == Some(77) {
        eprintln!("skipped: cannot mount a tmpfs here: {}", stderr(&o));
        return;
    }
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("error: task ") && err.contains("(poems.jsonl)"), "the error names the task and its input: {err}");
}

/// Starts `m6corpus ARGS` without waiting for it.
fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(bin()).args(args).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

#[test]
fn a_stage_refuses_an_incomplete_input_naming_the_missing_tasks() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    poem_files(&input, 4, &poems(800));
    let docs = t.path().join("docs");
    // Only one of two task slices runs.
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--task-index", "0", "--task-count", "2", "--quiet"]);
    let m = Manifest::load(&docs).unwrap();
    let c = m.completeness.clone().unwrap();
    assert_eq!((c.stage.as_str(), c.planned, c.committed, c.complete), ("ingest", 4, 2, false));

    let o = m6(&["status", s(&docs)]);
    assert_eq!(o.status.code(), Some(3));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("INCOMPLETE") && text.contains("2/4 tasks"), "{text}");
    let st: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&m6(&["status", s(&docs), "--json"]).stdout).trim()).unwrap();
    assert_eq!((st["planned"].as_u64(), st["committed"].as_u64(), st["complete"].as_bool()), (Some(4), Some(2), Some(false)));
    let missing: Vec<String> = st["missing"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(missing.len(), 2);

    let out = t.path().join("f");
    let o = m6(&["filter", "--input", s(&docs), "--output", s(&out), "--quiet"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("incomplete") && err.contains("2 of 4 tasks"), "{err}");
    for m in &missing {
        assert!(err.contains(m.as_str()), "the error names {m}: {err}");
    }
    // Which files are missing is named too.
    let named = (0..4).filter(|i| err.contains(&format!("part-{i:04}.jsonl"))).count();
    assert_eq!(named, 2, "{err}");
    assert!(!out.exists());

    // --allow-partial reads what is there.
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&out), "--allow-partial", "--quiet"]);
    assert!(Dataset::open(&out).unwrap().rows() > 0);

    // The other slice completes the dataset; the stage then reads it all.
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--task-index", "1", "--task-count", "2", "--quiet"]);
    assert_eq!(m6(&["status", s(&docs)]).status.code(), Some(0));
    let full = t.path().join("f2");
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&full), "--quiet"]);
    let st: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&m6(&["status", s(&full), "--json"]).stdout).trim()).unwrap();
    assert_eq!((st["complete"].as_bool(), st["stage"].as_str()), (Some(true), Some("filter")));
    // A side dataset follows its main one.
    assert_eq!(m6(&["status", s(&full.join("rejects"))]).status.code(), Some(0));
}

#[test]
fn wait_returns_once_the_last_task_commits() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    poem_files(&input, 6, &poems(3000));
    let docs = t.path().join("docs");
    let out = t.path().join("f");
    // The consumers start first, before the input dataset exists.
    let consumer = spawn(&["filter", "--input", s(&docs), "--output", s(&out), "--wait", "--wait-timeout", "120", "--quiet", "--json"]);
    let watcher = spawn(&["status", s(&docs), "--wait", "--wait-timeout", "120", "--json"]);
    std::thread::sleep(Duration::from_millis(700));
    // Slice 0 runs alone first: the consumers must still be waiting after it.
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--task-index", "0", "--task-count", "2", "--threads", "1", "--quiet"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!out.join("_plan.json").exists(), "the consumer started before its input was complete");
    let t0 = Instant::now();
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--task-index", "1", "--task-count", "2", "--threads", "1", "--quiet"]);
    let w = watcher.wait_with_output().unwrap();
    assert!(w.status.success(), "{}", stderr(&w));
    let st: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&w.stdout).trim()).unwrap();
    assert_eq!((st["complete"].as_bool(), st["planned"].as_u64()), (Some(true), Some(6)));
    let c = consumer.wait_with_output().unwrap();
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(t0.elapsed() < Duration::from_secs(60));
    let summary: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&c.stdout).trim()).unwrap();
    assert_eq!(summary["rows_in"], 3000, "the consumer read the whole input: {summary}");
    assert_eq!(summary["tasks_run"], 6);

    // A timeout gives up with the missing tasks named.
    let partial = t.path().join("partial");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&partial), "--task-index", "0", "--task-count", "3", "--quiet"]);
    let o = m6(&["filter", "--input", s(&partial), "--output", s(&t.path().join("g")), "--wait", "--wait-timeout", "1", "--quiet"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("4 of 6 tasks"), "{}", stderr(&o));
    assert_eq!(m6(&["status", s(&partial), "--wait", "--wait-timeout", "1"]).status.code(), Some(3));
}

#[test]
fn run_all_over_two_processes_waits_between_stages() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    poem_files(&input, 6, &poems(3000));
    let cfg = t.path().join("pipeline.toml");
    std::fs::write(&cfg, "[ingest]\ninput = 'in'\noutput = 'docs'\n[filter]\ninput = 'docs'\noutput = 'filtered'\n").unwrap();
    // Process 1 starts late: process 0 must wait for its ingest slice before filtering.
    let p0 = spawn(&["run", "all", "--config", s(&cfg), "--task-index", "0", "--task-count", "2", "--quiet", "--json"]);
    std::thread::sleep(Duration::from_millis(1500));
    let p1 = spawn(&["run", "all", "--config", s(&cfg), "--task-index", "1", "--task-count", "2", "--quiet", "--json"]);
    for p in [p0, p1] {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let reference = t.path().join("reference");
    m6_ok(&["filter", "--input", s(&t.path().join("docs")), "--output", s(&reference), "--quiet"]);
    let out = t.path().join("filtered");
    assert_eq!(m6(&["status", s(&t.path().join("docs")), s(&out)]).status.code(), Some(0));
    assert_eq!(texts(&out), texts(&reference));
    assert_eq!(texts(&t.path().join("docs")).len(), 3000);
    let shards = |d: &Path| Manifest::load(d).unwrap().shards.iter().map(|s| (s.file.clone(), s.blake3.clone())).collect::<Vec<_>>();
    assert_eq!(shards(&out), shards(&reference), "byte-identical to one process");
}
