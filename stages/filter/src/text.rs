//! Text rules for documents (and, through [`crate::caption`], for captions): length,
//! script and language, markup and noise residue, Gopher-style repetition adapted to
//! Chinese, spam phrases, block lists and LM perplexity. Each rule measures one value
//! and compares it with one threshold, so a drop can always say why.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::lm::Model;
use crate::script::{is_han, is_punct, is_symbol};
use crate::Drop;
use m6_schemas::DocScores;

/// Rule names (the `rule` column of rejects, and what `disable` accepts).
pub mod rule {
    pub const MIN_CHARS: &str = "text.min_chars";
    pub const MAX_CHARS: &str = "text.max_chars";
    pub const CJK_RATIO: &str = "text.cjk_ratio";
    pub const LANG: &str = "text.lang";
    pub const MARKUP: &str = "text.markup";
    pub const JAVASCRIPT: &str = "text.javascript";
    pub const PUNCT_RUNS: &str = "text.punct_runs";
    pub const URL_DENSITY: &str = "text.url_density";
    pub const SYMBOL_RATIO: &str = "text.symbol_ratio";
    pub const DIGIT_RATIO: &str = "text.digit_ratio";
    pub const DUP_LINES: &str = "text.dup_lines";
    pub const DUP_LINE_CHARS: &str = "text.dup_line_chars";
    pub const DUP_PARAS: &str = "text.dup_paras";
    pub const DUP_PARA_CHARS: &str = "text.dup_para_chars";
    pub const TOP_CHAR_NGRAM: &str = "text.top_char_ngram";
    pub const DUP_CHAR_NGRAM: &str = "text.dup_char_ngram";
    pub const TOP_WORD_NGRAM: &str = "text.top_word_ngram";
    pub const DUP_WORD_NGRAM: &str = "text.dup_word_ngram";
    pub const SPAM: &str = "text.spam";
    pub const BLOCKLIST: &str = "text.blocklist";
    pub const PERPLEXITY: &str = "text.perplexity";
    pub const TITLE_CHARS: &str = "text.title_chars";
    pub const QUALITY: &str = "text.quality";
    pub const ALL: &[&str] = &[
        MIN_CHARS, MAX_CHARS, CJK_RATIO, LANG, MARKUP, JAVASCRIPT, PUNCT_RUNS, URL_DENSITY, SYMBOL_RATIO, DIGIT_RATIO, DUP_LINES, DUP_LINE_CHARS,
        DUP_PARAS, DUP_PARA_CHARS, TOP_CHAR_NGRAM, DUP_CHAR_NGRAM, TOP_WORD_NGRAM, DUP_WORD_NGRAM, SPAM, BLOCKLIST, PERPLEXITY, TITLE_CHARS, QUALITY,
    ];
}

const DEFAULT_PROFANITY: &str = include_str!("../data/blocklist/profanity.txt");
const DEFAULT_PORN: &str = include_str!("../data/blocklist/porn.txt");
const DEFAULT_SENSITIVE: &str = include_str!("../data/blocklist/sensitive.txt");
const DEFAULT_SPAM: &str = include_str!("../data/blocklist/spam.txt");

