//! Issue 17 on real data: the quality classifier (prose vs navigation, keyword lists and
//! shuffled words from the same handbook), language identification on the handbook's
//! Chinese, Japanese and English pages, PII placeholders, and the `m6` preset.

mod common;

use common::*;
use m6_quality::{Example, Featurizer, Model, Params};
use m6_stage_filter::langid::identify;
use m6_stage_filter::pii::{redact, PiiConfig};
use m6_stage_filter::text::rule;
use m6_stage_filter::{FilterConfig, FilterStage};

fn han_share(p: &str) -> f64 {
    let n = p.chars().count().max(1);
    p.chars().filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c)).count() as f64 / n as f64
}

/// Prose paragraphs (≥ 40 characters, mostly Han) of the zh-CN and zh-TW handbook.
fn prose() -> Vec<String> {
    let mut v = vec![];
    for lang in ["zh-CN", "zh-TW"] {
        for page in handbook_pages(lang) {
            let html = std::fs::read_to_string(&page).unwrap();
            v.extend(paragraphs(&html).into_iter().filter(|p| p.chars().count() >= 40 && han_share(p) >= 0.4));
        }
    }
    v
}

/// Link texts of every table of contents (`<div class="toc">`) and page navigation
/// bar (`<div class="docnav ...">`) of the zh-CN handbook: real navigation text.
fn toc_entries() -> Vec<Vec<String>> {
    let mut out = vec![];
    for page in handbook_pages("zh-CN") {
        let html = std::fs::read_to_string(&page).unwrap();
        for open in ["<div class=\"toc\"", "<ul class=\"docnav"] {
            let mut rest = html.as_str();
            while let Some(i) = rest.find(open) {
                let block = &rest[i..];
                let end = block.find(if open.starts_with("<ul") { "</ul>" } else { "</div>" }).unwrap_or(block.len());
                let links: Vec<String> = block[..end]
                    .split("<a ")
                    .skip(1)
                    .filter_map(|a| a.split_once('>').and_then(|(_, r)| r.split_once("</a>")).map(|(t, _)| strip_tags(t).split_whitespace().collect::<Vec<_>>().join(" ")))
                    .filter(|t| !t.is_empty())
                    .collect();
                if !links.is_empty() {
                    out.push(links);
                }
                rest = &block[end..];
            }
        }
    }
    out
}

/// A deterministic shuffle (SplitMix64 stream).
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut r = m6_quality::SplitMix(seed);
    for i in (1..v.len()).rev() {
        v.swap(i, r.below(i + 1));
    }
}

/// Junk of three real kinds: navigation (runs of TOC/nav links as a sidebar renders
/// them), keyword lists (section titles without their numbers, joined by separators,
/// as tag clouds and SEO footers do) and word salad (a real paragraph's jieba words in
/// random order: the same vocabulary as the prose, so only order tells them apart).
fn junk(prose: &[String]) -> Vec<(String, &'static str)> {
    let mut out = vec![];
    let entries = toc_entries();
    for (k, links) in entries.iter().enumerate() {
        for (j, w) in links.chunks(8).enumerate() {
            if w.len() >= 3 {
                out.push((w.join(" "), "navigation"));
            }
            let mut titles: Vec<String> = w.iter().map(|t| t.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ').to_string()).filter(|t| !t.is_empty()).collect();
            shuffle(&mut titles, (k * 1000 + j) as u64);
            if titles.len() >= 3 {
                out.push((titles.join(["、", " | ", "，", " "][(k + j) % 4]), "keywords"));
            }
        }
    }
    for (i, p) in prose.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let mut words: Vec<&str> = m6_quality::jieba().cut(p, false);
        shuffle(&mut words, i as u64);
        out.push((words.concat(), "shuffled"));
    }
    out
}

