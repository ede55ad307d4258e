//! End-to-end checks of the filter stage and `m6corpus lm` through the real binary, on
//! real poems, Debian Handbook text and photos ingested with `m6corpus ingest`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use m6_pipeline::{Dataset, Manifest};
use m6_schemas::*;
use m6_tests::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `(inner html of each <div class="para">, inner of each <pre class="screen">)` of a handbook page.
fn handbook(page: &str) -> (Vec<String>, Vec<String>) {
    let html = std::fs::read_to_string(data_dir().join("debian-handbook/zh-CN").join(page)).unwrap();
    let grab = |open: &str, close: &str| {
        let mut v = vec![];
        let mut rest = html.as_str();
        while let Some(i) = rest.find(open) {
            let after = &rest[i..];
            let Some(gt) = after.find('>') else { break };
            let Some(end) = after[gt..].find(close) else { break };
            v.push(after[gt + 1..gt + end].to_string());
            rest = &after[gt + end..];
        }
        v
    };
    let paras = grab("<div class=\"para\"", "</div>").iter().map(|p| strip_tags(p).split_whitespace().collect::<Vec<_>>().join(" ")).filter(|p| p.chars().count() >= 30).collect();
    (paras, grab("<pre class=\"screen\"", "</pre>").iter().map(|p| strip_tags(p)).collect())
}

/// JSONL of real documents: Tang poems, handbook prose, and the kinds of bad rows a
/// crawl produces (console listings, page source, stuttered text, bare titles).
fn corpus(path: &Path) -> usize {
    let mut f = std::fs::File::create(path).unwrap();
    let mut n = 0;
    let mut line = |id: String, text: &str| {
        writeln!(f, "{}", serde_json::json!({"id": id, "text": text})).unwrap();
        n += 1;
    };
    for p in poems(300) {
        line(p["id"].as_str().unwrap().to_string(), p["text"].as_str().unwrap());
    }
    for page in ["apt.html", "sect.x509-cert.html", "packaging-system.html"] {
        let (paras, screens) = handbook(page);
        for (i, p) in paras.iter().enumerate() {
            line(format!("{page}#p{i}"), p);
        }
        for (i, t) in screens.iter().enumerate().filter(|(_, t)| t.trim().chars().count() >= 200) {
            line(format!("{page}#screen{i}"), t);
        }
        let html = std::fs::read_to_string(data_dir().join("debian-handbook/zh-CN").join(page)).unwrap();
        let len = html.chars().count();
        line(format!("{page}#source"), &html.chars().skip(len / 2).take(4000).collect::<String>());
    }
    for p in poems(20) {
        let t = p["text"].as_str().unwrap();
        line(format!("{}#tripled", p["id"].as_str().unwrap()), &t.lines().flat_map(|l| [l, l, l]).collect::<Vec<_>>().join("\n"));
        line(format!("{}#title", p["id"].as_str().unwrap()), p["title"].as_str().unwrap().chars().take(6).collect::<String>().as_str());
    }
    n
}

fn counts(summary: &str) -> BTreeMap<String, u64> {
    let v: serde_json::Value = serde_json::from_str(summary.lines().last().unwrap()).unwrap_or_else(|e| panic!("{e}: {summary}"));
    let c = v.get("counts").or_else(|| v.get("summary").and_then(|s| s.get("counts"))).unwrap_or_else(|| panic!("no counts in {summary}"));
    serde_json::from_value(c.clone()).unwrap()
}