/// `[filter.text]`: thresholds of the document text rules. A rule is turned off by
/// naming it in `[filter] disable`; ratios are in [0, 1].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TextConfig {
    /// `text.min_chars`: drop text with fewer characters (of the normalised text, which
    /// is what is kept). Default 10.
    pub min_chars: usize,
    /// `text.title_chars`: drop documents whose title has fewer characters (after
    /// trimming). Documents without a title (plain-text sources) are not judged. Default
    /// 0 (off); the `m6` preset sets 5.
    pub min_title_chars: usize,
    /// `text.max_chars`: drop text with more characters. Default 1_000_000.
    pub max_chars: usize,
    /// `text.cjk_ratio`: drop text whose Han characters are a smaller share of its
    /// non-whitespace characters. Default 0.1 (Chinese technical text quotes a lot of
    /// English commands; M6 keeps Chinese and English).
    pub min_cjk_ratio: f64,
    /// `text.lang`: languages kept, as the `lang` column names them (`zh`, `en`, `ja`,
    /// `yue`, `ko`, `fr`, ...; see `langid`), or `other` for every language not listed.
    /// Default ["zh", "en"].
    pub languages: Vec<String>,
    /// `text.lang`: drop text identified as a language not kept with at least this
    /// confidence (`lang_score`). A less certain answer keeps the text when a kept
    /// language shares its script: on short or noisy text (console listings) the
    /// runner-up within a script is often as likely. Default 0.5.
    pub min_lang_score: f64,
    /// `text.markup`: drop text where HTML tags, comments and entities are more than
    /// this share of the characters. Default 0.02.
    pub max_markup_ratio: f64,
    /// `text.javascript`: drop text where more than this share of the non-empty lines
    /// look like JavaScript (`function(`, `document.`, `});`, ...). Default 0.1.
    pub max_js_line_ratio: f64,
    /// `text.punct_runs`: length from which a run of one punctuation character counts
    /// as noise. Default 4.
    pub punct_run_len: usize,
    /// `text.punct_runs`: drop text where characters in such runs are more than this
    /// share of the non-whitespace characters. Default 0.05.
    pub max_punct_run_ratio: f64,
    /// `text.url_density`: drop text where URLs, e-mail addresses and phone numbers
    /// are more than this share of the characters. Default 0.3.
    pub max_url_ratio: f64,
    /// `text.symbol_ratio`: drop text where symbols (emoji, box drawing, arrows,
    /// control characters: not letters, digits or punctuation) are more than this
    /// share of the non-whitespace characters. Default 0.05.
    pub max_symbol_ratio: f64,
    /// `text.digit_ratio`: likewise for digits. Default 0.3.
    pub max_digit_ratio: f64,
    /// `text.dup_lines`: drop text where more than this share of its lines repeat an
    /// earlier line (Gopher: 0.30). Default 0.3.
    pub max_dup_line_ratio: f64,
    /// `text.dup_line_chars`: likewise measured in characters (Gopher: 0.20). Default 0.2.
    pub max_dup_line_char_ratio: f64,
    /// `text.dup_paras`: share of paragraphs (blank-line separated) repeating an earlier
    /// one (Gopher: 0.30). Default 0.3.
    pub max_dup_para_ratio: f64,
    /// `text.dup_para_chars`: likewise in characters (Gopher: 0.20). Default 0.2.
    pub max_dup_para_char_ratio: f64,
    /// `text.top_char_ngram`: for n = 2, 3, 4, the largest share of characters covered
    /// by the most frequent character n-gram (whitespace and punctuation skipped).
    /// Characters play the role of Gopher's words; Chinese text reuses characters far
    /// more than English reuses words, so the bounds are looser. Default [0.3, 0.25, 0.2].
    pub max_top_char_ngram: Vec<f64>,
    /// `text.dup_char_ngram`: for n = 5..=10, the largest share of characters in repeated
    /// occurrences of character n-grams (Gopher's 0.15 ... 0.10 over words). Default
    /// [0.2, 0.18, 0.16, 0.15, 0.14, 0.13].
    pub max_dup_char_ngram: Vec<f64>,
    /// `text.top_word_ngram`: as `top_char_ngram` over jieba words, n = 2, 3, 4 (Gopher's
    /// values). Default [0.2, 0.18, 0.16].
    pub max_top_word_ngram: Vec<f64>,
    /// `text.dup_word_ngram`: as `dup_char_ngram` over jieba words, n = 5..=10 (Gopher's
    /// values). Default [0.15, 0.14, 0.13, 0.12, 0.11, 0.10].
    pub max_dup_word_ngram: Vec<f64>,
    /// The n-gram repetition rules only judge texts with at least this many
    /// characters: on a quatrain every statistic is noise. Default 50.
    pub repetition_min_chars: usize,
    /// `text.spam`: extra files of advertising phrases (one per line, `#` comments).
    pub spam_lists: Vec<PathBuf>,
    /// Use the example spam phrases in `data/blocklist/spam.txt`. Default true.
    pub default_spam_list: bool,
    /// `text.spam`: drop text with at least `spam_min_hits` spam phrases and more than
    /// this many per 1000 characters. Default 5.0.
    pub max_spam_per_1000: f64,
    /// `text.spam`: see `max_spam_per_1000`. Default 2.
    pub spam_min_hits: usize,
    /// `text.blocklist`: block-list files (one term per line, `#` comments), matched
    /// with Aho–Corasick, ASCII case-insensitively.
    pub blocklists: Vec<PathBuf>,
    /// Use the small example lists in `data/blocklist/` (profanity, porn, sensitive).
    /// Default true.
    pub default_blocklists: bool,
    /// `text.blocklist`: drop text with more block-list hits than this. Default 0.
    pub max_blocklist_hits: usize,
    /// `text.perplexity`: model file written by `m6corpus lm train`. Empty (default):
    /// the rule is off.
    pub lm_model: String,
    /// `text.perplexity`: drop text whose per-character perplexity is higher. Default 1000.
    pub max_perplexity: f64,
    /// `text.quality`: classifier file written by `m6corpus quality train`. Empty
    /// (default): the rule is off and the `quality` column null.
    pub quality_model: String,
    /// `text.quality`: drop text the classifier scores below this (probability of the
    /// positive class). Default 0.5.
    pub min_quality: f64,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            min_chars: 10,
            min_title_chars: 0,
            max_chars: 1_000_000,
            min_cjk_ratio: 0.1,
            languages: vec!["zh".into(), "en".into()],
            min_lang_score: 0.5,
            max_markup_ratio: 0.02,
            max_js_line_ratio: 0.1,
            punct_run_len: 4,
            max_punct_run_ratio: 0.05,
            max_url_ratio: 0.3,
            max_symbol_ratio: 0.05,
            max_digit_ratio: 0.3,
            max_dup_line_ratio: 0.3,
            max_dup_line_char_ratio: 0.2,
            max_dup_para_ratio: 0.3,
            max_dup_para_char_ratio: 0.2,
            max_top_char_ngram: vec![0.3, 0.25, 0.2],
            max_dup_char_ngram: vec![0.2, 0.18, 0.16, 0.15, 0.14, 0.13],
            max_top_word_ngram: vec![0.2, 0.18, 0.16],
            max_dup_word_ngram: vec![0.15, 0.14, 0.13, 0.12, 0.11, 0.10],
            repetition_min_chars: 50,
            spam_lists: vec![],
            default_spam_list: true,
            max_spam_per_1000: 5.0,
            spam_min_hits: 2,
            blocklists: vec![],
            default_blocklists: true,
            max_blocklist_hits: 0,
            lm_model: String::new(),
            max_perplexity: 1000.0,
            quality_model: String::new(),
            min_quality: 0.5,
        }
    }
}