#[test]
fn classifier_separates_prose_from_junk_on_a_held_out_split() {
    let pos = prose();
    let neg = junk(&pos);
    assert!(pos.len() > 1000 && neg.len() > 1000, "{} prose, {} junk", pos.len(), neg.len());
    let params = Params::default();
    let f = Featurizer::new(&params);
    let feats = |t: &str| {
        let mut v = vec![];
        f.features(t, &mut v);
        v
    };
    // One document in five is held out; a paragraph and its shuffled copy share a split.
    let (mut train, mut test, mut test_kind) = (vec![], vec![], vec![]);
    for (i, p) in pos.iter().enumerate() {
        let ex = Example { features: feats(p), positive: true };
        if i % 5 == 0 {
            test.push(ex);
            test_kind.push("prose");
        } else {
            train.push(ex);
        }
    }
    for (i, (t, kind)) in neg.iter().enumerate() {
        let ex = Example { features: feats(t), positive: false };
        if i % 5 == 0 {
            test.push(ex);
            test_kind.push(kind);
        } else {
            train.push(ex);
        }
    }
    let m = Model::train(params.clone(), &train).unwrap();
    let e = m.evaluate(&test);
    let per_kind = |k: &str| {
        let (ok, n) = test.iter().zip(&test_kind).filter(|(_, kk)| **kk == k).fold((0, 0), |(ok, n), (ex, _)| (ok + ((m.score_features(&ex.features) >= 0.5) == ex.positive) as usize, n + 1));
        ok as f64 / n.max(1) as f64
    };
    let kinds = ["prose", "navigation", "keywords", "shuffled"].map(|k| (k, per_kind(k)));
    eprintln!("held-out: {e:?}; per kind: {kinds:?}");
    // The stated bar: 95% held-out accuracy overall, 90% on every kind.
    assert!(e.accuracy >= 0.95, "{e:?} {kinds:?}");
    for (k, a) in kinds {
        assert!(a >= 0.90, "{k}: {a} ({kinds:?})");
    }
    // Same seed, same bytes; another seed, another model.
    let again = Model::train(params.clone(), &train).unwrap();
    assert_eq!(again.to_bytes(), m.to_bytes());
    assert_ne!(Model::train(Params { seed: 7, ..params }, &train).unwrap().to_bytes(), m.to_bytes());
    // And the file round trip scores identically.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.bin");
    m.save(&path).unwrap();
    let back = Model::load(&path).unwrap();
    assert_eq!(back.score(&pos[0]), m.score(&pos[0]));
}

/// Paragraphs of one language folder of the handbook (`data/debian-handbook-i18n` for
/// ja-JP and en-US), filtered by a script check that does not depend on the identifier.
fn i18n_paras(lang: &str) -> Vec<String> {
    let dir = data_dir().join("debian-handbook-i18n").join(lang);
    let mut pages: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch_data.sh)", dir.display())).map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "html")).collect();
    pages.sort();
    pages.iter().flat_map(|p| paragraphs(&std::fs::read_to_string(p).unwrap())).filter(|p| p.chars().count() >= 60).collect()
}

fn is_hiragana(c: char) -> bool {
    ('\u{3041}'..='\u{309f}').contains(&c)
}

#[test]
fn language_id_on_real_chinese_japanese_and_english_paragraphs() {
    // Japanese: ja-JP paragraphs that were translated (hiragana is only ever Japanese;
    // the untranslated ones are English and left out here).
    let ja: Vec<String> = i18n_paras("ja-JP").into_iter().filter(|p| p.chars().filter(|c| is_hiragana(*c)).count() >= 10).take(400).collect();
    let en: Vec<String> = i18n_paras("en-US").into_iter().take(400).collect();
    let zh: Vec<String> = prose().into_iter().take(400).collect();
    assert!(ja.len() >= 200 && en.len() >= 200 && zh.len() >= 200, "{} {} {}", ja.len(), en.len(), zh.len());
    for (want, set) in [("ja", &ja), ("en", &en), ("zh", &zh)] {
        let wrong: Vec<(String, &str)> = set.iter().map(|p| (p, identify(p).lang)).filter(|(_, l)| *l != want).map(|(p, l)| (p.chars().take(60).collect(), l)).collect();
        let acc = 1.0 - wrong.len() as f64 / set.len() as f64;
        eprintln!("{want}: {acc:.4} of {} ({:?})", set.len(), wrong.iter().take(3).collect::<Vec<_>>());
        assert!(acc >= 0.98, "{want}: accuracy {acc}: {:?}", &wrong[..wrong.len().min(5)]);
    }
    // Cantonese: there is no Cantonese in the sample data, so these are everyday
    // written-Cantonese sentences (forum/WhatsApp register) written for the test, each
    // with its Mandarin counterpart, which must stay `zh`.
    let pairs = [
        ("我哋今晚去邊度食飯呀？佢話想食火鍋，不過我唔係好想。", "我们今晚去哪里吃饭？他说想吃火锅，不过我不是很想。"),
        ("呢部電腦壞咗，你可唔可以幫我睇下係咩問題？", "这台电脑坏了，你可不可以帮我看看是什么问题？"),
        ("佢喺公司做咗三年，而家想轉工。", "他在公司工作了三年，现在想换工作。"),
        ("冇嘢好驚嘅，慢慢嚟就得。", "没什么好怕的，慢慢来就行。"),
    ];
    for (yue, zh) in pairs {
        assert_eq!(identify(yue).lang, "yue", "{yue}");
        assert_eq!(identify(zh).lang, "zh", "{zh}");
    }
    // Traditional-script Mandarin (the zh-TW handbook) is Chinese, not Cantonese.
    let tw = handbook_pages("zh-TW").iter().flat_map(|p| paragraphs(&std::fs::read_to_string(p).unwrap())).filter(|p| p.chars().count() >= 60 && han_share(p) >= 0.4).take(300).collect::<Vec<_>>();
    let yue_false = tw.iter().filter(|p| identify(p).lang == "yue").count();
    assert_eq!(yue_false, 0);
}

