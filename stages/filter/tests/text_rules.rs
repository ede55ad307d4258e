//! Each text rule on real text it keeps and real text it drops. A rule is tested on
//! its own (every other rule off), so the test shows that rule's decision.

mod common;

use common::*;
use m6_stage_filter::text::rule;
use m6_stage_filter::{all_rules, FilterConfig, FilterStage};

/// A stage with only `only` on (plus the always-on bomb guard).
fn only(only: &str, tweak: impl FnOnce(&mut FilterConfig)) -> FilterStage {
    let mut cfg = FilterConfig::default();
    cfg.disable = all_rules().into_iter().filter(|r| *r != only && *r != "image.bomb").map(String::from).collect();
    tweak(&mut cfg);
    FilterStage::new(cfg).unwrap()
}

#[track_caller]
fn keeps(s: &FilterStage, text: &str) {
    if let Err(d) = s.judge_text(text) {
        panic!("dropped by {} (value {}, threshold {}): {}", d.rule, d.value, d.threshold, text.chars().take(200).collect::<String>());
    }
}

#[track_caller]
fn drops(s: &FilterStage, text: &str, rule: &str) -> f64 {
    match s.judge_text(text) {
        Ok(_) => panic!("kept, expected {rule}: {}", text.chars().take(200).collect::<String>()),
        Err(d) => {
            assert_eq!(d.rule, rule, "value {} threshold {}", d.value, d.threshold);
            d.value
        }
    }
}

/// A page of running prose (60 paragraphs of 100+ characters).
const PROSE: &str = "sect.package-meta-information.html";

fn poem() -> String {
    poems(1)[0].1.clone()
}

/// A real zh-CN Debian Handbook paragraph of at least `min` characters.
fn prose(min: usize) -> String {
    zh_paras().into_iter().find(|p| p.chars().count() >= min).unwrap()
}

/// Translated (mostly Han) paragraphs of the zh-CN handbook: some pages are still English.
fn zh_paras() -> Vec<String> {
    handbook_pages("zh-CN")
        .iter()
        .flat_map(|p| paragraphs(&std::fs::read_to_string(p).unwrap()))
        .filter(|p| p.chars().filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c)).count() * 2 >= p.chars().count())
        .collect()
}

fn screen_with(page: &str, needle: &str) -> String {
    screens(&handbook_page("zh-CN", page)).into_iter().find(|s| s.contains(needle)).unwrap_or_else(|| panic!("no screen with {needle} in {page}"))
}

#[test]
fn min_and_max_chars() {
    let s = only(rule::MIN_CHARS, |_| {});
    keeps(&s, &poem());
    // A title alone ("帝京篇十首 一") is too short to be a document.
    let v = drops(&s, &poems(1)[0].0, rule::MIN_CHARS);
    assert_eq!(v, 7.0);
    let s = only(rule::MAX_CHARS, |c| c.text.max_chars = 200);
    keeps(&s, &poem());
    drops(&s, &strip_tags(&handbook_page("zh-CN", "apt.html")), rule::MAX_CHARS);
}

#[test]
fn cjk_ratio_and_language() {
    let s = only(rule::CJK_RATIO, |_| {});
    keeps(&s, &poem());
    keeps(&s, &prose(100));
    // An English console listing from the same book is not Chinese text.
    drops(&s, &screen_with("sect.x509-cert.html", "certbot"), rule::CJK_RATIO);

    let s = only(rule::LANG, |c| c.text.languages = vec!["zh".into()]);
    keeps(&s, &poem());
    drops(&s, &screen_with("sect.x509-cert.html", "certbot"), rule::LANG);
    // With English allowed (the default) the listing passes the language rule.
    let s = only(rule::LANG, |_| {});
    keeps(&s, &screen_with("sect.x509-cert.html", "certbot"));
}

#[test]
fn markup_and_javascript() {
    let s = only(rule::MARKUP, |_| {});
    keeps(&s, &prose(100));
    // Raw page source: an extractor that failed leaves this behind.
    let html = handbook_page("zh-CN", "apt.html");
    let raw: String = html.chars().skip(html.chars().count() / 2).take(3000).collect();
    drops(&s, &raw, rule::MARKUP);

    let s = only(rule::JAVASCRIPT, |_| {});
    keeps(&s, &prose(100));
    keeps(&s, &screen_with("sect.x509-cert.html", "certbot"));
    // jQuery-style page code as found in scraped pages (real shape, from the jQuery docs' first example).
    drops(&s, "$( document ).ready(function() {\n  console.log( \"ready!\" );\n});", rule::JAVASCRIPT);
}

