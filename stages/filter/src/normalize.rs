//! Normalisation applied to the text the filter keeps: full-width → half-width,
//! whitespace clean-up, collapsing repeated punctuation, dropping characters of other
//! scripts, stripping leftover markup, PII placeholders (see [`crate::pii`]), and
//! traditional → simplified Chinese with OpenCC's tables. The t2s and width foldings
//! are m6-text's, the same the dedup keys and the tokenizer use.
//!
//! Order: t2s, markup, width and script, PII, punctuation runs, whitespace — PII after
//! width so full-width digits are caught, and before punctuation collapsing so a
//! placeholder's `<`/`>` never merges with neighbouring marks.

use std::sync::OnceLock;

use m6_text::{half_width, t2s};
use serde::{Deserialize, Serialize};

use crate::pii::{redact, PiiConfig, PiiCounts};
use crate::script::{is_han, is_latin, is_punct};

/// `[filter.normalize]`: what is done to kept text (document text, pair captions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Full-width ASCII letters and digits (ＡＢＣ１２３) and the ideographic space
    /// become their half-width forms. Default true.
    pub fullwidth_alnum: bool,
    /// Full-width ASCII punctuation (！，：；？ …) becomes half-width too. Default false:
    /// full-width punctuation is the norm in Chinese typesetting.
    pub fullwidth_punct: bool,
    /// Runs of spaces/tabs become one space, lines are trimmed at the end, more than
    /// one blank line becomes one, and the text is trimmed. Default true.
    pub whitespace: bool,
    /// Runs of the same punctuation character longer than `max_punct_run` are cut to
    /// that length (M6 removes repeated punctuation). Default true.
    pub collapse_punct: bool,
    /// Longest run of one punctuation character kept by `collapse_punct`. Default 3
    /// (so "……" and "..." survive, "！！！！！！" becomes "！！！").
    pub max_punct_run: usize,
    /// Traditional → simplified Chinese (OpenCC t2s phrases + characters). Default false.
    pub t2s: bool,
    /// Keep only Chinese and English: drop characters that are neither Han, Latin,
    /// digits, whitespace nor ordinary punctuation (emoji, other scripts, symbols), as
    /// M6 does. Default false.
    pub zh_en_only: bool,
    /// Remove leftover HTML tags and comments and decode entities, instead of letting
    /// `text.markup` drop the document. Default false (the `m6` preset turns it on).
    pub strip_markup: bool,
    /// Replace personal information with placeholders (`<EMAIL>`, `<PHONE>`, `<ID>`,
    /// `<CARD>`, `<IP>`), per kind: `pii = false` turns all off, or
    /// `[filter.normalize.pii] ip = false` one kind. Default: all on.
    pub pii: PiiConfig,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            fullwidth_alnum: true,
            fullwidth_punct: false,
            whitespace: true,
            collapse_punct: true,
            max_punct_run: 3,
            t2s: false,
            zh_en_only: false,
            strip_markup: false,
            pii: PiiConfig::default(),
        }
    }
}

impl NormalizeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.collapse_punct && self.max_punct_run == 0 {
            return Err("normalize.max_punct_run must be at least 1".into());
        }
        Ok(())
    }

    /// True when normalisation may change some text.
    pub fn any(&self) -> bool {
        self.fullwidth_alnum || self.fullwidth_punct || self.whitespace || self.collapse_punct || self.t2s || self.zh_en_only || self.strip_markup || self.pii.any()
    }

    /// Returns the normalised text.
    pub fn apply(&self, text: &str) -> String {
        self.apply_counted(text).0
    }

    /// Returns the normalised text and the PII replacements made.
    pub fn apply_counted(&self, text: &str) -> (String, PiiCounts) {
        let mut s: String = if self.t2s { t2s(text) } else { text.to_string() };
        if self.strip_markup {
            s = strip_markup(&s);
        }
        if self.fullwidth_alnum || self.fullwidth_punct || self.zh_en_only {
            s = s
                .chars()
                .filter_map(|c| {
                    let c = half_width(c, self.fullwidth_alnum, self.fullwidth_punct);
                    if self.zh_en_only && !(is_han(c) || is_latin(c) || c.is_ascii_digit() || c.is_whitespace() || is_punct(c)) {
                        None
                    } else {
                        Some(c)
                    }
                })
                .collect();
        }
        let mut counts = PiiCounts::default();
        if self.pii.any() {
            let (r, c) = redact(&s, &self.pii);
            if let std::borrow::Cow::Owned(o) = r {
                s = o;
            }
            counts = c;
        }
        if self.collapse_punct {
            s = collapse_punct(&s, self.max_punct_run);
        }
        if self.whitespace {
            s = clean_whitespace(&s);
        }
        (s, counts)
    }
}

