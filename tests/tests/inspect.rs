//! `m6corpus stats`, `sql` and `report` through the real binary, on real poems
//! ingested by `m6corpus ingest` (with a malformed line, so the `errors` side exists).

use std::collections::BTreeMap;
use std::path::Path;

use m6_tests::{m6, m6_ok, poems};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Ingests `n` real poems (plus one malformed line) and returns (dataset dir, poems).
fn ingest(dir: &Path, n: usize) -> (std::path::PathBuf, Vec<serde_json::Value>) {
    let poems = poems(n);
    let mut text = String::new();
    for (i, p) in poems.iter().enumerate() {
        text.push_str(&serde_json::to_string(p).unwrap());
        text.push('\n');
        if i == n / 2 {
            text.push_str("{\"text\": \"unterminated\n");
        }
    }
    let input = dir.join("tang.jsonl");
    std::fs::write(&input, text).unwrap();
    let out = dir.join("docs");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&out), "--source", "tang", "--quiet"]);
    (out, poems)
}

fn nearest_rank(v: &mut [u64], q: f64) -> u64 {
    v.sort();
    v[((q * v.len() as f64).ceil() as usize).max(1) - 1]
}

#[test]
fn stats_json_matches_the_input() {
    let t = tempfile::tempdir().unwrap();
    let (docs, poems) = ingest(t.path(), 300);
    let j: serde_json::Value = serde_json::from_str(&m6_ok(&["stats", s(&docs), "--json"])).unwrap();
    assert_eq!(j["kind"], "document");
    assert_eq!(j["rows"], poems.len());
    let mut lens: Vec<u64> = poems.iter().map(|p| p["text"].as_str().unwrap().chars().count() as u64).collect();
    let chars = j["distributions"].as_array().unwrap().iter().find(|d| d["name"] == "chars").unwrap();
    for (k, q) in [("p0", 0.0), ("p10", 0.1), ("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        assert_eq!(chars[k], nearest_rank(&mut lens, q), "{k}");
    }
    assert_eq!(j["sources"], serde_json::json!([{"name": "tang", "count": poems.len()}]));
    // The malformed line is in the errors side and counted in the stats.
    assert_eq!(j["errors"]["rows"], 1, "{}", j["errors"]);
    assert_eq!(j["runs"][0]["stage"], "ingest");
    assert_eq!(j["runs"][0]["rows_out"], poems.len());

    let text = m6_ok(&["stats", s(&docs)]);
    assert!(text.contains(&format!("rows {}", poems.len())) && text.contains("tang") && text.contains("p50"), "{text}");
}

#[test]
fn sql_json_and_table_over_two_datasets() {
    let t = tempfile::tempdir().unwrap();
    let (a, poems) = ingest(t.path(), 200);
    let t2 = tempfile::tempdir().unwrap();
    let (b, _) = ingest(t2.path(), 50);
    // The 50 poems of b are the first 50 of a: a join on id finds exactly them.
    let out = m6_ok(&[
        "sql",
        "SELECT count(*) AS n, sum(a.char_count) AS chars FROM a JOIN b ON a.id = b.id",
        "--table",
        &format!("a={}", s(&a)),
        "--table",
        &format!("b={}", s(&b)),
        "--json",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let chars: u64 = poems[..50].iter().map(|p| p["text"].as_str().unwrap().chars().count() as u64).sum();
    assert_eq!(rows, vec![serde_json::json!({"n": 50, "chars": chars})]);

    let out = m6_ok(&["sql", "SELECT source, count(*) AS n FROM a GROUP BY source", "--table", &format!("a={}", s(&a))]);
    assert!(out.contains("| source") && out.contains("| tang ") && out.contains(&format!("| {} ", poems.len())), "{out}");

    // The ingest errors side is a table too.
    let out = m6_ok(&["sql", "SELECT count(*) AS n FROM a_errors", "--table", &format!("a={}", s(&a)), "--json"]);
    let rows: Vec<BTreeMap<String, u64>> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["n"], 1);
}

#[test]
fn litter_in_the_folder_is_not_counted() {
    let t = tempfile::tempdir().unwrap();
    let (docs, poems) = ingest(t.path(), 120);
    let shard = std::fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    std::fs::copy(&shard, docs.join(".tmp-00000000deadbeef-00000.parquet")).unwrap();
    std::fs::copy(&shard, docs.join("part-00000000deadbeef-00000.parquet")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&m6_ok(&["stats", s(&docs), "--json"])).unwrap();
    assert_eq!(j["rows"], poems.len());
    let out = m6_ok(&["sql", "SELECT count(*) AS n FROM d", "--table", &format!("d={}", s(&docs)), "--json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["n"], poems.len());
}

#[test]
fn report_is_one_self_contained_page() {
    let t = tempfile::tempdir().unwrap();
    let (docs, poems) = ingest(t.path(), 150);
    let out = t.path().join("r.html");
    m6_ok(&["report", s(&docs), "-o", s(&out)]);
    let html = std::fs::read_to_string(&out).unwrap();
    for section in html.split("<section class=\"chart\"").skip(1) {
        assert!(section.contains("<svg"), "{section}");
    }
    assert!(html.contains("id=\"d0-len-chars\"") && html.contains("id=\"d0-sources\"") && html.contains("id=\"d0-shards\""));
    assert!(html.contains("id=\"d0-malformed\""));
    assert!(html.contains(&format!("<div class=\"v\">{}</div><div class=\"k\">rows</div>", poems.len())));
    assert!(!html.contains("<script") && !html.contains("src="));
}

#[test]
fn errors_name_the_dataset() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("missing");
    let r = m6(&["stats", s(&missing)]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("missing"));
    let r = m6(&["sql", "SELECT 1", "--table", &format!("gone={}", s(&missing))]);
    assert!(!r.status.success());
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(e.contains("`gone`") && e.contains("missing"), "{e}");
}
