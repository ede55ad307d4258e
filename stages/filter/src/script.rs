//! Character classes and script-statistics language identification.
//! Chinese web text mixes scripts freely, so identification works on the share of
//! letters each script contributes rather than on a trained classifier.

/// A Han ideograph: the workspace's one definition, in m6-text.
pub use m6_text::is_han;

/// Hiragana, katakana (full and half width).
pub fn is_kana(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9D)
}

/// Latin letters, including full-width ones and Latin-1/Extended-A letters.
pub fn is_latin(c: char) -> bool {
    c.is_ascii_alphabetic()
        || matches!(c as u32, 0xFF21..=0xFF3A | 0xFF41..=0xFF5A | 0x00C0..=0x024F) && c.is_alphabetic()
}

/// Punctuation a normal Chinese or English sentence uses (ASCII, CJK and full-width forms).
/// The CJK symbols block also holds letters and numbers — 〇 (a Han character, see
/// [`is_han`]), the iteration mark 々, Hangzhou numerals — which are not punctuation:
/// `一〇〇〇〇` must not lose a 〇 to punctuation-run collapsing.
pub fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32, 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 | 0x2010..=0x2027 | 0x2030..=0x205E | 0x00B7 | 0xFE30..=0xFE4F)
            && !c.is_alphanumeric()
}

/// Anything that is not a letter, digit, whitespace or ordinary punctuation: emoji,
/// box drawing, arrows, private-use characters, control characters.
pub fn is_symbol(c: char) -> bool {
    !(c.is_alphanumeric() || c.is_whitespace() || is_punct(c))
}

/// A language the identifier can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
    Other,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            "other" => Some(Lang::Other),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
            Lang::Other => "other",
        }
    }
}

/// Share of letters per language: `zh` = Han ideographs, `en` = Latin letters, `other`
/// = every other script. Text with a fair amount of kana is Japanese, so its Han
/// characters count as `other` too. Each share is in [0, 1]; all zero for text
/// without letters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LangScores {
    pub zh: f64,
    pub en: f64,
    pub other: f64,
}

/// Japanese prose has well over this share of kana among its letters; Chinese has none
/// (the odd の in a shop name stays far below it).
const KANA_SHARE_JAPANESE: f64 = 0.10;

impl LangScores {
    pub fn of(text: &str) -> Self {
        let (mut han, mut latin, mut kana, mut other) = (0u64, 0u64, 0u64, 0u64);
        for c in text.chars() {
            if is_han(c) {
                han += 1;
            } else if is_latin(c) {
                latin += 1;
            } else if is_kana(c) {
                kana += 1;
            } else if c.is_alphabetic() {
                other += 1;
            }
        }
        let letters = (han + latin + kana + other) as f64;
        if letters == 0.0 {
            return LangScores::default();
        }
        if kana as f64 / letters >= KANA_SHARE_JAPANESE {
            other += han;
            han = 0;
        }
        LangScores { zh: han as f64 / letters, en: latin as f64 / letters, other: (kana + other) as f64 / letters }
    }

    pub fn score(&self, l: Lang) -> f64 {
        match l {
            Lang::Zh => self.zh,
            Lang::En => self.en,
            Lang::Other => self.other,
        }
    }

    /// The language with the largest share (`other` for text without letters).
    pub fn best(&self) -> Lang {
        if self.zh == 0.0 && self.en == 0.0 {
            return Lang::Other;
        }
        if self.zh >= self.en && self.zh >= self.other {
            Lang::Zh
        } else if self.en >= self.other {
            Lang::En
        } else {
            Lang::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_scripts() {
        assert_eq!(LangScores::of("床前明月光，疑是地上霜。").best(), Lang::Zh);
        assert_eq!(LangScores::of("The quick brown fox jumps over the lazy dog.").best(), Lang::En);
        assert_eq!(LangScores::of("Съешь же ещё этих мягких французских булок").best(), Lang::Other);
        // Japanese: kanji plus kana is not Chinese.
        let ja = LangScores::of("吾輩は猫である。名前はまだ無い。");
        assert_eq!(ja.best(), Lang::Other, "{ja:?}");
        assert_eq!(LangScores::of("12345 !!!").best(), Lang::Other);
        let mixed = LangScores::of("使用 apt-get install 安装软件包");
        assert!(mixed.zh > 0.3 && mixed.en > 0.3, "{mixed:?}");
    }
}
