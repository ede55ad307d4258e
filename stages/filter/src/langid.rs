//! Document language identification: the `whatlang` crate's trigram models (69
//! languages, compiled into the binary, ~1 MB) with three documented rules on top for
//! the Chinese web.
//!
//! Why whatlang and not lingua: measured once on this 2-core machine (Nov 2026), a
//! probe binary with lingua 1.8 restricted to Chinese, English and Japanese took 137 s
//! to build from scratch and is 7.9 MB; on the handbook's 4,408 zh-CN/ja-JP/en-US
//! paragraphs it scored 1.000 / 0.999 / 1.000 at 9.2 MB per CPU-second, where
//! `m6corpus quality lang` (whatlang over 69 languages + these rules) scored
//! 1.000 / 0.999 / 0.991 at 8.0 MB per CPU-second including process start. The three
//! lingua models alone made a 7.9 MB binary, so all 75 would add on the order of 150 MB
//! (an extrapolation, not measured), and restricting lingua to a few languages makes it
//! call every other language one of them; whatlang covers 69 in about 1 MB.
//! (whatlang is pinned to 0.16.0: 0.16.4 turns on hashbrown 0.14's default features,
//! which rebuilds arrow and datafusion.)
//!
//! The rules:
//!
//! 1. **Mixed Chinese–English text.** whatlang picks the script with the most
//!    *characters*, so a Chinese technical paragraph quoting commands (`apt-get install
//!    ...`) often comes out as a Latin-script language. A Han character carries about
//!    a word, so here Han/kana/hangul characters are weighed against Latin *words*:
//!    when the CJK characters are at least as many as the Latin words, the text is CJK.
//! 2. **Japanese.** Japanese prose writes its grammar in kana: when kana are at least
//!    [`KANA_SHARE_JAPANESE`] of the Han + kana characters the text is `ja`, else
//!    Han text is Chinese (a stray の in a shop name stays far below the share).
//! 3. **Cantonese.** Written Cantonese uses characters that standard written Chinese
//!    does not (嘅 咗 佢 喺 冇 嘢 啲 嚟 ...: [`CANTONESE_MARKERS`]). Chinese text with at
//!    least [`CANTONESE_MIN_HITS`] of them that are at least [`CANTONESE_MIN_SHARE`] of
//!    its Han characters is `yue`. (係 is left out: it also spells 關係 in traditional
//!    Mandarin text.)
//!
//! Codes are ISO 639-1 where one exists (`zh`, `en`, `ja`, `ko`, `fr`, ...), `yue` for
//! Cantonese, whatlang's ISO 639-3 code otherwise, and `und` for text without letters.
//! The confidence is whatlang's when its answer stands, and for the CJK rules the share
//! of the text's weight (CJK characters + Latin words + other words) in CJK script.
//! Only the first [`MAX_CHARS`] characters are read: the language of a document is
//! settled long before, and the cost stays bounded.

use crate::script::{is_han, is_kana, is_latin};

/// Characters read per document.
pub const MAX_CHARS: usize = 2000;
/// Kana share (of Han + kana) from which Han text is Japanese.
pub const KANA_SHARE_JAPANESE: f64 = 0.10;
/// Characters of written Cantonese that standard written Chinese does not use.
pub const CANTONESE_MARKERS: &[char] = &['嘅', '咗', '佢', '喺', '冇', '嘢', '啲', '嚟', '咩', '嗰', '噉', '乜', '嘞', '喎', '啱', '揾', '搵', '攞', '畀', '冚', '瞓', '嬲', '攰', '睇', '咪', '哋'];
pub const CANTONESE_MIN_HITS: usize = 2;
pub const CANTONESE_MIN_SHARE: f64 = 0.01;

fn is_hangul(c: char) -> bool {
    matches!(c as u32, 0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F)
}

/// The script family a decision was made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Han, kana or hangul.
    Cjk,
    Latin,
    Other,
    /// No letters.
    None,
}

/// A language decision.
#[derive(Debug, Clone, PartialEq)]
pub struct LangId {
    pub lang: &'static str,
    pub score: f32,
    pub script: Script,
}

/// The script family a language code is written in (as far as the filter needs it:
/// whether two languages compete within one script).
pub fn script_of(code: &str) -> Script {
    match code {
        "zh" | "yue" | "ja" | "ko" => Script::Cjk,
        "und" => Script::None,
        c => match whatlang::Lang::all().iter().find(|l| iso1(l.code()) == c) {
            Some(l) if LATIN.contains(&l.code()) => Script::Latin,
            Some(_) => Script::Other,
            None => Script::Other,
        },
    }
}

/// whatlang's languages written in Latin script.
const LATIN: &[&str] = &[
    "eng", "fra", "deu", "spa", "por", "ita", "nld", "pol", "tur", "vie", "ind", "ces", "swe", "dan", "fin", "hun", "ron", "hrv", "slk", "slv", "cat", "nob", "lit",
    "lav", "est", "epo", "afr", "aka", "aze", "ceb", "hat", "hau", "ibo", "ilo", "jav", "kin", "kur", "mlg", "nno", "nya", "orm", "run", "sna", "som", "sot",
    "swa", "tgl", "tuk", "uzb", "xho", "yor", "zul", "lat", "tsn", "tso", "wol", "msa", "bos",
];