#[test]
fn filter_documents_with_rejects_normalisation_and_determinism() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("docs.jsonl");
    let n = corpus(&input);
    let docs = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--source", "real", "--quiet"]);
    let cfg = t.path().join("pipeline.toml");
    std::fs::write(&cfg, "[filter]\n[filter.text]\nmin_chars = 10\n[filter.normalize]\nt2s = true\n").unwrap();
    let out = t.path().join("kept");
    let summary = m6_ok(&["filter", "--input", s(&docs), "--output", s(&out), "--config", s(&cfg), "--threads", "2", "--quiet", "--json"]);

    let kept: Vec<Document> = Dataset::open(&out).unwrap().read_all().unwrap();
    let rejects_ds = Dataset::open(&out.join("rejects")).unwrap();
    assert_eq!(rejects_ds.kind(), Kind::Reject);
    let rejects: Vec<Reject> = rejects_ds.read_all().unwrap();
    assert_eq!(kept.len() + rejects.len(), n, "every row is kept or rejected");
    // Poems are kept (and come out simplified); the bad rows are rejected with reasons.
    assert!(kept.iter().filter(|d| d.source_id.as_deref().is_some_and(|s| !s.contains('#'))).count() >= 285);
    let first = &kept.iter().find(|d| d.text.starts_with("秦川")).unwrap().text;
    assert!(first.starts_with("秦川雄帝宅，函谷壮皇居。"), "{first}");
    assert!(kept.iter().all(|d| d.char_count as usize == d.text.chars().count()));
    let by_rule = |r: &str| rejects.iter().filter(|x| x.rule == r).count();
    assert_eq!(by_rule("text.min_chars"), 20, "the 20 bare titles");
    assert!(by_rule("text.dup_lines") >= 18, "tripled poems: {}", by_rule("text.dup_lines"));
    assert!(rejects.iter().any(|r| r.source_id.as_deref().is_some_and(|s| s.ends_with("#source")) && (r.rule == "text.markup" || r.rule == "text.cjk_ratio")));
    assert!(rejects.iter().any(|r| r.source_id.as_deref().is_some_and(|s| s.contains("#screen"))));
    for r in &rejects {
        assert!(r.snippet.as_deref().is_some_and(|s| !s.is_empty()));
        assert!(r.value.is_finite() && r.threshold.is_finite());
    }
    // Per-rule drop counts are in the run summary and the manifest.
    let c = counts(&summary);
    assert_eq!(c.get("dropped.text.min_chars"), Some(&20));
    assert_eq!(c.get("kept"), Some(&(kept.len() as u64)));
    let m = Manifest::load(&out).unwrap();
    assert!(serde_json::to_string(&m).unwrap().contains("filter.config"));

    // `m6corpus stats` on the output reports drops per rule, with examples.
    let st: serde_json::Value = serde_json::from_str(&m6_ok(&["stats", s(&out), "--json"])).unwrap();
    let rules = st["rejects"]["rules"].as_array().unwrap_or_else(|| panic!("no reject rules in stats: {st}"));
    let min_chars = rules.iter().find(|r| r["rule"] == "text.min_chars").unwrap();
    assert_eq!(min_chars["count"], 20);

    // Same input and config, one thread: byte-identical shards.
    let out1 = t.path().join("kept1");
    m6_ok(&["filter", "--input", s(&docs), "--output", s(&out1), "--config", s(&cfg), "--threads", "1", "--quiet"]);
    let shards = |d: &Path| Manifest::load(d).unwrap().shards.iter().map(|s| (s.file.clone(), s.blake3.clone())).collect::<Vec<_>>();
    assert_eq!(shards(&out), shards(&out1));
    assert_eq!(shards(&out.join("rejects")), shards(&out1.join("rejects")));
    let v = m6_ok(&["verify", s(&out)]);
    assert!(v.contains(": ok"), "{v}");

    // Train the fluency LM on the kept text and filter with it.
    let lm = t.path().join("zh.lm");
    let said = m6_ok(&["lm", "train", "--input", s(&out), "--output", s(&lm), "--order", "4"]);
    assert!(said.contains("order 4"), "{said}");
    let scored = m6_ok(&["lm", "score", "--model", s(&lm), "--input", s(&out)]);
    assert_eq!(scored.lines().count(), kept.len());
    let out2 = t.path().join("kept2");
    let summary = m6_ok(&["filter", "--input", s(&out), "--output", s(&out2), "--lm-model", s(&lm), "--max-perplexity", "5000", "--quiet", "--json"]);
    let c = counts(&summary);
    assert_eq!(c.get("kept").copied().unwrap_or(0) + c.get("dropped.text.perplexity").copied().unwrap_or(0) + c.iter().filter(|(k, _)| k.starts_with("dropped.") && *k != "dropped.text.perplexity").map(|(_, v)| *v).sum::<u64>(), kept.len() as u64);
    assert!(Manifest::load(&out2).unwrap().properties.contains_key("filter.lm_model_blake3"));
}

#[test]
fn filter_pairs_from_an_image_folder() {
    let t = tempfile::tempdir().unwrap();
    let imgs = t.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let mut caps = String::new();
    for (file, cap) in [("astronaut.png", "宇航员艾琳·柯林斯身穿航天服的肖像"), ("coffee.png", "图片"), ("chelsea.png", "一只橘色的猫"), ("rocket.jpg", "IMG_0001"), ("camera.png", "拿着相机的摄影师")] {
        std::fs::copy(data_dir().join("photos").join(file), imgs.join(file)).unwrap();
        caps.push_str(&serde_json::json!({"file": file, "caption": cap}).to_string());
        caps.push('\n');
    }
    std::fs::write(imgs.join("captions.jsonl"), caps).unwrap();
    let pairs = t.path().join("pairs");
    m6_ok(&["ingest", "--input", s(&imgs), "--output", s(&pairs), "--quiet"]);
    assert_eq!(Dataset::open(&pairs).unwrap().kind(), Kind::Pair);
    let out = t.path().join("kept");
    m6_ok(&["filter", "--input", s(&pairs), "--output", s(&out), "--quiet"]);
    let kept: Vec<Pair> = Dataset::open(&out).unwrap().read_all().unwrap();
    let mut caps: Vec<&str> = kept.iter().map(|p| p.caption.as_str()).collect();
    caps.sort();
    assert_eq!(caps, vec!["一只橘色的猫", "宇航员艾琳·柯林斯身穿航天服的肖像", "拿着相机的摄影师"]);
    let rejects: Vec<Reject> = Dataset::open(&out.join("rejects")).unwrap().read_all().unwrap();
    assert_eq!(rejects.len(), 2);
    assert!(rejects.iter().all(|r| r.rule == "pair.boilerplate"));
}

#[test]
fn config_errors_are_clear() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("docs.jsonl");
    poems_jsonl(&input, 20);
    let docs = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&docs), "--quiet"]);
    let out = t.path().join("o");
    let r = m6(&["filter", "--input", s(&docs), "--output", s(&out), "--disable", "text.nonsense"]);
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && e.contains("unknown rule `text.nonsense`"), "{e}");
    let r = m6(&["filter", "--input", s(&docs), "--output", s(&out), "--set", "text.max_digit_ratio=3"]);
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && e.contains("filter.text.max_digit_ratio = 3"), "{e}");
    let r = m6(&["filter", "--input", s(&docs), "--output", s(&out), "--set", "text.min_chars_typo=3"]);
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && e.contains("min_chars_typo"), "{e}");
    let r = m6(&["lm", "train", "--input", s(&docs), "--output", s(&t.path().join("x.lm")), "--order", "9"]);
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && e.contains("order must be between 1 and 6"), "{e}");
}