fn ratio(field: &str, v: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{field} = {v}: must be a ratio between 0 and 1"));
    }
    Ok(())
}

impl TextConfig {
    /// Checks every threshold, naming the field at fault. `prefix` is the table path.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        let f = |n: &str| format!("{prefix}.{n}");
        for (n, v) in [
            ("min_cjk_ratio", self.min_cjk_ratio),
            ("min_lang_score", self.min_lang_score),
            ("min_quality", self.min_quality),
            ("max_markup_ratio", self.max_markup_ratio),
            ("max_js_line_ratio", self.max_js_line_ratio),
            ("max_punct_run_ratio", self.max_punct_run_ratio),
            ("max_url_ratio", self.max_url_ratio),
            ("max_symbol_ratio", self.max_symbol_ratio),
            ("max_digit_ratio", self.max_digit_ratio),
            ("max_dup_line_ratio", self.max_dup_line_ratio),
            ("max_dup_line_char_ratio", self.max_dup_line_char_ratio),
            ("max_dup_para_ratio", self.max_dup_para_ratio),
            ("max_dup_para_char_ratio", self.max_dup_para_char_ratio),
        ] {
            ratio(&f(n), v)?;
        }
        if self.max_chars < self.min_chars {
            return Err(format!("{} = {} is below {} = {}", f("max_chars"), self.max_chars, f("min_chars"), self.min_chars));
        }
        for (n, v, len) in [
            ("max_top_char_ngram", &self.max_top_char_ngram, 3),
            ("max_dup_char_ngram", &self.max_dup_char_ngram, 6),
            ("max_top_word_ngram", &self.max_top_word_ngram, 3),
            ("max_dup_word_ngram", &self.max_dup_word_ngram, 6),
        ] {
            if v.len() != len {
                return Err(format!("{} has {} values, expected {len} (one per n-gram size)", f(n), v.len()));
            }
            for x in v {
                ratio(&f(n), *x)?;
            }
        }
        if self.punct_run_len < 2 {
            return Err(format!("{} = {}: must be at least 2", f("punct_run_len"), self.punct_run_len));
        }
        for l in &self.languages {
            if l != "other" && !crate::langid::known(l) {
                return Err(format!("{} has unknown language `{l}` (expected a code the `lang` column uses: zh, en, ja, yue, ko, fr, de, ru, ..., or other)", f("languages")));
            }
        }
        if !(self.max_spam_per_1000 >= 0.0) {
            return Err(format!("{} = {}: must be >= 0", f("max_spam_per_1000"), self.max_spam_per_1000));
        }
        if !(self.max_perplexity > 1.0) {
            return Err(format!("{} = {}: a perplexity is always >= 1", f("max_perplexity"), self.max_perplexity));
        }
        Ok(())
    }
}

/// Reads a term list: one term per line, blank lines and `#` comments skipped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

fn read_list(p: &PathBuf, field: &str) -> Result<Vec<String>, String> {
    let t = std::fs::read_to_string(p).map_err(|e| format!("{field}: cannot read {}: {e}", p.display()))?;
    Ok(parse_list(&t))
}

/// A compiled term list.
pub struct TermMatcher {
    ac: Option<AhoCorasick>,
    pub terms: usize,
}

impl TermMatcher {
    pub fn new(terms: &[String]) -> Result<Self, String> {
        if terms.is_empty() {
            return Ok(TermMatcher { ac: None, terms: 0 });
        }
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(terms)
            .map_err(|e| format!("block list: {e}"))?;
        Ok(TermMatcher { ac: Some(ac), terms: terms.len() })
    }
    /// Non-overlapping hits and the first term hit.
    pub fn hits<'t>(&self, text: &'t str) -> (usize, Option<&'t str>) {
        let Some(ac) = &self.ac else { return (0, None) };
        let mut n = 0;
        let mut first = None;
        for m in ac.find_iter(text) {
            n += 1;
            first.get_or_insert(&text[m.start()..m.end()]);
        }
        (n, first)
    }
}

