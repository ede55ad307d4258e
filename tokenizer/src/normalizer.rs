//! Normalizers: text → text rewrites applied before segmentation (NFKC, full-width to
//! half-width, case folding, traditional → simplified). Decoding gives back the
//! normalised text, so everything here must be a pure function of the input. The
//! foldings are m6-text's, the same the dedup keys and the filter use, so the tokenizer
//! sees a character as the earlier stages did.

use serde::{Deserialize, Serialize};

pub trait Normalizer: Send + Sync {
    /// Appends the normalised form of `text` to `out`.
    fn normalize(&self, text: &str, out: &mut String);
}

/// Unicode NFKC (compatibility composition): ligatures, circled digits, full-width
/// forms and the like become their plain equivalents.
pub struct Nfkc;

impl Normalizer for Nfkc {
    fn normalize(&self, text: &str, out: &mut String) {
        m6_text::nfkc_into(text, out);
    }
}

/// Full-width ASCII (U+FF01..U+FF5E) and the ideographic space to their half-width
/// forms. NFKC already does this; the rule exists for pipelines that turn NFKC off.
pub struct FullToHalfWidth;

impl Normalizer for FullToHalfWidth {
    fn normalize(&self, text: &str, out: &mut String) {
        m6_text::to_half_width(text, out);
    }
}

/// Unicode lower-casing (only where a character lowers to exactly one character, so
/// lengths in characters are preserved).
pub struct Lowercase;

impl Normalizer for Lowercase {
    fn normalize(&self, text: &str, out: &mut String) {
        out.extend(text.chars().map(|c| {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(x), None) => x,
                _ => c,
            }
        }));
    }
}

/// Traditional → simplified Chinese with OpenCC's phrase and character tables
/// (m6-text's `t2s`, the conversion the filter applies, so text the filter converted
/// comes out of the tokenizer unchanged).
pub struct TraditionalToSimplified;

impl Normalizer for TraditionalToSimplified {
    fn normalize(&self, text: &str, out: &mut String) {
        if m6_text::has_phrase(text) {
            out.push_str(&m6_text::t2s(text));
        } else {
            m6_text::t2s_chars(text, out);
        }
    }
}

/// Which normalisations run, in this order: NFKC, full→half width, lowercase, t2s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizerConfig {
    /// Unicode NFKC. Default true.
    pub nfkc: bool,
    /// Full-width ASCII and U+3000 to half-width. Default true.
    pub fullwidth_to_halfwidth: bool,
    /// Lower-case letters. Default false (Chinese has no case; English keeps it).
    pub lowercase: bool,
    /// Traditional → simplified (OpenCC t2s phrases and characters). Default false.
    pub traditional_to_simplified: bool,
}

impl Default for NormalizerConfig {
    fn default() -> Self {
        NormalizerConfig { nfkc: true, fullwidth_to_halfwidth: true, lowercase: false, traditional_to_simplified: false }
    }
}

/// The configured normalisers applied one after another.
pub struct Sequence(Vec<Box<dyn Normalizer>>);

impl Sequence {
    pub fn from_config(c: &NormalizerConfig) -> Self {
        let mut v: Vec<Box<dyn Normalizer>> = vec![];
        if c.nfkc {
            v.push(Box::new(Nfkc));
        }
        if c.fullwidth_to_halfwidth {
            v.push(Box::new(FullToHalfWidth));
        }
        if c.lowercase {
            v.push(Box::new(Lowercase));
        }
        if c.traditional_to_simplified {
            v.push(Box::new(TraditionalToSimplified));
        }
        Sequence(v)
    }

    pub fn apply(&self, text: &str) -> String {
        let mut cur = text.to_string();
        let mut next = String::with_capacity(text.len());
        for n in &self.0 {
            next.clear();
            n.normalize(&cur, &mut next);
            std::mem::swap(&mut cur, &mut next);
        }
        cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule() {
        let all = NormalizerConfig { lowercase: true, traditional_to_simplified: true, ..Default::default() };
        let s = Sequence::from_config(&all);
        assert_eq!(s.apply("ＡＢＣ１２３　國語，漢字"), "abc123 国语,汉字");
        assert_eq!(s.apply("ﬁ①"), "fi1");
        let none = Sequence::from_config(&NormalizerConfig { nfkc: false, fullwidth_to_halfwidth: false, ..Default::default() });
        assert_eq!(none.apply("ＡＢ國"), "ＡＢ國");
        let width_only = Sequence::from_config(&NormalizerConfig { nfkc: false, ..Default::default() });
        assert_eq!(width_only.apply("Ａ　ｂ"), "A b");
    }
}
