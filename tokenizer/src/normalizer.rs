//! Normalizers: text → text rewrites applied before segmentation (NFKC, full-width to
//! half-width, case folding, traditional → simplified). Decoding gives back the
//! normalised text, so everything here must be a pure function of the input.

use std::sync::OnceLock;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

pub trait Normalizer: Send + Sync {
    /// Appends the normalised form of `text` to `out`.
    fn normalize(&self, text: &str, out: &mut String);
}

/// Unicode NFKC (compatibility composition): ligatures, circled digits, full-width
/// forms and the like become their plain equivalents.
pub struct Nfkc;

impl Normalizer for Nfkc {
    fn normalize(&self, text: &str, out: &mut String) {
        // Most text is already NFKC; the quick check avoids the composing iterator.
        if unicode_normalization::is_nfkc_quick(text.chars()) == unicode_normalization::IsNormalized::Yes {
            out.push_str(text);
        } else {
            out.extend(text.nfkc());
        }
    }
}

/// Full-width ASCII (U+FF01..U+FF5E) and the ideographic space to their half-width
/// forms. NFKC already does this; the rule exists for pipelines that turn NFKC off.
pub struct FullToHalfWidth;

impl Normalizer for FullToHalfWidth {
    fn normalize(&self, text: &str, out: &mut String) {
        if !text.chars().any(|c| matches!(c, '\u{FF01}'..='\u{FF5E}' | '\u{3000}')) {
            out.push_str(text);
            return;
        }
        out.extend(text.chars().map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        }));
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

/// Traditional → simplified Chinese, character by character, with OpenCC's
/// `TSCharacters.txt` (first candidate; phrase-level conversions are not applied).
pub struct TraditionalToSimplified;

static TS_TABLE: &str = include_str!("../data/opencc/TSCharacters.txt");

fn ts_map() -> &'static FxHashMap<char, char> {
    static MAP: OnceLock<FxHashMap<char, char>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut m = FxHashMap::default();
        for line in TS_TABLE.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let Some((from, to)) = line.split_once('\t') else { continue };
            let mut f = from.chars();
            let first = to.split(' ').next().unwrap_or("");
            let mut t = first.chars();
            if let (Some(a), None, Some(b), None) = (f.next(), f.next(), t.next(), t.next()) {
                if a != b {
                    m.insert(a, b);
                }
            }
        }
        m
    })
}

impl Normalizer for TraditionalToSimplified {
    fn normalize(&self, text: &str, out: &mut String) {
        let m = ts_map();
        out.extend(text.chars().map(|c| if c.is_ascii() { c } else { *m.get(&c).unwrap_or(&c) }));
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
    /// Traditional → simplified characters (OpenCC TSCharacters). Default false.
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
        assert!(ts_map().len() > 3000, "OpenCC table loaded: {}", ts_map().len());
    }
}