/// Builds the block-list matcher: the examples (if on) plus the user's files.
pub fn blocklist(cfg: &TextConfig, prefix: &str) -> Result<TermMatcher, String> {
    let mut terms = vec![];
    if cfg.default_blocklists {
        for l in [DEFAULT_PROFANITY, DEFAULT_PORN, DEFAULT_SENSITIVE] {
            terms.extend(parse_list(l));
        }
    }
    for p in &cfg.blocklists {
        terms.extend(read_list(p, &format!("{prefix}.blocklists"))?);
    }
    TermMatcher::new(&terms)
}

fn spamlist(cfg: &TextConfig, prefix: &str) -> Result<TermMatcher, String> {
    let mut terms = vec![];
    if cfg.default_spam_list {
        terms.extend(parse_list(DEFAULT_SPAM));
    }
    for p in &cfg.spam_lists {
        terms.extend(read_list(p, &format!("{prefix}.spam_lists"))?);
    }
    TermMatcher::new(&terms)
}

struct Patterns {
    markup: Regex,
    contact: Regex,
    js: AhoCorasick,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        markup: Regex::new(r"(?s)<!--.*?-->|</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]{0,500})?/?>|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,10});").unwrap(),
        contact: Regex::new(
            r"(?i)(?:https?://|ftp://|www\.)[^\s<>\x22'，。、；：！？（）【】《》]+|[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+|(?:\+?86[- ]?)?1[3-9][0-9]{9}|0[0-9]{2,3}-[0-9]{7,8}|[0-9]{3}-[0-9]{3,4}-[0-9]{4}",
        )
        .unwrap(),
        js: AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build([
                "function(", "function (", "var ", "document.", "window.", "console.", "=>", "});", "javascript:", "getelementbyid", "addeventlistener", "$(", "jquery",
                "<script", ".prototype.", "typeof ",
            ])
            .unwrap(),
    })
}

/// One segmenter for the word rules and the quality classifier.
fn jieba() -> &'static m6_text::Jieba {
    m6_text::jieba()
}

/// The compiled text rules.
pub struct TextRules {
    pub cfg: TextConfig,
    disabled: HashSet<&'static str>,
    blocklist: TermMatcher,
    spam: TermMatcher,
    pub lm: Option<Arc<Model>>,
    pub quality: Option<Arc<m6_quality::Model>>,
}

impl TextRules {
    pub fn new(cfg: TextConfig, disabled: HashSet<&'static str>, prefix: &str) -> Result<Self, String> {
        cfg.validate(prefix)?;
        let blocklist = blocklist(&cfg, prefix)?;
        let spam = spamlist(&cfg, prefix)?;
        let lm = if cfg.lm_model.is_empty() || disabled.contains(rule::PERPLEXITY) {
            None
        } else {
            let m = Model::load(std::path::Path::new(&cfg.lm_model)).map_err(|e| format!("{prefix}.lm_model: {e}"))?;
            Some(Arc::new(m))
        };
        // The quality column is written whenever a model is given, even with the rule off.
        let quality = if cfg.quality_model.is_empty() {
            None
        } else {
            let m = m6_quality::Model::load(std::path::Path::new(&cfg.quality_model)).map_err(|e| format!("{prefix}.quality_model: {e}"))?;
            Some(Arc::new(m))
        };
        // jieba's dictionary (a fifth of a second to load) loads on the first document
        // that needs words, not here: image and pair datasets never need it.
        Ok(TextRules { cfg, disabled, blocklist, spam, lm, quality })
    }

    fn on(&self, r: &str) -> bool {
        !self.disabled.contains(r)
    }

    pub fn blocklist(&self) -> &TermMatcher {
        &self.blocklist
    }

    pub fn blocklist_terms(&self) -> usize {
        self.blocklist.terms
    }

