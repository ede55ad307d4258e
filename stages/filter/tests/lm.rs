//! The fluency LM on real text: trained on Debian Handbook prose (and Tang poems), it
//! must find held-out prose far more likely than the same characters shuffled, and the
//! filter's perplexity rule must keep the one and drop the other.

mod common;

use common::*;
use m6_stage_filter::lm::{Counter, Model};
use m6_stage_filter::text::rule;
use m6_stage_filter::{all_rules, FilterConfig, FilterStage};

/// Deterministic Fisher–Yates over the characters of each line.
fn shuffled(text: &str, seed: u64) -> String {
    let mut x = seed | 1;
    text.lines()
        .map(|l| {
            let mut cs: Vec<char> = l.chars().collect();
            for i in (1..cs.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                cs.swap(i, (x % (i as u64 + 1)) as usize);
            }
            cs.into_iter().collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const HELD_OUT: &str = "sect.package-meta-information.html";

fn handbook_model(order: usize) -> Model {
    let mut c = Counter::new(order, 4_000_000).unwrap();
    for p in handbook_pages("zh-CN") {
        if p.file_name().unwrap() == HELD_OUT {
            continue;
        }
        for para in paragraphs(&std::fs::read_to_string(&p).unwrap()) {
            c.add_text(&para);
        }
    }
    c.finish().unwrap()
}

fn held_out() -> Vec<String> {
    // Chinese prose: paragraphs that are mostly Han characters (not command listings).
    paragraphs(&handbook_page("zh-CN", HELD_OUT))
        .into_iter()
        .filter(|p| p.chars().count() >= 40 && p.chars().filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c)).count() * 2 >= p.chars().count())
        .take(20)
        .collect()
}

#[test]
fn real_prose_beats_shuffled_prose() {
    let m = handbook_model(5);
    let texts = held_out();
    assert!(texts.len() >= 10);
    for (i, t) in texts.iter().enumerate() {
        let real = m.perplexity(t);
        let shuf = m.perplexity(&shuffled(t, i as u64 + 7));
        assert!(real * 2.0 < shuf, "paragraph {i}: real {real:.1} vs shuffled {shuf:.1}: {t}");
    }
}

#[test]
fn poems_model_orders() {
    // Higher orders fit held-out real verse better than a unigram model; all orders
    // prefer it to its shuffle.
    let ps = poems(6000);
    let (train, test) = ps.split_at(5500);
    let mut ppl = vec![];
    for order in [1, 3, 5] {
        let mut c = Counter::new(order, 4_000_000).unwrap();
        for p in train {
            c.add_text(&p.1);
        }
        let m = c.finish().unwrap();
        let text = test.iter().map(|p| p.1.clone()).collect::<Vec<_>>().join("\n");
        let real = m.perplexity(&text);
        let shuf = m.perplexity(&shuffled(&text, 3));
        if order > 1 {
            assert!(real < shuf, "order {order}: real {real} shuffled {shuf}");
        }
        ppl.push(real);
    }
    assert!(ppl[1] < ppl[0] && ppl[2] < ppl[0], "{ppl:?}");
}

#[test]
fn perplexity_rule_uses_the_saved_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handbook.lm");
    let model = handbook_model(5);
    model.save(&path).unwrap();
    let texts = held_out();
    // The threshold sits between the two populations: the geometric mean of the
    // median real and the median shuffled perplexity.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let real = median(texts.iter().map(|t| model.perplexity(t)).collect());
    let shuf = median(texts.iter().enumerate().map(|(i, t)| model.perplexity(&shuffled(t, i as u64 + 1))).collect());
    let threshold = (real * shuf).sqrt();
    let mut cfg = FilterConfig::default();
    cfg.disable = all_rules().into_iter().filter(|r| *r != rule::PERPLEXITY && *r != "image.bomb").map(String::from).collect();
    cfg.text.lm_model = path.to_string_lossy().into_owned();
    cfg.text.max_perplexity = threshold;
    let s = FilterStage::new(cfg).unwrap();
    let kept = texts.iter().filter(|t| s.judge_text(t).is_ok()).count();
    assert!(kept * 10 >= texts.len() * 9, "kept {kept} of {} (threshold {threshold})", texts.len());
    let mut dropped = 0;
    for (i, t) in texts.iter().enumerate() {
        if let Err(d) = s.judge_text(&shuffled(t, i as u64 + 1)) {
            assert_eq!(d.rule, rule::PERPLEXITY);
            assert!(d.value > threshold && d.threshold == threshold);
            dropped += 1;
        }
    }
    assert!(dropped * 10 >= texts.len() * 9, "dropped {dropped} of {} shuffled (threshold {threshold})", texts.len());
}
