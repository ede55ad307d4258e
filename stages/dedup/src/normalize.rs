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
        // Most text is already NFKC; the quick check skips the decomposing iterator.
        if is_nfkc_quick(text.chars()) == IsNormalized::Yes {
            for c in text.chars() {
                self.push(c, out);
            }
        } else {
            for c in text.nfkc() {
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
}