    /// The first rule `text` fails, or `None` to keep it, with the scores of a kept
    /// text in `scores`. `normalized` is the text that will be kept: the length rule and
    /// the perplexity measure it (the LM was trained on such text); the other rules, the
    /// language and the quality classifier judge the text as it came (the classifier
    /// reuses the word rules' jieba segmentation of it, and `quality train` reads
    /// dataset text as it is).
    pub fn check(&self, text: &str, normalized: &str, title: Option<&str>, scores: &mut DocScores) -> Option<Drop> {
        let c = &self.cfg;
        let drop = |rule: &'static str, value: f64, threshold: f64| Some(Drop { rule, value, threshold, detail: None });
        if let Some(t) = title {
            let n = t.trim().chars().count();
            if self.on(rule::TITLE_CHARS) && n < c.min_title_chars {
                return drop(rule::TITLE_CHARS, n as f64, c.min_title_chars as f64);
            }
        }
        // One pass for the character statistics.
        let (mut chars, mut non_ws, mut han, mut digits, mut symbols, mut run_chars) = (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
        let (mut prev, mut run) = ('\0', 0usize);
        for ch in text.chars() {
            chars += 1;
            if ch.is_whitespace() {
                prev = ch;
                run = 0;
                continue;
            }
            non_ws += 1;
            if is_han(ch) {
                han += 1;
            } else if ch.is_numeric() {
                digits += 1;
            } else if is_symbol(ch) {
                symbols += 1;
            }
            if is_punct(ch) && ch == prev {
                run += 1;
                if run == c.punct_run_len {
                    run_chars += run;
                } else if run > c.punct_run_len {
                    run_chars += 1;
                }
            } else {
                run = 1;
            }
            prev = ch;
        }
        let trimmed = text.trim().chars().count();
        let kept_chars = normalized.trim().chars().count();
        if self.on(rule::MIN_CHARS) && kept_chars < c.min_chars {
            return drop(rule::MIN_CHARS, kept_chars as f64, c.min_chars as f64);
        }
        if self.on(rule::MAX_CHARS) && chars > c.max_chars {
            return drop(rule::MAX_CHARS, chars as f64, c.max_chars as f64);
        }
        let nw = non_ws.max(1) as f64;
        if self.on(rule::CJK_RATIO) && (han as f64 / nw) < c.min_cjk_ratio {
            return drop(rule::CJK_RATIO, han as f64 / nw, c.min_cjk_ratio);
        }
        let id = crate::langid::identify(text);
        scores.lang = Some(id.lang.to_string());
        scores.lang_score = Some(id.score);
        if self.on(rule::LANG) {
            let listed = c.languages.iter().any(|l| l == id.lang);
            let kept = listed || (id.lang != "und" && c.languages.iter().any(|l| l == "other"));
            // An unsure answer keeps the text when a kept language is written in the same
            // script (an English console listing read as Dutch); another script is never
            // a kept language, however sure.
            let same_script = c.languages.iter().any(|l| crate::langid::script_of(l) == id.script);
            if !kept && (id.score as f64 >= c.min_lang_score || !same_script) {
                return Some(Drop { rule: rule::LANG, value: id.score as f64, threshold: c.min_lang_score, detail: Some(format!("detected {}", id.lang)) });
            }
        }
        let p = patterns();
        let total = chars.max(1) as f64;
        if self.on(rule::MARKUP) {
            let m: usize = p.markup.find_iter(text).map(|m| m.as_str().chars().count()).sum();
            if m as f64 / total > c.max_markup_ratio {
                return drop(rule::MARKUP, m as f64 / total, c.max_markup_ratio);
            }
        }
        if self.on(rule::JAVASCRIPT) {
            let (mut lines, mut js) = (0usize, 0usize);
            for l in text.lines().filter(|l| !l.trim().is_empty()) {
                lines += 1;
                js += p.js.is_match(l) as usize;
            }
            let r = js as f64 / lines.max(1) as f64;
            if r > c.max_js_line_ratio {
                return drop(rule::JAVASCRIPT, r, c.max_js_line_ratio);
            }
        }
        if self.on(rule::PUNCT_RUNS) && run_chars as f64 / nw > c.max_punct_run_ratio {
            return drop(rule::PUNCT_RUNS, run_chars as f64 / nw, c.max_punct_run_ratio);
        }
        if self.on(rule::URL_DENSITY) {
            let m: usize = p.contact.find_iter(text).map(|m| m.as_str().chars().count()).sum();
            if m as f64 / total > c.max_url_ratio {
                return drop(rule::URL_DENSITY, m as f64 / total, c.max_url_ratio);
            }
        }
        if self.on(rule::SYMBOL_RATIO) && symbols as f64 / nw > c.max_symbol_ratio {
            return drop(rule::SYMBOL_RATIO, symbols as f64 / nw, c.max_symbol_ratio);
        }
        if self.on(rule::DIGIT_RATIO) && digits as f64 / nw > c.max_digit_ratio {
            return drop(rule::DIGIT_RATIO, digits as f64 / nw, c.max_digit_ratio);
        }
        if let Some(d) = self.check_duplicates(text) {
            return Some(d);
        }
        // jieba's words of `text`, cut once for the word rules and the classifier.
        let mut words: Option<Vec<&str>> = None;
        if trimmed >= c.repetition_min_chars {
            if let Some(d) = self.check_ngrams(text, &mut words) {
                return Some(d);
            }
        }
        // Counted even with the rule off: the columns let a user pick a threshold later.
        let (hits, first) = self.spam.hits(text);
        scores.spam_hits = Some(hits as u32);
        if self.on(rule::SPAM) {
            let per = hits as f64 * 1000.0 / total;
            if hits >= c.spam_min_hits && per > c.max_spam_per_1000 {
                return Some(Drop { rule: rule::SPAM, value: per, threshold: c.max_spam_per_1000, detail: first.map(|f| format!("e.g. `{f}`")) });
            }
        }
        let (hits, _) = self.blocklist.hits(text);
        scores.blocklist_hits = Some(hits as u32);
        if self.on(rule::BLOCKLIST) && hits > c.max_blocklist_hits {
            // The matched term is not echoed: it is what the list exists to keep out.
            return drop(rule::BLOCKLIST, hits as f64, c.max_blocklist_hits as f64);
        }
        if let Some(lm) = &self.lm {
            let ppl = lm.perplexity(normalized);
            scores.perplexity = Some(ppl as f32);
            if ppl > c.max_perplexity {
                return drop(rule::PERPLEXITY, ppl, c.max_perplexity);
            }
        }
        if let Some(q) = &self.quality {
            let score = if q.uses_words() { q.score_with_words(text, words.get_or_insert_with(|| jieba().cut(text, false))) } else { q.score(text) };
            scores.quality = Some(score);
            if self.on(rule::QUALITY) && (score as f64) < c.min_quality {
                return drop(rule::QUALITY, score as f64, c.min_quality);
            }
        }
        None
    }

    fn check_duplicates(&self, text: &str) -> Option<Drop> {
        let c = &self.cfg;
        let lines: Vec<&str> = m6_text::nonblank_lines(text).collect();
        let paras: Vec<String> = m6_text::paragraphs(text);
        for (items, r_n, r_c, max_n, max_c) in [
            (lines.iter().map(|s| s.to_string()).collect::<Vec<_>>(), rule::DUP_LINES, rule::DUP_LINE_CHARS, c.max_dup_line_ratio, c.max_dup_line_char_ratio),
            (paras, rule::DUP_PARAS, rule::DUP_PARA_CHARS, c.max_dup_para_ratio, c.max_dup_para_char_ratio),
        ] {
            if items.len() < 2 || (!self.on(r_n) && !self.on(r_c)) {
                continue;
            }
            let (dup_n, dup_c, total_c) = duplicate_stats(&items);
            let rn = dup_n as f64 / items.len() as f64;
            if self.on(r_n) && rn > max_n {
                return Some(Drop { rule: r_n, value: rn, threshold: max_n, detail: None });
            }
            let rc = dup_c as f64 / total_c.max(1) as f64;
            if self.on(r_c) && rc > max_c {
                return Some(Drop { rule: r_c, value: rc, threshold: max_c, detail: None });
            }
        }
        None
    }

    fn check_ngrams<'t>(&self, text: &'t str, words: &mut Option<Vec<&'t str>>) -> Option<Drop> {
        let c = &self.cfg;
        let want_chars = self.on(rule::TOP_CHAR_NGRAM) || self.on(rule::DUP_CHAR_NGRAM);
        if want_chars {
            // Characters as tokens, each of length 1; whitespace and punctuation skipped.
            let toks: Vec<u32> = text.chars().filter(|ch| !ch.is_whitespace() && !is_punct(*ch)).map(|ch| ch as u32).collect();
            let lens = vec![1u32; toks.len()];
            if let Some(d) = self.ngram_rules(&toks, &lens, rule::TOP_CHAR_NGRAM, rule::DUP_CHAR_NGRAM, &c.max_top_char_ngram, &c.max_dup_char_ngram) {
                return Some(d);
            }
        }
        if self.on(rule::TOP_WORD_NGRAM) || self.on(rule::DUP_WORD_NGRAM) {
            // Each distinct word becomes a small integer, so the n-gram levels below work
            // on integers as for characters. StrHasher, not SipHash: the ids never leave
            // this call and a word is a few bytes.
            let mut ids: HashMap<&str, u32, BuildHasherDefault<StrHasher>> = HashMap::default();
            let ws = words.get_or_insert_with(|| jieba().cut(text, false));
            let (mut toks, mut lens) = (Vec::with_capacity(ws.len()), Vec::with_capacity(ws.len()));
            for &w in ws.iter() {
                // Most words are one CJK ideograph or a short run of them: count the
                // characters and test for punctuation in one pass.
                let (mut n, mut all_skip) = (0u32, true);
                for ch in w.chars() {
                    n += 1;
                    all_skip &= ch.is_whitespace() || is_punct(ch);
                }
                if all_skip {
                    continue;
                }
                let next = ids.len() as u32;
                toks.push(*ids.entry(w).or_insert(next));
                lens.push(n);
            }
            if let Some(d) = self.ngram_rules(&toks, &lens, rule::TOP_WORD_NGRAM, rule::DUP_WORD_NGRAM, &c.max_top_word_ngram, &c.max_dup_word_ngram) {
                return Some(d);
            }
        }
        None
    }

