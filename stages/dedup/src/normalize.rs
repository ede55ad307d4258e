//! Text normalisation shared by exact and near-duplicate detection: NFKC (which also
//! folds full-width forms to half-width), lower case, optional traditional→simplified
//! folding, and dropping whitespace, punctuation and symbols.

use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// OpenCC's `TSCharacters.txt` reduced to one-to-one character pairs (first candidate
/// wins); see `data/README.md` for provenance and licence.
const T2S: &str = include_str!("../data/t2s.tsv");

struct T2s {
    /// Dense table for the BMP (where nearly all sources live); 0 means "unchanged".
    bmp: Vec<u32>,
    other: HashMap<char, char>,
}

fn t2s() -> &'static T2s {
    static TABLE: OnceLock<T2s> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut bmp = vec![0u32; 0x10000];
        let mut other = HashMap::new();
        for line in T2S.lines() {
            let mut it = line.split('\t');
            let (Some(a), Some(b)) = (it.next(), it.next()) else { continue };
            let (Some(a), Some(b)) = (a.chars().next(), b.chars().next()) else { continue };
            if (a as u32) < 0x10000 {
                bmp[a as usize] = b as u32;
            } else {
                other.insert(a, b);
            }
        }
        T2s { bmp, other }
    })
}

/// Traditional→simplified for one character (identity for everything else).
#[inline]
pub fn fold_t2s(c: char) -> char {
    let t = t2s();
    let u = c as u32;
    if u < 0x10000 {
        let m = t.bmp[u as usize];
        if m != 0 {
            return char::from_u32(m).unwrap_or(c);
        }
        c
    } else {
        t.other.get(&c).copied().unwrap_or(c)
    }
}

/// CJK Unified Ideographs and Extension A: NFKC quick-check Yes, combining class 0, and
/// in no canonical composition pair.
#[inline(always)]
fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF)
}

/// Whitespace and the common CJK punctuation: starters that compose with nothing and
/// whose NFKC form has no letter or digit, so they are dropped without normalising and
/// split runs like ideographs do (most of the rest of a Chinese text).
#[inline(always)]
fn is_dropped_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '\n' | '\r' | '\t' | '\u{3000}' | '，' | '。' | '、' | '！' | '？' | '：' | '；' | '（' | '）' | '《' | '》' | '「' | '」' | '『' | '』' | '“' | '”' | '‘' | '’' | '—' | '…' | '·'
    )
}

/// Normalises text for hashing. Cheap to copy; the folding table is built once.
#[derive(Debug, Clone, Copy)]
pub struct Normalizer {
    pub fold_traditional: bool,
}

impl Normalizer {
    pub fn new(fold_traditional: bool) -> Self {
        if fold_traditional {
            t2s();
        }
        Normalizer { fold_traditional }
    }

    #[inline]
    fn push(&self, c: char, out: &mut Vec<char>) {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            }
            return;
        }
        if !c.is_alphanumeric() {
            return; // whitespace, punctuation, symbols, emoji
        }
        let c = if self.fold_traditional { fold_t2s(c) } else { c };
        if c.is_uppercase() {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }

    /// Appends the normalised characters of `text` to `out` (cleared first).
    pub fn normalize_into(&self, text: &str, out: &mut Vec<char>) {
        out.clear();
        // CJK ideographs are NFKC-stable starters that compose with nothing, so NFKC of
        // the whole text equals NFKC of the runs between them: ideographs (most of a
        // Chinese text) skip the normaliser and the Unicode property lookups entirely.
        let mut run = None;
        for (i, c) in text.char_indices() {
            let ideograph = is_cjk_ideograph(c);
            if ideograph || is_dropped_separator(c) {
                if let Some(s) = run.take() {
                    self.push_run(&text[s..i], out);
                }
                if ideograph {
                    out.push(if self.fold_traditional { fold_t2s(c) } else { c });
                }
            } else if run.is_none() {
                run = Some(i);
            }
        }
        if let Some(s) = run {
            self.push_run(&text[s..], out);
        }
    }

    fn push_run(&self, run: &str, out: &mut Vec<char>) {
        // Most text is already NFKC; the quick check skips the decomposing iterator.
        if is_nfkc_quick(run.chars()) == IsNormalized::Yes {
            for c in run.chars() {
                self.push(c, out);
            }
        } else {
            for c in run.nfkc() {
                self.push(c, out);
            }
        }
    }

    /// The normalised text as a string (for word segmentation and tests).
    pub fn normalize(&self, text: &str) -> String {
        let mut v = Vec::with_capacity(text.len());
        self.normalize_into(text, &mut v);
        v.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_width_case_punctuation_and_script() {
        let n = Normalizer::new(true);
        assert_eq!(n.normalize("ＡＢｃ １２３，　床前明月光。"), "abc123床前明月光");
        assert_eq!(n.normalize("國學經典"), "国学经典");
        assert_eq!(Normalizer::new(false).normalize("國學"), "國學");
        assert_eq!(n.normalize("Hello, World!"), "helloworld");
    }

    /// The run-splitting fast path must give exactly what NFKC of the whole text gives.
    #[test]
    fn fast_path_equals_whole_text_nfkc() {
        let reference = |n: &Normalizer, t: &str| {
            let mut out = vec![];
            for c in t.nfkc() {
                n.push(c, &mut out);
            }
            out
        };
        // Ideographs next to full-width forms, combining marks, Hangul jamo (which do
        // compose), compatibility ideographs, ligatures and circled numbers.
        let pool: Vec<char> = "國学文ＡＢｃ１，。、！？：；（）《》「」“”—…·　e\u{301}\u{308}\u{338}<=\u{1100}\u{1161}\u{11A8}\u{F900}\u{FA0A}ﬁ①㍿ｶﾞ\u{3099}かa. \t\n"
            .chars()
            .collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for fold in [false, true] {
            let n = Normalizer::new(fold);
            for _ in 0..3000 {
                let len = (x % 12) as usize;
                let t: String = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        pool[(x % pool.len() as u64) as usize]
                    })
                    .collect();
                let mut fast = vec![];
                n.normalize_into(&t, &mut fast);
                assert_eq!(fast, reference(&n, &t), "{t:?}");
            }
        }
    }
}
