//! Property tests: every normalisation the text crate offers is idempotent — folding
//! folded text changes nothing — so a stage that re-normalises another stage's output
//! (the tokenizer after the filter, dedup keys of filtered text) gets the same answer.

use m6_text::{half_width, nfkc_into, t2s, t2s_char, t2s_chars, to_half_width};
use proptest::prelude::*;

/// Characters where the foldings bite: traditional characters (a chain 薴 → 苧 → 苎,
/// phrase parts, rare ones like 㑮), full-width forms, compatibility characters NFKC
/// rewrites, combining marks, case pairs, whitespace.
const POOL: &str = "國學經典㑮薴苧乾坤一目瞭然不可貲計覆蓋後髮發麵乾隆皇帝著作樂ＡＢｃｚ０１２９，。！？（）　ﬁ①㍿ｶﾞ\u{3099}\u{F900}\u{FA0A}\u{2F800}e\u{301}\u{308}İKΩẞ\u{1100}\u{1161}\u{11A8}aZ5 \n\t-.";

fn text() -> impl Strategy<Value = String> {
    let pool: Vec<char> = POOL.chars().collect();
    // OpenCC phrase keys as whole pieces, so phrase matches (and matches across the
    // seams of converted text) actually happen.
    let phrases: Vec<String> = include_str!("../data/opencc/TSPhrases.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split_once('\t').map(|(k, _)| k.to_string()))
        .collect();
    let piece = prop_oneof![
        3 => proptest::sample::select(pool).prop_map(String::from),
        1 => proptest::sample::select(phrases),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn chars(s: &str) -> String {
    let mut o = String::new();
    t2s_chars(s, &mut o);
    o
}
fn nfkc(s: &str) -> String {
    let mut o = String::new();
    nfkc_into(s, &mut o);
    o
}
fn width(s: &str) -> String {
    let mut o = String::new();
    to_half_width(s, &mut o);
    o
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn t2s_chars_is_idempotent(s in text()) {
        let once = chars(&s);
        prop_assert_eq!(chars(&once), once);
    }

    #[test]
    fn t2s_phrases_is_idempotent(s in text()) {
        let once = t2s(&s);
        prop_assert_eq!(t2s(&once), once);
    }

    #[test]
    fn nfkc_is_idempotent(s in text()) {
        let once = nfkc(&s);
        prop_assert_eq!(nfkc(&once), once);
    }

    #[test]
    fn width_is_idempotent(s in text(), alnum: bool, punct: bool) {
        let once = width(&s);
        prop_assert_eq!(width(&once), once);
        let one: String = s.chars().map(|c| half_width(c, alnum, punct)).collect();
        let two: String = one.chars().map(|c| half_width(c, alnum, punct)).collect();
        prop_assert_eq!(two, one);
    }

    /// The chain the tokenizer runs (NFKC, width, t2s) is idempotent as a whole too.
    #[test]
    fn tokenizer_chain_is_idempotent(s in text()) {
        let f = |x: &str| chars(&width(&nfkc(x)));
        let once = f(&s);
        prop_assert_eq!(f(&once), once);
    }

    #[test]
    fn t2s_char_agrees_with_t2s_chars(c: char) {
        prop_assert_eq!(chars(&c.to_string()), t2s_char(c).to_string());
    }
}