    /// The top n-gram rule for n = 2, 3, 4, then the duplicate n-gram rule for
    /// n = 5..=10, in that order, stopping at the first that fails.
    fn ngram_rules(&self, toks: &[u32], lens: &[u32], top_rule: &'static str, dup_rule: &'static str, top_max: &[f64], dup_max: &[f64]) -> Option<Drop> {
        let (top_on, dup_on) = (self.on(top_rule), self.on(dup_rule));
        if !top_on && !dup_on {
            return None;
        }
        let mut levels = NgramLevels::new(toks, lens);
        if levels.total == 0 {
            return None;
        }
        let last = if dup_on { 4 + dup_max.len() } else { 1 + top_max.len() };
        for n in 2..=last {
            if !levels.next() || levels.pos.is_empty() {
                // Too few tokens for n, or no (n-1)-gram repeats: every share from here
                // on is 0.
                return None;
            }
            if n <= 1 + top_max.len() && top_on {
                let (v, max) = (levels.top_share(), top_max[n - 2]);
                if v > max {
                    return Some(Drop { rule: top_rule, value: v, threshold: max, detail: Some(format!("n = {n}")) });
                }
            }
            if n >= 5 && dup_on {
                let (v, max) = (levels.dup_share(), dup_max[n - 5]);
                if v > max {
                    return Some(Drop { rule: dup_rule, value: v, threshold: max, detail: Some(format!("n = {n}")) });
                }
            }
        }
        None
    }
}