#[test]
fn punctuation_runs() {
    let s = only(rule::PUNCT_RUNS, |_| {});
    keeps(&s, &prose(100));
    keeps(&s, &poem());
    // easyrsa's progress dots: "..................+++++".
    drops(&s, &screen_with("sect.x509-cert.html", "build-ca"), rule::PUNCT_RUNS);
}

#[test]
fn url_email_phone_density() {
    let s = only(rule::URL_DENSITY, |_| {});
    keeps(&s, &prose(100));
    // A list of mirror URLs from the handbook's sources.list examples.
    let urls: Vec<String> = screens(&handbook_page("zh-CN", "apt.html")).into_iter().flat_map(|s| s.lines().map(String::from).collect::<Vec<_>>()).filter(|l| l.contains("http")).collect();
    assert!(urls.len() >= 3, "{urls:?}");
    drops(&s, &urls.join("\n"), rule::URL_DENSITY);
}

#[test]
fn symbol_and_digit_ratios() {
    let s = only(rule::DIGIT_RATIO, |_| {});
    keeps(&s, &prose(100));
    keeps(&s, &poem());
    // A real table of numbers: `free` output in the handbook's remedial course.
    let numeric = screen_with("short-remedial-course.html", "$ free");
    drops(&s, &numeric, rule::DIGIT_RATIO);

    let s = only(rule::SYMBOL_RATIO, |_| {});
    keeps(&s, &prose(100));
    keeps(&s, &poem());
    // The same poem as social-media spam decorates it.
    let decorated: String = poem().chars().flat_map(|c| if c == '，' || c == '。' { vec!['★', '☆', '♥'] } else { vec![c] }).collect();
    drops(&s, &decorated, rule::SYMBOL_RATIO);
}

#[test]
fn duplicate_lines_and_paragraphs() {
    let s = only(rule::DUP_LINES, |_| {});
    let p = poem();
    keeps(&s, &p);
    // The page chrome repeated by a bad extractor: each poem line three times.
    let tripled = p.lines().flat_map(|l| [l, l, l]).collect::<Vec<_>>().join("\n");
    drops(&s, &tripled, rule::DUP_LINES);

    let s = only(rule::DUP_PARAS, |_| {});
    let paras: Vec<String> = paragraphs(&handbook_page("zh-CN", PROSE)).into_iter().filter(|p| p.chars().count() >= 100).collect();
    keeps(&s, &paras[..10].join("\n\n"));
    let repeated = [&paras[..3], &paras[..3], &paras[..3]].concat().join("\n\n");
    drops(&s, &repeated, rule::DUP_PARAS);
    let s = only(rule::DUP_PARA_CHARS, |_| {});
    keeps(&s, &paras[..10].join("\n\n"));
    drops(&s, &repeated, rule::DUP_PARA_CHARS);
    let s = only(rule::DUP_LINE_CHARS, |_| {});
    keeps(&s, &p);
    drops(&s, &tripled, rule::DUP_LINE_CHARS);
}

#[test]
fn ngram_repetition_chars_and_words() {
    let long = zh_paras().into_iter().filter(|p| p.chars().count() >= 100).take(8).collect::<Vec<_>>().join("\n");
    // One sentence stuttered over and over, as broken generators and SEO pages do.
    let sentence = prose(60).chars().take(30).collect::<String>();
    let stutter = sentence.repeat(6);
    for r in [rule::DUP_CHAR_NGRAM, rule::DUP_WORD_NGRAM] {
        let s = only(r, |_| {});
        keeps(&s, &long);
        keeps(&s, &poems(5).iter().map(|p| p.1.clone()).collect::<Vec<_>>().join("\n"));
        drops(&s, &stutter, r);
    }
    // A short phrase repeated: the top n-gram covers most characters.
    let phrase: String = poem().chars().take(2).collect();
    let top = std::iter::repeat_n(phrase.as_str(), 40).collect::<Vec<_>>().join(" ");
    for r in [rule::TOP_CHAR_NGRAM, rule::TOP_WORD_NGRAM] {
        let s = only(r, |_| {});
        keeps(&s, &long);
        drops(&s, &top, r);
    }
}

#[test]
fn spam_phrases() {
    let s = only(rule::SPAM, |_| {});
    keeps(&s, &prose(100));
    keeps(&s, &poem());
    // One ad phrase in a long article is not spam; a poem wrapped in ad copy is.
    keeps(&s, &format!("{}\n如需帮助请加微信。", paragraphs(&handbook_page("zh-CN", PROSE))[..6].join("\n")));
    drops(&s, &format!("{}\n加微信领取全集！扫码关注，免费领取！", poem()), rule::SPAM);
}

