//! Issue 17 through the real binary: `m6corpus quality train` on ingested real prose and
//! real navigation/keyword junk, `filter --set text.quality_model=...` writing the score
//! columns, `sql` filtering on them, `stats` showing them, and `--set preset="m6"`.

use std::io::Write;
use std::path::Path;

use m6_pipeline::Dataset;
use m6_schemas::*;
use m6_tests::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn pages() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(data_dir().join("debian-handbook/zh-CN")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "html")).collect();
    v.sort();
    v
}

/// Inner text of each `open ... close` block of an HTML page.
fn blocks(html: &str, open: &str, close: &str) -> Vec<String> {
    let mut v = vec![];
    let mut rest = html;
    while let Some(i) = rest.find(open) {
        let after = &rest[i..];
        let Some(end) = after.find(close) else { break };
        v.push(after[..end].to_string());
        rest = &after[end..];
    }
    v
}

fn han_share(p: &str) -> f64 {
    p.chars().filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c)).count() as f64 / p.chars().count().max(1) as f64
}

/// (prose paragraphs, navigation and keyword-list junk) of the zh-CN handbook.
fn prose_and_junk() -> (Vec<String>, Vec<String>) {
    let (mut prose, mut junk) = (vec![], vec![]);
    for (k, page) in pages().iter().enumerate() {
        let html = std::fs::read_to_string(page).unwrap();
        for b in blocks(&html, "<div class=\"para\"", "</div>") {
            let t = strip_tags(&b[b.find('>').unwrap() + 1..]).split_whitespace().collect::<Vec<_>>().join(" ");
            if t.chars().count() >= 40 && han_share(&t) >= 0.4 {
                prose.push(t);
            }
        }
        for b in blocks(&html, "<div class=\"toc\"", "</div>").into_iter().chain(blocks(&html, "<ul class=\"docnav", "</ul>")) {
            let links: Vec<String> = b
                .split("<a ")
                .skip(1)
                .filter_map(|a| a.split_once('>').and_then(|(_, r)| r.split_once("</a>")).map(|(t, _)| strip_tags(t).split_whitespace().collect::<Vec<_>>().join(" ")))
                .filter(|t| !t.is_empty())
                .collect();
            for (j, w) in links.chunks(8).enumerate().filter(|(_, w)| w.len() >= 3) {
                // A sidebar as extracted text, and the titles as a keyword list.
                junk.push(w.join(" "));
                let mut titles: Vec<&str> = w.iter().map(|t| t.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')).collect();
                let n = titles.len();
                titles.rotate_left((k + j) % n);
                junk.push(titles.join(["、", " | ", "，"][(k + j) % 3]));
            }
        }
    }
    (prose, junk)
}

fn jsonl(path: &Path, rows: &[serde_json::Value]) {
    let mut f = std::fs::File::create(path).unwrap();
    for r in rows {
        writeln!(f, "{r}").unwrap();
    }
}

fn ingest(t: &Path, name: &str, rows: &[serde_json::Value]) -> std::path::PathBuf {
    let j = t.join(format!("{name}.jsonl"));
    jsonl(&j, rows);
    let out = t.join(name);
    m6_ok(&["ingest", "--input", s(&j), "--output", s(&out), "--source", name, "--quiet"]);
    out
}

#[test]
fn quality_train_filter_scores_sql_and_stats() {
    let t = tempfile::tempdir().unwrap();
    let (prose, junk) = prose_and_junk();
    assert!(prose.len() > 500 && junk.len() >= 200, "{} {}", prose.len(), junk.len());
    // Every tenth document is kept out of training for the filter run below.
    let rows = |v: &[String], keep: bool| v.iter().enumerate().filter(|(i, _)| (i % 10 == 0) != keep).map(|(i, t)| serde_json::json!({"id": i.to_string(), "text": t})).collect::<Vec<_>>();
    let pos = ingest(t.path(), "pos", &rows(&prose, true));
    let neg = ingest(t.path(), "neg", &rows(&junk, true));
    let model = t.path().join("q.bin");
    let out = m6_ok(&["quality", "train", "--positive", s(&pos), "--negative", s(&neg), "--output", s(&model), "--json"]);
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let acc = r["heldout"]["accuracy"].as_f64().unwrap();
    assert!(r["heldout_docs"].as_u64().unwrap() > 50, "{r}");
    assert!(acc >= 0.95, "held-out accuracy {acc}: {r}");
    // Same seed, same bytes.
    let again = t.path().join("q2.bin");
    m6_ok(&["quality", "train", "--positive", s(&pos), "--negative", s(&neg), "--output", s(&again), "--json"]);
    assert_eq!(std::fs::read(&model).unwrap(), std::fs::read(&again).unwrap());
    // `quality eval` agrees on unseen documents.
    let test_pos = ingest(t.path(), "tpos", &rows(&prose, false));
    let test_neg = ingest(t.path(), "tneg", &rows(&junk, false));
    let e: serde_json::Value = serde_json::from_str(m6_ok(&["quality", "eval", "--model", s(&model), "--positive", s(&test_pos), "--negative", s(&test_neg), "--json"]).trim()).unwrap();
    assert!(e["accuracy"].as_f64().unwrap() >= 0.9, "{e}");

    // Filter unseen prose + junk + a PII document with the classifier.
    let mut mixed: Vec<serde_json::Value> = rows(&prose, false).into_iter().chain(rows(&junk, false).into_iter().map(|mut j| {
        j["id"] = format!("junk{}", j["id"].as_str().unwrap()).into();
        j
    })).collect();
    let pii_text = format!("{}如有问题请写信到 admin@example.org 或致电 13912345678。", prose[1]);
    mixed.push(serde_json::json!({"id": "pii", "text": pii_text}));
    let docs = ingest(t.path(), "mixed", &mixed);
    let out = t.path().join("out");
    // With an LM as well, so every score column of the schema has values.
    let lm = t.path().join("zh.lm");
    m6_ok(&["lm", "train", "--input", s(&pos), "--output", s(&lm), "--order", "3"]);
    m6_ok(&[
        "filter", "--input", s(&docs), "--output", s(&out), "--set", &format!("text.quality_model={}", s(&model)), "--set", "text.min_quality=0.5",
        "--set", &format!("text.lm_model={}", s(&lm)), "--set", "text.max_perplexity=1e9", "--quiet",
    ]);
    let kept: Vec<Document> = Dataset::open(&out).unwrap().read_all().unwrap();
    assert!(!kept.is_empty());
    for d in &kept {
        let q = d.scores.quality.unwrap_or_else(|| panic!("no quality on {}", d.id));
        assert!((0.5..=1.0).contains(&q));
        assert!(d.scores.lang.is_some() && d.scores.lang_score.is_some() && d.scores.spam_hits.is_some() && d.scores.blocklist_hits.is_some());
        assert!(d.scores.perplexity.is_some_and(|p| p >= 1.0), "{}", d.id);
    }
    let pii = kept.iter().find(|d| d.text.contains("<EMAIL>")).expect("the PII document is kept, redacted");
    assert!(pii.text.contains("<PHONE>") && !pii.text.contains("admin@example.org"), "{}", pii.text);
    assert_eq!((pii.scores.pii_email, pii.scores.pii_phone, pii.scores.pii_id), (Some(1), Some(1), Some(0)));
    let rejects: Vec<Reject> = Dataset::open(&out.join("rejects")).unwrap().read_all().unwrap();
    let by_quality = rejects.iter().filter(|r| r.rule == "text.quality").count();
    assert!(by_quality > 0, "{:?}", rejects.iter().map(|r| &r.rule).collect::<Vec<_>>());

    // The columns are real Parquet columns: sql filters on them.
    let tbl = format!("d={}", s(&out));
    let n_hi: serde_json::Value = serde_json::from_str(&m6_ok(&["sql", "SELECT count(*) AS n FROM d WHERE quality >= 0.9 AND lang = 'zh' AND lang_score > 0.5", "--table", &tbl, "--json"])).unwrap();
    let want = kept.iter().filter(|d| d.scores.quality.unwrap() >= 0.9 && d.scores.lang.as_deref() == Some("zh") && d.scores.lang_score.unwrap() > 0.5).count();
    assert_eq!(n_hi[0]["n"].as_u64().unwrap() as usize, want);
    let n_pii: serde_json::Value = serde_json::from_str(&m6_ok(&["sql", "SELECT count(*) AS n FROM d WHERE pii_email > 0", "--table", &tbl, "--json"])).unwrap();
    assert_eq!(n_pii[0]["n"], 1);
    let n_phone: serde_json::Value = serde_json::from_str(&m6_ok(&["sql", "SELECT count(*) AS n FROM d WHERE pii_phone = 1 AND pii_id = 0 AND pii_card = 0 AND pii_ip = 0", "--table", &tbl, "--json"])).unwrap();
    assert_eq!(n_phone[0]["n"], 1);
    let median = {
        let mut p: Vec<f32> = kept.iter().map(|d| d.scores.perplexity.unwrap()).collect();
        p.sort_by(f32::total_cmp);
        p[p.len() / 2]
    };
    let n_ppl: serde_json::Value = serde_json::from_str(&m6_ok(&["sql", &format!("SELECT count(*) AS n FROM d WHERE perplexity < {median}"), "--table", &tbl, "--json"])).unwrap();
    assert_eq!(n_ppl[0]["n"].as_u64().unwrap() as usize, kept.iter().filter(|d| d.scores.perplexity.unwrap() < median).count());
    // stats shows their distributions, the languages as counts.
    let st: serde_json::Value = serde_json::from_str(&m6_ok(&["stats", s(&out), "--json"])).unwrap();
    let names: Vec<&str> = st["distributions"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    let scores = ["quality", "perplexity", "lang_score", "spam_hits", "blocklist_hits", "pii", "pii_email", "pii_phone", "pii_id", "pii_card", "pii_ip"];
    for n in ["chars"].iter().chain(&scores) {
        assert!(names.contains(n), "{n} not in {names:?}");
    }
    let q = st["distributions"].as_array().unwrap().iter().find(|d| d["name"] == "quality").unwrap();
    assert_eq!(q["count"].as_u64().unwrap() as usize, kept.len(), "{q}");
    assert_eq!(st["languages"][0]["name"], "zh", "{}", st["languages"]);
    assert_eq!(st["languages"].as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum::<u64>() as usize, kept.len());
    let text = m6_ok(&["stats", s(&out)]);
    assert!(text.contains("pii_phone (replacements)") && text.contains("per language (lang)"), "{text}");
    // report draws a chart of each.
    let html_path = t.path().join("r.html");
    m6_ok(&["report", s(&out), "--output", s(&html_path)]);
    let html = std::fs::read_to_string(&html_path).unwrap();
    for n in scores {
        let title = format!("Score distribution: {n} (");
        let at = html.find(&title).unwrap_or_else(|| panic!("no chart for {n}"));
        let section = &html[at..at + html[at..].find("</section>").unwrap()];
        assert!(section.contains("<svg") && section.contains("<rect"), "{n}: {section}");
    }
    assert!(html.contains("Rows per language (lang)"));
}

#[test]
fn m6_preset_drops_14_characters_and_keeps_15() {
    let t = tempfile::tempdir().unwrap();
    // Lines of real poems, cut to 14 and 15 characters (punctuation included).
    let text: String = poems(50).iter().map(|p| p["text"].as_str().unwrap().replace('\n', "")).find(|x| x.chars().count() >= 15).unwrap();
    let t14: String = text.chars().take(14).collect();
    let t15: String = text.chars().take(15).collect();
    let docs = ingest(t.path(), "short", &[serde_json::json!({"id": "14", "text": t14}), serde_json::json!({"id": "15", "text": t15})]);
    let out = t.path().join("m6");
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&out), "--set", "preset=\"m6\"", "--quiet"]);
    let kept: Vec<Document> = Dataset::open(&out).unwrap().read_all().unwrap();
    assert_eq!(kept.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(), vec![t15.as_str()]);
    let rejects: Vec<Reject> = Dataset::open(&out.join("rejects")).unwrap().read_all().unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!((rejects[0].rule.as_str(), rejects[0].value, rejects[0].threshold), ("text.min_chars", 14.0, 15.0));
    // Without the preset both are kept; an unknown preset is a clear error.
    let out2 = t.path().join("plain");
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&out2), "--quiet"]);
    assert_eq!(Dataset::open(&out2).unwrap().rows(), 2);
    let r = m6(&["filter", "--input", s(&docs), "--output", s(&t.path().join("bad")), "--set", "preset=m7", "--quiet"]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("unknown preset `m7`"));
}