/// (items repeating an earlier item, characters in them, characters in all items).
fn duplicate_stats(items: &[String]) -> (usize, usize, usize) {
    let mut seen = HashSet::new();
    let (mut n, mut c, mut total) = (0, 0, 0);
    for it in items {
        let len = it.chars().count();
        total += len;
        if !seen.insert(it.as_str()) {
            n += 1;
            c += len;
        }
    }
    (n, c, total)
}

/// A multiplicative hasher for short keys (words, packed id pairs), eight bytes per
/// step: SipHash's resistance to chosen keys buys nothing for maps that live for one
/// document, and the byte-at-a-time `KeyHasher` costs one multiply per byte.
#[derive(Default)]
pub struct StrHasher(u64);

impl Hasher for StrHasher {
    fn finish(&self) -> u64 {
        // One more mix so the low bits hashbrown uses for buckets depend on every byte.
        let h = self.0 ^ (self.0 >> 29);
        h.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            // The length marks the tail, so "a" and "a\0" differ.
            self.write_u64(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64 | 0x100);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// The n-grams of a token sequence, one n at a time: the n-gram at `i` gets an id from
/// the pair (id of the (n-1)-gram at `i`, token `i + n - 1`), so each level costs one
/// hash-map probe per position whatever n is, and two n-grams share an id exactly when
/// they are equal (no hash of the whole n-gram that could collide). Ids are handed out
/// in order of first occurrence, so an occurrence repeats an earlier one exactly when
/// its id is not new, and of equally frequent n-grams the smallest id is the first seen.
///
/// A position whose n-gram occurs once cannot start a repeated (n+1)-gram, and neither
/// statistic looks at n-grams seen once, so each level only visits the positions whose
/// previous n-gram repeats: past n = 3 or 4 that is a small part of ordinary text.
struct NgramLevels<'a> {
    toks: &'a [u32],
    /// Prefix sums of the token lengths in characters.
    pre: Vec<usize>,
    total: usize,
    /// The current n; the start positions still visited, increasing, and the id of the
    /// n-gram at each.
    n: usize,
    pos: Vec<u32>,
    ids: Vec<u32>,
    /// Per id of the current level: occurrences, first start position.
    counts: Vec<u32>,
    first: Vec<u32>,
    /// The previous level's counts (kept to reuse the allocation).
    prev_counts: Vec<u32>,
    /// Characters covered by occurrences repeating an earlier one (overlaps once).
    dup_chars: usize,
    map: HashMap<u64, u32, BuildHasherDefault<StrHasher>>,
}

impl<'a> NgramLevels<'a> {
    fn new(toks: &'a [u32], lens: &[u32]) -> Self {
        let mut pre = Vec::with_capacity(lens.len() + 1);
        pre.push(0usize);
        for &l in lens {
            pre.push(pre.last().unwrap() + l as usize);
        }
        let total = *pre.last().unwrap();
        // Level 1: every position, the token itself as its id (counts are not kept, so
        // the first step visits everything).
        NgramLevels {
            toks,
            pre,
            total,
            n: 1,
            pos: (0..toks.len() as u32).collect(),
            ids: toks.to_vec(),
            counts: vec![],
            first: vec![],
            prev_counts: vec![],
            dup_chars: 0,
            map: HashMap::default(),
        }
    }

    /// Moves to n + 1; false when the sequence is shorter than that.
    fn next(&mut self) -> bool {
        let n = self.n + 1;
        if self.toks.len() < n {
            return false;
        }
        let len = self.toks.len();
        std::mem::swap(&mut self.prev_counts, &mut self.counts);
        self.counts.clear();
        let prev_counts = &self.prev_counts;
        let level1 = self.n == 1;
        self.map.clear();
        self.map.reserve(self.pos.len());
        self.first.clear();
        let (mut dup, mut covered_to) = (0usize, 0usize);
        let mut kept = 0;
        for k in 0..self.pos.len() {
            let (i, prev) = (self.pos[k] as usize, self.ids[k]);
            if i + n > len || !(level1 || prev_counts[prev as usize] >= 2) {
                continue;
            }
            let key = (prev as u64) << 32 | self.toks[i + n - 1] as u64;
            let fresh = self.counts.len() as u32;
            let id = *self.map.entry(key).or_insert(fresh);
            if id == fresh {
                self.counts.push(1);
                self.first.push(i as u32);
            } else {
                self.counts[id as usize] += 1;
                // Starts only grow, so the union of covered spans is a running end.
                let from = covered_to.max(i);
                dup += self.pre[i + n] - self.pre[from];
                covered_to = i + n;
            }
            self.pos[kept] = i as u32;
            self.ids[kept] = id;
            kept += 1;
        }
        self.pos.truncate(kept);
        self.ids.truncate(kept);
        self.n = n;
        self.dup_chars = dup;
        true
    }