/// Valid numbers built from their definitions (checksums computed here, not copied).
fn id_with_check(body17: &str) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let s: u32 = body17.bytes().zip(W).map(|(d, w)| (d - b'0') as u32 * w).sum();
    format!("{body17}{}", b"10X98765432"[(s % 11) as usize] as char)
}

fn luhn_complete(prefix: &str) -> String {
    for d in 0..10 {
        let c = format!("{prefix}{d}");
        if m6_stage_filter::pii::luhn_ok(&c) {
            return c;
        }
    }
    unreachable!()
}

#[test]
fn pii_kinds_replaced_and_look_alikes_kept() {
    let id = id_with_check("11010519900307123");
    let bad_id = format!("{}{}", &id[..17], if id.ends_with('0') { '1' } else { '0' });
    let card = luhn_complete("622202100112345678");
    let bad_card = format!("{}{}", &card[..18], (card.as_bytes()[18] - b'0' + 1) % 10);
    let text = format!(
        "联系人：张三，邮箱 zhang.san@example.com.cn，手机 13812345678 或 +86 139-1234-5678，办公室电话 (010) 62345678、0755-86543210。\
身份证号 {id}，银行卡 {card}，服务器地址 192.168.10.20 与 2001:db8::8a2e:370:7334。"
    );
    let (out, c) = redact(&text, &PiiConfig::default());
    assert_eq!((c.email, c.phone, c.id, c.card, c.ip), (1, 4, 1, 1, 2), "{out}");
    for p in ["<EMAIL>", "<PHONE>", "<ID>", "<CARD>", "<IP>"] {
        assert!(out.contains(p), "{p} missing: {out}");
    }
    for secret in ["zhang.san", "13812345678", "62345678", "86543210", id.as_str(), card.as_str(), "192.168", "2001:db8"] {
        assert!(!out.contains(secret), "{secret} left in {out}");
    }
    // Look-alikes: wrong ID check digit, impossible birth date, failed Luhn, order and
    // tracking numbers, version strings, clock times, a 12-digit number, prices.
    let impossible_date = id_with_check("11010519900230123");
    let look = format!(
        "订单号 {bad_id}，日期不对的 {impossible_date}，卡号 {bad_card}，运单 20231105123456，版本 1.2.3.4.5 和 2.6.32，\
时间 12:30:45，编号 123456789012，价格 1380.00 元，年份 1949-2021，端口 8080。"
    );
    let (kept, c) = redact(&look, &PiiConfig::default());
    assert_eq!(kept, look, "{c:?}");
    // Per kind: only what is on is replaced.
    let only_email = PiiConfig { phone: false, id: false, card: false, ip: false, ..PiiConfig::default() };
    let (out, c) = redact(&text, &only_email);
    assert_eq!((c.email, c.phone, c.id, c.card, c.ip), (1, 0, 0, 0, 0));
    assert!(out.contains("13812345678") && out.contains(&id));
    // Through the filter: on by default, counted per kind in the score columns (inside
    // real prose, so the contact-density and digit rules keep the document).
    let text = format!("{}\n{text}", prose().into_iter().take(6).collect::<Vec<_>>().join("\n"));
    let s = FilterStage::new(FilterConfig::default()).unwrap();
    let (kept, scores) = s.judge_document(None, &text).unwrap_or_else(|d| panic!("{d:?}"));
    assert!(kept.contains("<EMAIL>") && kept.contains("<ID>"), "{kept}");
    assert_eq!((scores.pii_email, scores.pii_phone, scores.pii_id, scores.pii_card, scores.pii_ip), (Some(1), Some(4), Some(1), Some(1), Some(2)));
    // `normalize.pii = false` in TOML turns every kind off; a table turns off one.
    let cfg: FilterConfig = toml::from_str("[normalize]\npii = false\n").unwrap();
    let (kept, scores) = FilterStage::new(cfg).unwrap().judge_document(None, &text).unwrap();
    assert!(kept.contains("zhang.san@example.com.cn") && scores.pii_email.is_none());
    let cfg: FilterConfig = toml::from_str("[normalize.pii]\nip = false\n").unwrap();
    let (kept, scores) = FilterStage::new(cfg).unwrap().judge_document(None, &text).unwrap();
    assert!(kept.contains("192.168.10.20") && kept.contains("<EMAIL>") && scores.pii_ip.is_none() && scores.pii_email == Some(1));
}

