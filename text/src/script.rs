//! Which characters are Han (Chinese ideographs). One definition for every stage: the
//! filter's CJK ratio and language shares, dedup's fast path, extract's line joining.

/// A Han ideograph: the unified block and extensions A–I (U+3400.., U+4E00..,
/// U+20000..U+323AF), the compatibility ideographs, and 〇 (U+3007, the ideographic
/// zero, written as a character in Chinese numbers).
#[inline]
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2EE5F
        | 0x30000..=0x323AF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F | 0x3007)
}

/// [`is_han`] less the compatibility ideographs: characters NFKC leaves alone and
/// composes with nothing, so a normaliser may pass them through without running NFKC
/// (the compatibility ideographs NFKC maps to unified ones, e.g. U+F900 → 豈).
#[inline]
pub fn is_nfkc_inert_han(c: char) -> bool {
    is_han(c) && !matches!(c as u32, 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// Whether NFKC may turn `c` into Han: compatibility ideographs, Kangxi and CJK
/// radicals, Hangzhou numerals, kanbun, enclosed and squared ideographs (a superset,
/// by block, of the characters Unicode maps so). Text without any of these holds the
/// same Han characters before and after NFKC, so a stage can look for OpenCC phrases
/// in it without normalising it first.
#[inline]
pub fn nfkc_may_give_han(c: char) -> bool {
    matches!(c as u32, 0x2E80..=0x2FDF | 0x3038..=0x303A | 0x3190..=0x319F | 0x3200..=0x33FF | 0xF900..=0xFAFF | 0x1F200..=0x1F2FF | 0x2F800..=0x2FA1F)
}

/// A character of East Asian writing set without spaces between words: Han, and the
/// radicals, CJK punctuation, kana, bopomofo and full-width forms around it. A line
/// break between two such characters is source formatting, not a word break. The
/// half-width (semi-)voiced marks ﾞ ﾟ are left out: NFKC makes them combining marks,
/// so joining one to the line before would compose a different character (ｶ + ﾞ → ガ).
#[inline]
pub fn is_cjk(c: char) -> bool {
    is_han(c) || matches!(c as u32, 0x2E80..=0x9FFF | 0xFF00..=0xFF9D | 0xFFA0..=0xFFEF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        for c in ['中', '國', '㑮', '〇', '\u{20000}', '\u{F900}'] {
            assert!(is_han(c) && is_cjk(c), "{c}");
        }
        assert!(!is_nfkc_inert_han('\u{F900}') && is_nfkc_inert_han('㑮'));
        for c in ['，', 'の', 'Ａ', '　'] {
            assert!(!is_han(c) && is_cjk(c), "{c}");
        }
        for c in ['a', '1', 'é', '한'] {
            assert!(!is_han(c) && !is_cjk(c), "{c}");
        }
    }

    /// Every character whose NFKC form holds Han is in `nfkc_may_give_han`.
    #[test]
    fn nfkc_may_give_han_covers_unicode() {
        use unicode_normalization::UnicodeNormalization;
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let n: String = std::iter::once(c).nfkc().collect();
            if n.chars().ne(std::iter::once(c)) && n.chars().any(is_han) {
                assert!(nfkc_may_give_han(c), "U+{:04X} NFKC → {n}", c as u32);
            }
        }
    }
}
