//! Issue 13 points 2 and 5. One stage object runs several times, into different outputs and with different run
//! settings (threads, batch rows), as a library user or `m6corpus run` may do (issue 13
//! point 2): each run must give byte for byte what a fresh stage object gives, because
//! everything a run learns lives in its run object, not in the stage.

use std::io::Write;
use std::path::{Path, PathBuf};

use m6_pipeline::{run_stage, Dataset, RunOptions, StageFactory};
use m6_tests::*;

fn opts(threads: usize, batch_rows: usize) -> RunOptions {
    RunOptions { threads, batch_rows, progress: false, ..Default::default() }
}

/// Every Parquet file below `dir` (main and side datasets), by relative path, with its bytes.
fn shards(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let files: Vec<(PathBuf, Vec<u8>)> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| (p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()))
        .collect();
    assert!(!files.is_empty(), "{} holds no shards", dir.display());
    files
}

fn same_shards(got: &Path, want: &Path) {
    let (g, w) = (shards(got), shards(want));
    assert_eq!(g.iter().map(|(p, _)| p).collect::<Vec<_>>(), w.iter().map(|(p, _)| p).collect::<Vec<_>>(), "{} and {} hold other shards", got.display(), want.display());
    for ((p, a), (_, b)) in g.iter().zip(&w) {
        assert!(a == b, "{}: differs from a fresh stage object's run", p.display());
    }
}

fn property(dir: &Path, key: &str) -> serde_json::Value {
    Dataset::open(dir).unwrap().manifest().properties.get(key).cloned().unwrap_or_default()
}

/// Real poems as JSONL, with `copies` near-duplicates (one character changed, a
/// line break added) of poems from `first`, so dedup has work to do.
fn poems_with_copies(dir: &Path, range: std::ops::Range<usize>, first: usize, copies: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let all = poems(range.end);
    let mut f = std::fs::File::create(dir.join("poems.jsonl")).unwrap();
    for p in &all[range.clone()] {
        writeln!(f, "{p}").unwrap();
    }
    for (i, p) in all[first..first + copies].iter().enumerate() {
        let mut p = p.clone();
        let text = p["text"].as_str().unwrap().replacen('，', "、", 1) + "\n";
        p["text"] = text.into();
        p["id"] = format!("copy-{first}-{i}").into();
        writeln!(f, "{p}").unwrap();
    }
    dir.to_path_buf()
}

#[test]
fn one_ingest_object_resolves_each_runs_format() {
    let t = tempfile::tempdir().unwrap();
    let jsonl = poems_with_copies(&t.path().join("jsonl"), 0..300, 0, 0);
    let photos = t.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in ["horse.png", "phantom.png", "chessboard_RGB.png"] {
        std::fs::copy(data_dir().join("photos").join(name), photos.join(name)).unwrap();
    }
    // `format = auto`: the first run finds JSONL, the second an uncaptioned image
    // folder. A stage that kept the first run's format would look for JSONL among
    // the photos.
    let shared = m6_stage_ingest::IngestFactory::build(Default::default()).unwrap();
    let (docs, images) = (t.path().join("docs"), t.path().join("images"));
    run_stage(shared.as_ref(), &[jsonl.clone()], &docs, &opts(1, 100)).unwrap();
    run_stage(shared.as_ref(), &[photos.clone()], &images, &opts(2, 7)).unwrap();
    assert_eq!(property(&docs, "ingest_format"), "jsonl");
    assert_eq!(property(&images, "ingest_format"), "image");
    assert_eq!(Dataset::open(&docs).unwrap().kind().name(), "document");
    assert_eq!(Dataset::open(&images).unwrap().kind().name(), "image");
    assert_eq!(Dataset::open(&images).unwrap().rows(), 3);
    // Every photo was read: none is reported (or warned about) as skipped.
    assert_eq!(property(&images, "ingest.skipped_files"), 0);
    assert_eq!(property(&docs, "ingest.skipped_files"), 0);

    let fresh = |input: &Path, out: &Path, o: RunOptions| {
        let stage = m6_stage_ingest::IngestFactory::build(Default::default()).unwrap();
        run_stage(stage.as_ref(), &[input.to_path_buf()], out, &o).unwrap();
    };
    fresh(&jsonl, &t.path().join("docs.fresh"), opts(1, 100));
    fresh(&photos, &t.path().join("images.fresh"), opts(2, 7));
    same_shards(&docs, &t.path().join("docs.fresh"));
    same_shards(&images, &t.path().join("images.fresh"));
}