#[test]
fn block_lists_default_and_user() {
    let s = only(rule::BLOCKLIST, |_| {});
    keeps(&s, &poem());
    drops(&s, &format!("{} 他妈的", poem()), rule::BLOCKLIST);
    // A user list (here: the word 明月) drops real poems that use it and keeps the rest.
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("mine.txt");
    std::fs::write(&list, "# user list\n明月\n").unwrap();
    let s = only(rule::BLOCKLIST, |c| {
        c.text.blocklists = vec![list.clone()];
        c.text.default_blocklists = false;
    });
    let ps = poems(300);
    let with = ps.iter().find(|p| p.1.contains("明月")).unwrap();
    let without = ps.iter().find(|p| !p.1.contains("明月")).unwrap();
    assert_eq!(drops(&s, &with.1, rule::BLOCKLIST), with.1.matches("明月").count() as f64);
    keeps(&s, &without.1);
}

#[test]
fn default_rules_keep_real_text() {
    let s = FilterStage::new(FilterConfig::default()).unwrap();
    let ps = poems(2000);
    let kept = ps.iter().filter(|p| s.judge_text(&p.1).is_ok()).count();
    assert!(kept * 100 >= ps.len() * 95, "only {kept} of {} poems kept", ps.len());
    let paras: Vec<String> = zh_paras().into_iter().filter(|p| p.chars().count() >= 30).collect();
    let kept = paras.iter().filter(|p| s.judge_text(p).is_ok()).count();
    assert!(kept * 100 >= paras.len() * 85, "only {kept} of {} handbook paragraphs kept", paras.len());
}

#[test]
fn normalisation_of_kept_text() {
    let mut cfg = FilterConfig::default();
    cfg.normalize.t2s = true;
    let s = FilterStage::new(cfg).unwrap();
    let kept = s.judge_text(&poem()).unwrap();
    assert_eq!(kept.lines().next().unwrap(), "秦川雄帝宅，函谷壮皇居。");
    // zh-TW handbook prose comes out simplified.
    let tw = paragraphs(&handbook_page("zh-TW", "apt.html")).into_iter().find(|p| p.contains("套件")).unwrap();
    let out = s.judge_text(&tw).unwrap();
    assert!(!out.contains("體") && !out.contains("軟"), "{out}");
}

#[test]
fn config_errors_name_the_field() {
    let mut cfg = FilterConfig::default();
    cfg.disable = vec!["text.min_char".into()];
    let e = FilterStage::new(cfg).err().unwrap().to_string();
    assert!(e.contains("unknown rule `text.min_char`") && e.contains("did you mean text.min_chars"), "{e}");

    let mut cfg = FilterConfig::default();
    cfg.text.min_cjk_ratio = 1.5;
    let e = FilterStage::new(cfg).err().unwrap().to_string();
    assert!(e.contains("filter.text.min_cjk_ratio = 1.5") && e.contains("between 0 and 1"), "{e}");

    let mut cfg = FilterConfig::default();
    cfg.text.max_dup_char_ngram = vec![0.1];
    let e = FilterStage::new(cfg).err().unwrap().to_string();
    assert!(e.contains("filter.text.max_dup_char_ngram has 1 values, expected 6"), "{e}");

    let mut cfg = FilterConfig::default();
    cfg.text.languages = vec!["xx".into()];
    assert!(FilterStage::new(cfg).err().unwrap().to_string().contains("unknown language `xx`"));

    let mut cfg = FilterConfig::default();
    cfg.image.formats = vec!["tiff".into()];
    assert!(FilterStage::new(cfg).err().unwrap().to_string().contains("filter.image.formats has unknown format `tiff`"));

    let mut cfg = FilterConfig::default();
    cfg.text.lm_model = "/nonexistent/zh.lm".into();
    let e = FilterStage::new(cfg).err().unwrap().to_string();
    assert!(e.contains("filter.text.lm_model") && e.contains("/nonexistent/zh.lm"), "{e}");

    let mut cfg = FilterConfig::default();
    cfg.disable = vec!["image.bomb".into()];
    assert!(FilterStage::new(cfg).err().unwrap().to_string().contains("cannot be turned off"));

    // Unknown keys and wrong types are refused by the config parser, naming the key.
    let t: toml::Table = "[text]\nmin_chars = 5\nmax_perplexyti = 3\n".parse().unwrap();
    let e = m6_pipeline::config::stage_config::<FilterConfig>("filter", &t, &[]).err().unwrap().to_string();
    assert!(e.contains("max_perplexyti"), "{e}");
    let t: toml::Table = "[text]\nmin_chars = \"ten\"\n".parse().unwrap();
    let e = m6_pipeline::config::stage_config::<FilterConfig>("filter", &t, &[]).err().unwrap().to_string();
    assert!(e.contains("[filter]"), "{e}");
}
