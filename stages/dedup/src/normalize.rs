//! Text normalisation shared by exact and near-duplicate detection: NFKC (which also
//! folds full-width forms to half-width), lower case, optional traditional→simplified
//! folding, and dropping whitespace, punctuation and symbols. The foldings themselves
//! are m6-text's, so a key agrees with the text the filter and tokenizer produce.

use m6_text::{for_each_nfkc, is_nfkc_inert_han, t2s_char};

fn nfkc(text: &str) -> String {
    let mut n = String::with_capacity(text.len());
    m6_text::nfkc_into(text, &mut n);
    n
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
            m6_text::opencc::preload();
        }
        Normalizer { fold_traditional }
    }

    #[inline]
    fn push(&self, c: char, t2s: bool, out: &mut Vec<char>) {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            }
            return;
        }
        if !c.is_alphanumeric() {
            return; // whitespace, punctuation, symbols, emoji
        }
        let c = if t2s { t2s_char(c) } else { c };
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
        let mut utf8 = String::new();
        self.normalize_both(text, out, &mut utf8);
    }

    /// [`Normalizer::normalize_into`], also leaving the normalised text as UTF-8 in
    /// `utf8` (cleared first): the signer hashes it, and the phrase check below needs it
    /// anyway, so it is built once into a reused buffer.
    pub fn normalize_both(&self, text: &str, out: &mut Vec<char>, utf8: &mut String) {
        out.clear();
        utf8.clear();
        if !self.fold_traditional {
            self.fold_into(text, false, out);
            utf8.extend(out.iter());
            return;
        }
        // Traditional → simplified is OpenCC's t2s (phrases, then characters) on the text
        // after NFKC — what the tokenizer converts — so a text the tokenizer or filter
        // converted keys as the original. Nearly every text holds no phrase and folds
        // character by character in the fast path; NFKC can make a phrase (U+FA0A is a
        // compatibility 見, and 見覆 a phrase), so such texts are looked at after NFKC.
        let phrased = if m6_text::has_phrase(text) {
            Some(nfkc(text))
        } else if text.chars().any(m6_text::nfkc_may_give_han) {
            Some(nfkc(text)).filter(|n| m6_text::has_phrase(n))
        } else {
            None
        };
        match phrased {
            // Not folded again: a phrase may keep a character on purpose (乾坤's 乾).
            Some(n) => self.fold_into(&m6_text::t2s(&n), false, out),
            None => self.fold_into(text, true, out),
        }
        utf8.extend(out.iter());
        // Dropping separators can join a phrase (瞭 然 → 瞭然 → 了然): converting the
        // key's own characters once more makes the key of a key the key itself.
        if m6_text::has_phrase(utf8) {
            *utf8 = m6_text::t2s(utf8);
            out.clear();
            out.extend(utf8.chars());
        }
    }

    /// NFKC, lower case, separators dropped, and characters folded when `t2s`.
    fn fold_into(&self, text: &str, t2s: bool, out: &mut Vec<char>) {
        // Han ideographs (less the compatibility ones) are NFKC-stable starters that
        // compose with nothing, so NFKC of the whole text equals NFKC of the runs between
        // them: ideographs (most of a Chinese text) skip the normaliser and the Unicode
        // property lookups entirely.
        let mut run = None;
        for (i, c) in text.char_indices() {
            let ideograph = is_nfkc_inert_han(c);
            if ideograph || is_dropped_separator(c) {
                if let Some(s) = run.take() {
                    self.push_run(&text[s..i], t2s, out);
                }
                if ideograph {
                    out.push(if t2s { t2s_char(c) } else { c });
                }
            } else if run.is_none() {
                run = Some(i);
            }
        }
        if let Some(s) = run {
            self.push_run(&text[s..], t2s, out);
        }
    }

    fn push_run(&self, run: &str, t2s: bool, out: &mut Vec<char>) {
        for_each_nfkc(run, |c| self.push(c, t2s, out));
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
                n.push(c, n.fold_traditional, &mut out);
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
                n.fold_into(&t, n.fold_traditional, &mut fast);
                assert_eq!(fast, reference(&n, &t), "{t:?}");
            }
        }
    }
}