/// ISO 639-1 for whatlang's languages that have one.
fn iso1(code: &'static str) -> &'static str {
    match code {
        "cmn" => "zh",
        "eng" => "en",
        "jpn" => "ja",
        "kor" => "ko",
        "fra" => "fr",
        "deu" => "de",
        "spa" => "es",
        "por" => "pt",
        "ita" => "it",
        "rus" => "ru",
        "ukr" => "uk",
        "nld" => "nl",
        "pol" => "pl",
        "tur" => "tr",
        "vie" => "vi",
        "ind" => "id",
        "ara" | "arb" => "ar",
        "hin" => "hi",
        "tha" => "th",
        "ces" => "cs",
        "swe" => "sv",
        "dan" => "da",
        "fin" => "fi",
        "ell" => "el",
        "heb" => "he",
        "hun" => "hu",
        "ron" => "ro",
        "bul" => "bg",
        "hrv" => "hr",
        "srp" => "sr",
        "slk" => "sk",
        "slv" => "sl",
        "cat" => "ca",
        "pes" | "per" => "fa",
        "nob" => "nb",
        "lit" => "lt",
        "lav" => "lv",
        "est" => "et",
        "epo" => "eo",
        "mkd" => "mk",
        "bel" => "be",
        other => other,
    }
}

/// Every code [`identify`] can return (for config validation).
pub fn known(code: &str) -> bool {
    matches!(code, "zh" | "yue" | "ja" | "ko" | "und") || whatlang::Lang::all().iter().any(|l| iso1(l.code()) == code)
}

/// Identifies the language of `text`.
pub fn identify(text: &str) -> LangId {
    let head = match text.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    };
    let (mut han, mut kana, mut hangul, mut latin_words, mut other_words, mut cantonese) = (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut in_latin, mut in_other) = (false, false);
    for c in head.chars() {
        let latin = is_latin(c);
        let other = !latin && c.is_alphabetic() && !is_han(c) && !is_kana(c) && !is_hangul(c);
        if latin && !in_latin {
            latin_words += 1;
        }
        if other && !in_other {
            other_words += 1;
        }
        (in_latin, in_other) = (latin, other);
        if is_han(c) {
            han += 1;
            cantonese += CANTONESE_MARKERS.contains(&c) as usize;
        } else if is_kana(c) {
            kana += 1;
        } else if is_hangul(c) {
            hangul += 1;
        }
    }
    let cjk = han + kana + hangul;
    let weight = (cjk + latin_words + other_words) as f32;
    if weight == 0.0 {
        return LangId { lang: "und", score: 0.0, script: Script::None };
    }
    if cjk > 0 && cjk >= latin_words && cjk >= other_words {
        let share = cjk as f32 / weight;
        let lang = if hangul > han + kana {
            "ko"
        } else if kana as f64 >= KANA_SHARE_JAPANESE * (han + kana) as f64 {
            "ja"
        } else if cantonese >= CANTONESE_MIN_HITS && cantonese as f64 >= CANTONESE_MIN_SHARE * han as f64 {
            "yue"
        } else {
            "zh"
        };
        return LangId { lang, score: share, script: Script::Cjk };
    }
    match whatlang::detect(head) {
        Some(info) => {
            let script = if info.script() == whatlang::Script::Latin { Script::Latin } else { Script::Other };
            LangId { lang: iso1(info.lang().code()), score: info.confidence() as f32, script }
        }
        None => LangId { lang: "und", score: 0.0, script: Script::None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_on_top_of_the_model() {
        assert_eq!(identify("床前明月光，疑是地上霜。").lang, "zh");
        // Mostly Latin letters by count, but eight Han words against four Latin ones.
        assert_eq!(identify("使用 apt-get install 命令安装软件包").lang, "zh");
        assert_eq!(identify("吾輩は猫である。名前はまだ無い。").lang, "ja");
        assert_eq!(identify("我哋今日去咗飲茶，佢話好好食。").lang, "yue");
        // One marker alone is not enough.
        assert_eq!(identify("咪表停车场在大厦的东面，收费每小时十元。").lang, "zh");
        assert_eq!(identify("12345 !!!").lang, "und");
        assert_eq!(identify("The package manager keeps track of the software installed on the system and of the files each package owns.").lang, "en");
        assert_eq!(identify("Съешь же ещё этих мягких французских булок, да выпей чаю.").lang, "ru");
        assert!(known("zh") && known("en") && known("yue") && known("ru") && !known("xx"));
        assert_eq!((script_of("en"), script_of("fr"), script_of("ru"), script_of("yue")), (Script::Latin, Script::Latin, Script::Other, Script::Cjk));
    }
}