/// Removes HTML comments, `<script>`/`<style>` blocks and tags, and decodes entities
/// (named ones HTML text commonly carries, and numeric ones).
pub fn strip_markup(s: &str) -> String {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"(?is)<!--.*?-->|<script\b.*?</script\s*>|<style\b.*?</style\s*>|</?[a-z][a-z0-9]*(?:\s[^<>]{0,500})?/?>|&(?:#[0-9]{1,7}|#x[0-9a-f]{1,6}|[a-z]{2,10});").unwrap()
    });
    if !s.contains('<') && !s.contains('&') {
        return s.to_string();
    }
    re.replace_all(s, |c: &regex::Captures| {
        let m = &c[0];
        if !m.starts_with('&') {
            return String::new();
        }
        let body = &m[1..m.len() - 1];
        let num = if let Some(h) = body.strip_prefix("#x").or_else(|| body.strip_prefix("#X")) {
            u32::from_str_radix(h, 16).ok()
        } else if let Some(d) = body.strip_prefix('#') {
            d.parse().ok()
        } else {
            None
        };
        if let Some(ch) = num.and_then(char::from_u32) {
            return ch.to_string();
        }
        match body {
            "amp" => "&",
            "lt" => "<",
            "gt" => ">",
            "quot" => "\"",
            "apos" => "'",
            "nbsp" => " ",
            "mdash" => "—",
            "ndash" => "–",
            "hellip" => "…",
            "ldquo" => "“",
            "rdquo" => "”",
            "lsquo" => "‘",
            "rsquo" => "’",
            "middot" => "·",
            "copy" => "©",
            _ => "",
        }
        .to_string()
    })
    .into_owned()
}

fn collapse_punct(s: &str, max_run: usize) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev = None;
    let mut run = 0;
    for c in s.chars() {
        if Some(c) == prev && is_punct(c) {
            run += 1;
            if run > max_run {
                continue;
            }
        } else {
            run = 1;
            prev = Some(c);
        }
        out.push(c);
    }
    out
}

fn clean_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank_lines = 0;
    for line in s.lines() {
        let mut l = String::with_capacity(line.len());
        let mut in_space = false;
        for c in line.chars() {
            if c == ' ' || c == '\t' || c == '\u{a0}' || c == '\r' {
                in_space = true;
            } else {
                if in_space && !l.is_empty() {
                    l.push(' ');
                }
                in_space = false;
                l.push(c);
            }
        }
        if l.is_empty() {
            blank_lines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_lines > 0 {
                out.push('\n');
            }
        }
        blank_lines = 0;
        out.push_str(&l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traditional_to_simplified_on_real_poem() {
        // 李白《將進酒》 as the chinese-poetry collection spells it.
        let n = NormalizeConfig { t2s: true, ..Default::default() };
        assert_eq!(n.apply("君不見黃河之水天上來，奔流到海不復回。"), "君不见黄河之水天上来，奔流到海不复回。");
        // A phrase entry wins over the per-character table (瞭 → 了 only in 一目瞭然).
        assert_eq!(n.apply("一目瞭然"), "一目了然");
        assert_eq!(n.apply("simplified 简体 stays"), "simplified 简体 stays");
    }

    #[test]
    fn width_whitespace_and_punct() {
        let n = NormalizeConfig::default();
        assert_eq!(n.apply("  ＡＰＴ　１２３  软件包！！！！！！\n\n\n\n下一行   文字  "), "APT 123 软件包！！！\n\n下一行 文字");
        // Full-width punctuation stays by default; half-width when asked.
        assert_eq!(n.apply("你好，世界？"), "你好，世界？");
        let p = NormalizeConfig { fullwidth_punct: true, ..Default::default() };
        assert_eq!(p.apply("你好，世界？"), "你好,世界?");
        // 〇 is a Han character (ideographic zero), not a punctuation run to collapse.
        assert_eq!(n.apply("一〇〇〇〇年，人人々々々々"), "一〇〇〇〇年，人人々々々々");
        assert_eq!(n.apply("好。。。。。。"), "好。。。");
        let z = NormalizeConfig { zh_en_only: true, ..Default::default() };
        assert_eq!(z.apply("好的😀 ok Привет"), "好的 ok");
        let off = NormalizeConfig { fullwidth_alnum: false, whitespace: false, collapse_punct: false, pii: PiiConfig::all(false), ..Default::default() };
        assert!(!off.any());
        assert_eq!(off.apply("ＡＢ  c"), "ＡＢ  c");
        let m = NormalizeConfig { strip_markup: true, ..Default::default() };
        assert_eq!(m.apply("<p>软件包 &amp; <b>依赖</b></p><!-- nav --><script>var a=1;</script>&#20851;系"), "软件包 & 依赖关系");
    }
}