#[test]
fn one_dedup_object_runs_twice_with_its_own_plan_and_work_folder() {
    let t = tempfile::tempdir().unwrap();
    let ingest = m6_stage_ingest::IngestFactory::build(Default::default()).unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    run_stage(ingest.as_ref(), &[poems_with_copies(&t.path().join("a.in"), 0..300, 10, 20)], &a, &opts(2, 64)).unwrap();
    run_stage(ingest.as_ref(), &[poems_with_copies(&t.path().join("b.in"), 200..500, 300, 15)], &b, &opts(2, 64)).unwrap();

    // Two runs of one object: other inputs, other outputs, other threads and batch
    // sizes. A stage that kept its first run's plan would process B's shards with
    // A's drop lists and work folder.
    let cfg = m6_stage_dedup::DedupConfig::default();
    let shared = m6_stage_dedup::DedupFactory::build(cfg.clone()).unwrap();
    let (out_a, out_b) = (t.path().join("dedup-a"), t.path().join("dedup-b"));
    let sa = run_stage(shared.as_ref(), &[a.clone()], &out_a, &opts(2, 50)).unwrap();
    let sb = run_stage(shared.as_ref(), &[b.clone()], &out_b, &opts(1, 7)).unwrap();
    assert!(sa.rows_out + 20 <= sa.rows_in, "the planted copies in A are removed: {sa:?}");
    assert!(sb.rows_out + 15 <= sb.rows_in, "the planted copies in B are removed: {sb:?}");
    assert!(!out_a.join(m6_schemas::dedup_work::FOLDER).exists() && !out_b.join(m6_schemas::dedup_work::FOLDER).exists(), "each run removes its own work folder");
    assert_ne!(property(&out_a, "dedup.fingerprint"), property(&out_b, "dedup.fingerprint"));

    for (input, out, o) in [(&a, &out_a, opts(2, 50)), (&b, &out_b, opts(1, 7))] {
        let fresh = t.path().join(format!("{}.fresh", out.file_name().unwrap().to_string_lossy()));
        let stage = m6_stage_dedup::DedupFactory::build(cfg.clone()).unwrap();
        run_stage(stage.as_ref(), &[input.clone()], &fresh, &o).unwrap();
        same_shards(out, &fresh);
        assert_eq!(property(out, "dedup.fingerprint"), property(&fresh, "dedup.fingerprint"));
    }
    // The stage object itself carries nothing between runs: a rerun into A's output
    // skips every task (same inputs and settings).
    let again = run_stage(shared.as_ref(), &[a], &out_a, &opts(2, 50)).unwrap();
    assert_eq!(again.tasks_run, 0);
}

/// Issue 13 point 5: `m6corpus run all` orders sections by their data, not by a fixed
/// list of stages: here filter feeds dedup (the usual order is the other way round)
/// and the file lists the sections last to first.
#[test]
fn run_all_orders_sections_by_what_they_read_and_write() {
    let t = tempfile::tempdir().unwrap();
    poems_with_copies(&t.path().join("raw"), 0..300, 5, 10);
    let config = t.path().join("pipeline.toml");
    std::fs::write(
        &config,
        "[corpus]\nthreads = 2\n\n[dedup]\ninput = \"clean\"\noutput = \"dedup\"\n\n[filter]\ninput = \"docs\"\noutput = \"clean\"\n\n[ingest]\ninput = \"raw\"\noutput = \"docs\"\n",
    )
    .unwrap();
    let out = m6_ok(&["run", "all", "--config", config.to_str().unwrap(), "--quiet", "--json"]);
    let stages: Vec<String> = out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["stage"].as_str().unwrap().to_string()).collect();
    assert_eq!(stages, ["ingest", "filter", "dedup"]);
    for d in ["docs", "clean", "dedup"] {
        assert!(Dataset::open(&t.path().join(d)).unwrap().rows() > 0, "{d}");
    }
    let dedup = Dataset::open(&t.path().join("dedup")).unwrap();
    assert!(dedup.rows() < Dataset::open(&t.path().join("clean")).unwrap().rows(), "the planted copies that pass the filter are removed");
}

/// Subcommand names listed under "Commands:" in `m6corpus ARGS --help`.
fn subcommands(args: &[&str]) -> Vec<String> {
    let help = m6_ok(&[args, &["--help"]].concat());
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect()
}

