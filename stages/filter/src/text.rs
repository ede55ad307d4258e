//! Text rules for documents (and, through [`crate::caption`], for captions): length,
//! script and language, markup and noise residue, Gopher-style repetition adapted to
//! Chinese, spam phrases, block lists and LM perplexity. Each rule measures one value
//! and compares it with one threshold, so a drop can always say why.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::lm::{KeyHasher, Model};
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
        if !disabled.contains(rule::TOP_WORD_NGRAM) || !disabled.contains(rule::DUP_WORD_NGRAM) || quality.is_some() {
            jieba();
        }
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
            let lens = vec![1usize; toks.len()];
            if let Some(d) = self.ngram_rules(&toks, &lens, rule::TOP_CHAR_NGRAM, rule::DUP_CHAR_NGRAM, &c.max_top_char_ngram, &c.max_dup_char_ngram) {
                return Some(d);
            }
        }
        if self.on(rule::TOP_WORD_NGRAM) || self.on(rule::DUP_WORD_NGRAM) {
            // KeyHasher, not SipHash: the ids never leave this call (measured: ~2% of the
            // default rules' CPU time; jieba's segmentation is the bulk of the word rules).
            let mut ids: HashMap<&str, u32, BuildHasherDefault<KeyHasher>> = HashMap::default();
            let (mut toks, mut lens) = (vec![], vec![]);
            for &w in words.get_or_insert_with(|| jieba().cut(text, false)).iter() {
                if w.chars().all(|ch| ch.is_whitespace() || is_punct(ch)) {
                    continue;
                }
                let next = ids.len() as u32;
                toks.push(*ids.entry(w).or_insert(next));
                lens.push(w.chars().count());
            }
            if let Some(d) = self.ngram_rules(&toks, &lens, rule::TOP_WORD_NGRAM, rule::DUP_WORD_NGRAM, &c.max_top_word_ngram, &c.max_dup_word_ngram) {
                return Some(d);
            }
        }
        None
    }

    fn ngram_rules(&self, toks: &[u32], lens: &[usize], top_rule: &'static str, dup_rule: &'static str, top_max: &[f64], dup_max: &[f64]) -> Option<Drop> {
        let total: usize = lens.iter().sum();
        if total == 0 {
            return None;
        }
        if self.on(top_rule) {
            for (i, &max) in top_max.iter().enumerate() {
                let v = top_ngram_share(toks, lens, i + 2, total);
                if v > max {
                    return Some(Drop { rule: top_rule, value: v, threshold: max, detail: Some(format!("n = {}", i + 2)) });
                }
            }
        }
        if self.on(dup_rule) {
            for (i, &max) in dup_max.iter().enumerate() {
                let v = dup_ngram_share(toks, lens, i + 5, total);
                if v > max {
                    return Some(Drop { rule: dup_rule, value: v, threshold: max, detail: Some(format!("n = {}", i + 5)) });
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

fn ngram_key(w: &[u32]) -> u64 {
    let mut h = KeyHasher::default();
    w.hash(&mut h);
    h.finish()
}

type FastMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// Gopher's "fraction of characters in the most common n-gram": occurrences × its
/// characters / all characters (0 when no n-gram occurs twice).
pub fn top_ngram_share(toks: &[u32], lens: &[usize], n: usize, total: usize) -> f64 {
    if toks.len() < n {
        return 0.0;
    }
    let mut counts: FastMap<(u32, usize)> = FastMap::default();
    for i in 0..=toks.len() - n {
        let e = counts.entry(ngram_key(&toks[i..i + n])).or_insert((0, i));
        e.0 += 1;
    }
    // Ties broken by first position, so the value never depends on hash order.
    let best = counts.values().max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    match best {
        Some(&(count, at)) if count > 1 => (count as usize * lens[at..at + n].iter().sum::<usize>()) as f64 / total as f64,
        _ => 0.0,
    }
}

/// Gopher's "fraction of characters in duplicate n-grams": characters of n-gram
/// occurrences that repeat an earlier one, without counting overlapping ones twice.
pub fn dup_ngram_share(toks: &[u32], lens: &[usize], n: usize, total: usize) -> f64 {
    if toks.len() < n {
        return 0.0;
    }
    let mut seen: HashSet<u64, BuildHasherDefault<KeyHasher>> = HashSet::default();
    let mut covered = vec![false; toks.len()];
    for i in 0..=toks.len() - n {
        if !seen.insert(ngram_key(&toks[i..i + n])) {
            covered[i..i + n].iter_mut().for_each(|c| *c = true);
        }
    }
    let dup: usize = covered.iter().zip(lens).filter(|(c, _)| **c).map(|(_, l)| *l).sum();
    dup as f64 / total as f64
}