fn m6() -> FilterStage {
    FilterStage::new(FilterConfig { preset: "m6".into(), ..Default::default() }).unwrap()
}

#[test]
fn m6_preset_lengths_title_script_punctuation_and_markup() {
    let s = m6();
    // A real line of the handbook, cut to 14 and 15 characters.
    let line: String = prose().into_iter().find(|p| p.chars().take(15).all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))).unwrap();
    let t14: String = line.chars().take(14).collect();
    let t15: String = line.chars().take(15).collect();
    let d = s.judge_document(None, &t14).unwrap_err();
    assert_eq!((d.rule, d.value, d.threshold), (rule::MIN_CHARS, 14.0, 15.0));
    assert_eq!(s.judge_document(None, &t15).unwrap().0, t15);
    // Without the preset both pass (the default minimum is 10).
    let plain = FilterStage::new(FilterConfig::default()).unwrap();
    assert!(plain.judge_document(None, &t14).is_ok());
    // Titles under 5 characters drop the document; no title is not judged.
    let body = poems(1)[0].1.clone();
    assert_eq!(s.judge_document(Some("静夜思"), &body).unwrap_err().rule, rule::TITLE_CHARS);
    assert!(s.judge_document(Some("春夜喜雨五首"), &body).is_ok());
    assert!(s.judge_document(None, &body).is_ok());
    // Only Chinese and English (and punctuation) are kept, repeated punctuation becomes
    // one mark, leftover markup is stripped instead of dropping the document.
    let clean = s.judge_document(None, &line).unwrap().0;
    let messy = format!("<div class=\"para\">{line}</div>😀😀 Привет！！！ <b>apt</b> &amp; dpkg……");
    let (kept, _) = s.judge_document(None, &messy).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(kept, format!("{clean} ！ apt & dpkg…"));
    // The default rule set drops the same text for its markup.
    let head: String = line.chars().take(30).collect();
    assert_eq!(plain.judge_document(None, &format!("<div><p><b>{head}</b></p></div>")).map_err(|d| d.rule).err(), Some(rule::MARKUP));
    // Sensitive words: the block list is on.
    assert_eq!(s.config().text.default_blocklists, true);
    // A value the user set wins over the preset.
    let mut cfg = FilterConfig { preset: "m6".into(), ..Default::default() };
    cfg.text.min_chars = 20;
    assert_eq!(FilterStage::new(cfg).unwrap().judge_document(None, &t15).unwrap_err().rule, rule::MIN_CHARS);
    let e = FilterStage::new(FilterConfig { preset: "m7".into(), ..Default::default() }).err().unwrap().to_string();
    assert!(e.contains("unknown preset `m7`"), "{e}");
}

#[test]
fn scores_of_kept_documents() {
    let s = FilterStage::new(FilterConfig::default()).unwrap();
    let p = prose().into_iter().next().unwrap();
    let (_, sc) = s.judge_document(None, &p).unwrap();
    assert_eq!(sc.lang.as_deref(), Some("zh"));
    assert!(sc.lang_score.unwrap() > 0.5);
    assert_eq!((sc.spam_hits, sc.blocklist_hits), (Some(0), Some(0)));
    // No LM, no classifier: those columns stay null.
    assert_eq!((sc.perplexity, sc.quality), (None, None));
    // Japanese is identified and dropped by the default languages [zh, en].
    let ja = i18n_paras("ja-JP").into_iter().find(|p| p.chars().filter(|c| is_hiragana(*c)).count() >= 20).unwrap();
    let d = s.judge_document(None, &ja).unwrap_err();
    assert_eq!(d.rule, rule::LANG, "{d:?}");
    assert_eq!(d.detail.as_deref(), Some("detected ja"));
}