/// Document schema v2 added the score columns; a v1 dataset (eight columns, manifest
/// `schema_version` 1) written by an older build is still verified, filtered and
/// inspected, its rows read with null scores.
#[test]
fn version_1_document_datasets_still_read() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("p.jsonl");
    poems_jsonl(&input, 30);
    let docs = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--quiet"]);
    // Rewrite every shard as v1 with pyarrow: the first eight columns, version 1.
    let script = r#"
import sys, glob, pyarrow.parquet as pq
for f in glob.glob(sys.argv[1] + "/*.parquet"):
    t = pq.read_table(f)
    t = t.select(t.column_names[:8])
    meta = dict(t.schema.metadata or {})
    meta[b"m6corpus.version"] = b"1"
    pq.write_table(t.replace_schema_metadata(meta), f, compression="zstd")
"#;
    let out = std::process::Command::new(venv_python()).args(["-c", script, s(&docs)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mpath = docs.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["schema_version"] = 1.into();
    for sh in m["shards"].as_array_mut().unwrap() {
        let bytes = std::fs::read(docs.join(sh["file"].as_str().unwrap())).unwrap();
        sh["bytes"] = bytes.len().into();
        sh["blake3"] = blake3::hash(&bytes).to_hex().to_string().into();
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    assert!(m6_ok(&["verify", s(&docs)]).contains(": ok"));
    let old: Vec<Document> = Dataset::open(&docs).unwrap().read_all().unwrap();
    assert_eq!(old.len(), 30);
    assert!(old.iter().all(|d| d.scores == DocScores::default()));
    let st: serde_json::Value = serde_json::from_str(&m6_ok(&["stats", s(&docs), "--json"])).unwrap();
    assert_eq!(st["rows"], 30);
    let n: serde_json::Value = serde_json::from_str(&m6_ok(&["sql", "SELECT count(*) AS n FROM d", "--table", &format!("d={}", s(&docs)), "--json"])).unwrap();
    assert_eq!(n[0]["n"], 30);
    // Filtering it writes a v2 dataset with scores.
    let out = t.path().join("out");
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&out), "--quiet"]);
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.manifest().schema_version, 2);
    let kept: Vec<Document> = ds.read_all().unwrap();
    assert!(!kept.is_empty() && kept.iter().all(|d| d.scores.lang.is_some()));
    // A version this build does not know is refused by name.
    m["schema_version"] = 3.into();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let r = m6(&["stats", s(&docs)]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("schema version 3"), "{}", String::from_utf8_lossy(&r.stderr));
}