    /// Gopher's "fraction of characters in the most common n-gram": occurrences × its
    /// characters / all characters (0 when no n-gram occurs twice). Ties go to the
    /// n-gram seen first (the smallest id), so the value never depends on hash order.
    fn top_share(&self) -> f64 {
        let mut best = (0u32, 0usize);
        for (id, &c) in self.counts.iter().enumerate() {
            if c > best.0 {
                best = (c, id);
            }
        }
        if best.0 < 2 {
            return 0.0;
        }
        let at = self.first[best.1] as usize;
        (best.0 as usize * (self.pre[at + self.n] - self.pre[at])) as f64 / self.total as f64
    }

    /// Gopher's "fraction of characters in duplicate n-grams": characters of n-gram
    /// occurrences that repeat an earlier one, without counting overlapping ones twice.
    fn dup_share(&self) -> f64 {
        self.dup_chars as f64 / self.total as f64
    }
}

/// The n-gram level `n` (≥ 2) of `toks`, built from scratch; `None` when the text has
/// no n-grams that long (both shares are then 0).
fn level<'a>(toks: &'a [u32], lens: &'a [u32], n: usize) -> Option<NgramLevels<'a>> {
    let mut l = NgramLevels::new(toks, lens);
    if l.total == 0 || n < 2 {
        return None;
    }
    for _ in 2..=n {
        if !l.next() {
            return None;
        }
    }
    Some(l)
}

/// [`NgramLevels::top_share`] for one n, from scratch (tests and callers outside the rules).
pub fn top_ngram_share(toks: &[u32], lens: &[u32], n: usize) -> f64 {
    level(toks, lens, n).map_or(0.0, |l| l.top_share())
}

/// [`NgramLevels::dup_share`] for one n, from scratch.
pub fn dup_ngram_share(toks: &[u32], lens: &[u32], n: usize) -> f64 {
    level(toks, lens, n).map_or(0.0, |l| l.dup_share())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The definitions the n-gram levels must agree with, written the plain way: every
    // n-gram as its own vector of tokens.
    fn top_plain(toks: &[u32], lens: &[u32], n: usize) -> f64 {
        let total: u32 = lens.iter().sum();
        if toks.len() < n || total == 0 {
            return 0.0;
        }
        let mut counts: HashMap<&[u32], (usize, usize)> = HashMap::new();
        for i in 0..=toks.len() - n {
            counts.entry(&toks[i..i + n]).or_insert((0, i)).0 += 1;
        }
        let &(c, at) = counts.values().max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1))).unwrap();
        if c < 2 {
            return 0.0;
        }
        (c * lens[at..at + n].iter().sum::<u32>() as usize) as f64 / total as f64
    }

    fn dup_plain(toks: &[u32], lens: &[u32], n: usize) -> f64 {
        let total: u32 = lens.iter().sum();
        if toks.len() < n || total == 0 {
            return 0.0;
        }
        let mut seen = HashSet::new();
        let mut covered = vec![false; toks.len()];
        for i in 0..=toks.len() - n {
            if !seen.insert(&toks[i..i + n]) {
                covered[i..i + n].iter_mut().for_each(|c| *c = true);
            }
        }
        covered.iter().zip(lens).filter(|(c, _)| **c).map(|(_, l)| *l).sum::<u32>() as f64 / total as f64
    }

    #[test]
    fn ngram_levels_match_the_plain_definitions() {
        // Small alphabets make long repeats, overlaps and ties common.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for case in 0..400 {
            let len = rnd(60) as usize;
            let alphabet = 1 + rnd(if case % 2 == 0 { 3 } else { 40 });
            let toks: Vec<u32> = (0..len).map(|_| rnd(alphabet) as u32 + if case % 3 == 0 { 0x4e00 } else { 0 }).collect();
            let lens: Vec<u32> = (0..len).map(|_| if case % 2 == 0 { 1 } else { 1 + rnd(4) as u32 }).collect();
            for n in 2..=10 {
                assert_eq!(top_ngram_share(&toks, &lens, n), top_plain(&toks, &lens, n), "top n={n} {toks:?} {lens:?}");
                assert_eq!(dup_ngram_share(&toks, &lens, n), dup_plain(&toks, &lens, n), "dup n={n} {toks:?} {lens:?}");
            }
        }
        // A token value above 2^16 (an astral character) next to small ids.
        let toks = [0x2_0000, 1, 0x2_0000, 1, 0x2_0000, 1];
        assert_eq!(top_ngram_share(&toks, &[1; 6], 2), top_plain(&toks, &[1; 6], 2));
    }

    #[test]
    fn str_hasher_tells_tails_apart() {
        let h = |s: &[u8]| {
            let mut x = StrHasher::default();
            x.write(s);
            x.finish()
        };
        assert_ne!(h(b"a"), h(b"a\0"));
        assert_ne!(h(b"abcdefgh"), h(b"abcdefgh\0"));
        assert_ne!(h("明月".as_bytes()), h("月明".as_bytes()));
    }
}
