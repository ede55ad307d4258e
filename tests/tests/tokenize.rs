//! End-to-end checks of issue 6 through the real binary: `tokenizer train` on an
//! ingested document dataset (twice: identical), encode/decode round trip, the
//! tokenize stage (CLI flags and pipeline.toml), pyarrow reading the samples.

use std::path::Path;

use m6_pipeline::{Dataset, Manifest};
use m6_schemas::*;
use m6_tests::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ingest(dir: &Path, n: usize) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    poems_jsonl(&dir.join("poems.jsonl"), n);
    let out = dir.join("docs");
    m6_ok(&["ingest", "--input", s(&dir.join("poems.jsonl")), "--output", s(&out), "--source", "tang", "--quiet"]);
    out
}

#[test]
fn train_encode_decode_and_tokenize() {
    let t = tempfile::tempdir().unwrap();
    let docs = ingest(t.path(), 500);
    let v1 = t.path().join("v1.txt");
    let v2 = t.path().join("v2.txt");
    m6_ok(&["tokenizer", "train", "--input", s(&docs), "--output", s(&v1), "--vocab-size", "6000"]);
    m6_ok(&["tokenizer", "train", "--input", s(&docs), "--output", s(&v2), "--vocab-size", "6000", "--threads", "1"]);
    let a = std::fs::read(&v1).unwrap();
    assert_eq!(a, std::fs::read(&v2).unwrap(), "a vocabulary trained twice is identical");
    let text = String::from_utf8(a).unwrap();
    let n = text.lines().count();
    assert!(n > 1000 && n <= 6000, "{n} tokens");
    assert_eq!(text.lines().take(7).collect::<Vec<_>>(), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[IMG]", "[/IMG]"]);

    // encode | decode gives the text back (a poem line: every character was trained on).
    let poem = poems(3)[2]["text"].as_str().unwrap().replace('\n', "");
    let ids = m6_ok(&["tokenizer", "encode", "--tokenizer", s(&v1), "--text", &poem]);
    assert!(!ids.split_whitespace().any(|i| i == "1"), "no [UNK]: {ids}");
    let back = m6_ok(&["tokenizer", "decode", "--tokenizer", s(&v1), "--ids", ids.trim()]);
    // Decoding gives the normalised text: NFKC turns full-width punctuation half-width.
    let mut normalised = String::new();
    m6_text::to_half_width(&poem, &mut normalised);
    assert_eq!(back.trim_end_matches('\n'), normalised);
    let toks = m6_ok(&["tokenizer", "encode", "--tokenizer", s(&v1), "--tokens", "--text", &poem]);
    assert_eq!(toks.split_whitespace().count(), ids.split_whitespace().count());

    // tokenize with flags.
    let out = t.path().join("samples");
    m6_ok(&["tokenize", "--input", s(&docs), "--output", s(&out), "--tokenizer", s(&v1), "--max-len", "64", "--quiet"]);
    let ds = Dataset::open(&out).unwrap();
    let p = &ds.manifest().properties;
    assert_eq!(p["tokenizer"], "tokenizer.json");
    assert_eq!((p["vocab_size"].as_u64(), p["unk_id"].as_u64(), p["max_len"].as_u64()), (Some(n as u64), Some(1), Some(64)));
    assert!(out.join("tokenizer.json").is_file());
    let samples: Vec<Sample> = ds.read_all().unwrap();
    assert!(!samples.is_empty());
    assert!(samples.iter().all(|x| x.input_ids.len() <= 64 && x.input_ids[0] == 2 && x.task == sample::TASK_TEXT));
    let docs_in: usize = Dataset::open(&docs).unwrap().rows() as usize;
    let seps: usize = samples.iter().map(|x| x.input_ids.iter().filter(|&&i| i == 3).count()).sum();
    assert_eq!(seps, docs_in, "one [SEP] per document");
    let v = m6_ok(&["verify", s(&out)]);
    assert!(v.contains(": ok"), "{v}");

    // The same from pipeline.toml, with the tokenizer file it copied (tokenizer.json).
    let cfg = t.path().join("pipeline.toml");
    let out2 = t.path().join("samples2");
    std::fs::write(
        &cfg,
        format!("[tokenize]\ninput = '{}'\noutput = '{}'\ntokenizer = '{}'\nmax_len = 64\n", s(&docs), s(&out2), s(&out.join("tokenizer.json"))),
    )
    .unwrap();
    m6_ok(&["tokenize", "--config", s(&cfg), "--quiet"]);
    let a = Manifest::load(&out).unwrap();
    let b = Manifest::load(&out2).unwrap();
    assert_eq!(a.shards.iter().map(|s| &s.blake3).collect::<Vec<_>>(), b.shards.iter().map(|s| &s.blake3).collect::<Vec<_>>());

    // Standard Parquet: pyarrow reads input_ids as list<int32>.
    let shard = out.join(&a.shards[0].file);
    let py = std::process::Command::new(venv_python())
        .args(["-c", "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(t.schema.field('input_ids').type, t.num_rows)", s(&shard)])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let outp = String::from_utf8_lossy(&py.stdout);
    assert!(outp.starts_with("list<item: int32>") || outp.starts_with("list<element: int32>"), "{outp}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let docs = ingest(t.path(), 20);
    let out = m6(&["tokenize", "--input", s(&docs), "--output", s(&t.path().join("x")), "--tokenizer", s(&t.path().join("missing.txt"))]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.txt"));
    let out = m6(&["tokenizer", "train", "--input", s(&t.path().join("nodata")), "--output", s(&t.path().join("v.txt"))]);
    assert!(!out.status.success());
    let out = m6(&["tokenizer", "train", "--input", s(&docs), "--output", s(&t.path().join("v.txt")), "--lowercase"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(".json"), "settings need the json form");
    let photo = data_dir().join("photos/coffee.png");
    let bin = t.path().join("p.bin");
    m6_ok(&["tokenizer", "patches", "--image", s(&photo), "--output", s(&bin)]);
    assert_eq!(std::fs::metadata(&bin).unwrap().len(), 224 * 224 * 3);
}

/// Every `tokenizer` and `lm` subcommand takes `--json` (issue 13: `--json` on every
/// command), and its output parses and agrees with the plain output.
#[test]
fn tokenizer_and_lm_commands_print_json() {
    let t = tempfile::tempdir().unwrap();
    let docs = ingest(t.path(), 300);
    let v = t.path().join("v.txt");
    let j: serde_json::Value = serde_json::from_str(&m6_ok(&["tokenizer", "train", "--input", s(&docs), "--output", s(&v), "--vocab-size", "3000", "--json"])).unwrap();
    let lines = std::fs::read_to_string(&v).unwrap().lines().count() as u64;
    assert_eq!((j["output"].as_str(), j["vocab_size"].as_u64()), (Some(s(&v)), Some(lines)));
    let poem = poems(2)[1]["text"].as_str().unwrap().replace('\n', "");
    let plain = m6_ok(&["tokenizer", "encode", "--tokenizer", s(&v), "--text", &poem]);
    let e: serde_json::Value = serde_json::from_str(&m6_ok(&["tokenizer", "encode", "--tokenizer", s(&v), "--text", &poem, "--tokens", "--json"])).unwrap();
    let ids: Vec<String> = e["ids"].as_array().unwrap().iter().map(|i| i.to_string()).collect();
    assert_eq!(ids.join(" "), plain.trim());
    assert_eq!(e["tokens"].as_array().unwrap().len(), ids.len());
    let d: serde_json::Value = serde_json::from_str(&m6_ok(&["tokenizer", "decode", "--tokenizer", s(&v), "--ids", plain.trim(), "--json"])).unwrap();
    assert_eq!(d["text"].as_str().unwrap(), m6_ok(&["tokenizer", "decode", "--tokenizer", s(&v), "--ids", plain.trim()]).trim_end_matches('\n'));
    let x: serde_json::Value = serde_json::from_str(&m6_ok(&["tokenizer", "export", "--tokenizer", s(&v), "--output", s(&t.path().join("t.json")), "--json"])).unwrap();
    assert_eq!(x["vocab_size"].as_u64(), Some(lines));

    let lm = t.path().join("zh.lm");
    let l: serde_json::Value = serde_json::from_str(&m6_ok(&["lm", "train", "--input", s(&docs), "--output", s(&lm), "--order", "3", "--json"])).unwrap();
    assert_eq!((l["order"].as_u64(), l["documents"].as_u64()), (Some(3), Some(300)));
    assert!(l["ngrams"].as_u64().unwrap() > 0 && l["bytes"].as_u64().unwrap() > 0);
    let scored = m6_ok(&["lm", "score", "--model", s(&lm), "--input", s(&docs), "--json"]);
    let rows: Vec<serde_json::Value> = scored.lines().map(|r| serde_json::from_str(r).unwrap()).collect();
    assert_eq!(rows.len(), 300);
    assert!(rows.iter().all(|r| r["id"].is_string() && r["perplexity"].as_f64().is_some_and(|p| p.is_finite() && p > 1.0)));
    let langs = m6_ok(&["quality", "lang", "--input", s(&docs), "--json"]);
    let first: serde_json::Value = serde_json::from_str(langs.lines().next().unwrap()).unwrap();
    assert_eq!(first["lang"].as_str(), Some("zh"));
    assert!(first["lang_score"].as_f64().is_some() && first["id"].is_string());
}