/// Issue 13 point 5: every subcommand (and every sub-subcommand, `tokenizer` and `lm`
/// included) takes `--json`. `train` hands its arguments to m6-train, which always
/// prints its summary as JSON.
#[test]
fn every_subcommand_takes_json() {
    let top = subcommands(&[]);
    for must in ["run", "ingest", "dedup", "tokenize", "tokenizer", "lm", "quality", "verify", "status", "stats", "sql", "report"] {
        assert!(top.iter().any(|c| c == must), "{must} missing from {top:?}");
    }
    let mut checked = 0;
    for c in top.iter().filter(|c| *c != "train") {
        let subs = subcommands(&[c]);
        let leaves: Vec<Vec<&str>> = if subs.is_empty() { vec![vec![c.as_str()]] } else { subs.iter().map(|s| vec![c.as_str(), s.as_str()]).collect() };
        for leaf in leaves {
            let help = m6_ok(&[leaf.as_slice(), &["--help"]].concat());
            assert!(help.contains("--json"), "m6corpus {} has no --json:\n{help}", leaf.join(" "));
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");

    let t = tempfile::tempdir().unwrap();
    let docs = t.path().join("docs");
    run_stage(m6_stage_ingest::IngestFactory::build(Default::default()).unwrap().as_ref(), &[poems_with_copies(&t.path().join("raw"), 0..50, 0, 0)], &docs, &opts(1, 64)).unwrap();
    let html = t.path().join("r.html");
    let o: serde_json::Value = serde_json::from_str(&m6_ok(&["report", docs.to_str().unwrap(), "--output", html.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(o["output"], html.to_str().unwrap());
    assert_eq!(o["bytes"], std::fs::metadata(&html).unwrap().len());
}

/// Issue 13 point 5: stage flags are data the stage crates declare (clap is only in
/// the binary); each still sets its config field on top of the pipeline.toml section
/// and `--set`, and `--disable` adds to the section's list.
#[test]
fn stage_flags_set_config_fields_over_the_section() {
    let t = tempfile::tempdir().unwrap();
    let docs = t.path().join("docs");
    run_stage(m6_stage_ingest::IngestFactory::build(Default::default()).unwrap().as_ref(), &[poems_with_copies(&t.path().join("raw"), 0..120, 0, 5)], &docs, &opts(1, 64)).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let dd = t.path().join("dd");
    m6_ok(&["dedup", "--input", &s(&docs), "--output", &s(&dd), "--exact-only", "--keep", "shortest", "--threshold", "0.7", "--keep-work", "--set", "seed=7", "--quiet"]);
    let c = property(&dd, "dedup.config");
    assert_eq!((c["near"].as_bool(), c["keep"].as_str(), c["keep_work"].as_bool(), c["seed"].as_i64()), (Some(false), Some("shortest"), Some(true), Some(7)), "{c}");
    assert!((c["threshold"].as_f64().unwrap() - 0.7).abs() < 1e-6, "{c}");
    assert!(dd.join(m6_schemas::dedup_work::FOLDER).is_dir(), "--keep-work keeps the work folder");

    let config = t.path().join("pipeline.toml");
    std::fs::write(&config, "[filter]\ndisable = [\"text.min_chars\"]\n").unwrap();
    let clean = t.path().join("clean");
    m6_ok(&["filter", "--config", &s(&config), "--input", &s(&dd), "--output", &s(&clean), "--disable", "text.digit_ratio", "--t2s", "--quiet"]);
    let c = property(&clean, "filter.config");
    let disabled: Vec<&str> = c["disable"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(disabled.contains(&"text.min_chars") && disabled.contains(&"text.digit_ratio"), "{c}");
    assert_eq!(c["normalize"]["t2s"], true, "{c}");
    let bad = m6(&["dedup", "--input", &s(&docs), "--output", &s(&t.path().join("x")), "--keep", "bogus"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values: longest, shortest, first, quality"));
}

/// `m6corpus train --config FILE` refuses a misspelt section as every stage command
/// does (m6-train reads only its own section and does not know the registry); the
/// check runs before m6-train is looked for, so it holds on machines without torch.
#[test]
fn train_refuses_a_misspelt_section_before_starting_the_trainer() {
    let t = tempfile::tempdir().unwrap();
    for (i, form) in ["split", "joined"].iter().enumerate() {
        let p = t.path().join(format!("p{i}.toml"));
        std::fs::write(&p, "[trian]\nsteps = 3\n").unwrap();
        let ps = p.to_str().unwrap().to_string();
        let joined = format!("--config={ps}");
        let args: Vec<&str> = if *form == "split" { vec!["train", "--config", &ps] } else { vec!["train", &joined] };
        let out = m6(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{form}: {err}");
        assert!(err.contains("unknown section [trian]") && err.contains("[train]"), "{form}: {err}");
    }
}
