//! Text normalisation shared by exact and near-duplicate detection: NFKC (which also
//! folds full-width forms to half-width), lower case, optional traditional→simplified
//! folding, and dropping whitespace, punctuation and symbols. The foldings themselves
//! are m6-text's, so a key agrees with the text the filter and tokenizer produce.

use m6_text::{for_each_nfkc, is_nfkc_inert_han, t2s_char};

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
            m6_text::opencc::preload();
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
        let c = if self.fold_traditional { t2s_char(c) } else { c };
        if c.is_uppercase() {
            // Some lower-case forms carry a combining mark (İ → i + U+0307), which a key
            // drops like any other mark, so keying a key gives the key back.
            out.extend(c.to_lowercase().filter(|l| l.is_alphanumeric()));
        } else {
            out.push(c);
        }
    }

    /// Appends the normalised characters of `text` to `out` (cleared first).
    pub fn normalize_into(&self, text: &str, out: &mut Vec<char>) {
        out.clear();
        // The filter and tokenizer convert OpenCC phrases (一目瞭然 → 一目了然) before
        // characters; a text holding one (rare) is converted whole, after NFKC as the
        // tokenizer does, and not folded again, so a phrase that keeps a character (乾坤)
        // keys as the converted text reads. Everything else takes the per-character path.
        if self.fold_traditional && m6_text::has_phrase(text) {
            let mut nfkc = String::with_capacity(text.len());
            m6_text::nfkc_into(text, &mut nfkc);
            Normalizer { fold_traditional: false }.fold_into(&m6_text::t2s(&nfkc), out);
        } else {
            self.fold_into(text, out);
        }
    }

    fn fold_into(&self, text: &str, out: &mut Vec<char>) {
        // Han ideographs (less the compatibility ones) are NFKC-stable starters that
        // compose with nothing, so NFKC of the whole text equals NFKC of the runs between
        // them: ideographs (most of a Chinese text) skip the normaliser and the Unicode
        // property lookups entirely.
        let mut run = None;
        for (i, c) in text.char_indices() {
            let ideograph = is_nfkc_inert_han(c);
            if ideograph || is_dropped_separator(c) {
                if let Some(s) = run.take() {
                    self.push_run(&text[s..i], out);
                }
                if ideograph {
                    out.push(if self.fold_traditional { t2s_char(c) } else { c });
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
        for_each_nfkc(run, |c| self.push(c, out));
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
    use unicode_normalization::UnicodeNormalization;

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
        let pool: Vec<char> = "國学文㑮〇\u{20000}ＡＢｃ１，。、！？：；（）《》「」“”—…·　e\u{301}\u{308}\u{338}<=\u{1100}\u{1161}\u{11A8}\u{F900}\u{FA0A}ﬁ①㍿ｶﾞ\u{3099}かa. \t\n"
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
