//! Every stage's normalisation path gives one answer for the same string: extract's
//! whitespace joining, dedup's key, the filter's kept text and the tokenizer's input all
//! fold traditional characters, full-width forms and compatibility characters the same
//! way, because they all use m6-text. Before m6-text, dedup and the filter folded 912
//! characters such as `㑮` with an older OpenCC table than the tokenizer, the tokenizer
//! ignored OpenCC's phrases, and so a document's dedup key, its filtered text and its
//! tokens disagreed.

use m6_stage_dedup::normalize::Normalizer;
use m6_stage_filter::pii::PiiConfig;
use m6_stage_filter::NormalizeConfig;
use m6_tokenizer::normalizer::{NormalizerConfig, Sequence};
use proptest::prelude::*;

/// (input, what the tokenizer's pre-normalisation gives, what the filter keeps). The
/// filter runs no NFKC and keeps full-width punctuation, so its text differs from the
/// tokenizer's exactly there; the tokenizer must give the same answer on either.
const CASES: &[(&str, &str, &str)] = &[
    // One of the 912: OpenCC's t2s keeps it (its simplified form is a tofu-risk
    // Extension-B character); dedup and the filter used to fold it to 𫝈.
    ("㑮", "㑮", "㑮"),
    ("㒓㓄𠉂", "㒓㓄𠉂", "㒓㓄𠉂"),
    // Full-width letters and digits, ideographic space.
    ("ＡＢＣ１２３ｘｙｚ", "ABC123xyz", "ABC123xyz"),
    ("软件包　ａｐｔ", "软件包 apt", "软件包 apt"),
    // Mixed traditional text (a real line of 李白《將進酒》 and Debian handbook words).
    ("君不見黃河之水天上來，奔流到海不復回。", "君不见黄河之水天上来,奔流到海不复回。", "君不见黄河之水天上来，奔流到海不复回。"),
    ("軟體套件與相依性：ＡＰＴ", "软体套件与相依性:APT", "软体套件与相依性：APT"),
    // A phrase entry (瞭 → 了 only here) and a phrase that keeps a character (乾 in 乾坤,
    // which the character table alone would turn into 干).
    ("一目瞭然", "一目了然", "一目了然"),
    ("乾坤", "乾坤", "乾坤"),
    // A chain in OpenCC's table (薴 → 苧 → 苎) ends where a second pass would.
    ("薴麻", "苎麻", "苎麻"),
    // A compatibility ideograph: NFKC (tokenizer, dedup) makes it 豈, then 岂; the
    // filter, which runs no NFKC, leaves it for the tokenizer.
    ("\u{F900}", "岂", "\u{F900}"),
    // NFKC makes a phrase: U+FA0A is a compatibility 見, and 見覆 is an OpenCC phrase
    // (覆 alone stays 覆): dedup looks for phrases after NFKC (found by the property
    // test below, as was 瞭ﾞ然, where dropping the mark makes the phrase 瞭然).
    ("\u{FA0A}覆", "见复", "\u{FA0A}覆"),
];

/// Dropping separators can make a phrase: the key of 瞭ﾞ然 / 瞭 然 is the key of 瞭然.
#[test]
fn dedup_keys_look_for_phrases_after_dropping_separators() {
    for s in ["瞭\u{FF9E}然", "瞭 然", "瞭，然", "瞭然"] {
        assert_eq!(key(s), "了然", "{s:?}");
        assert_eq!(key(&key(s)), key(s));
    }
}

fn tokenizer() -> Sequence {
    Sequence::from_config(&NormalizerConfig { traditional_to_simplified: true, ..Default::default() })
}

fn filter() -> NormalizeConfig {
    // PII placeholders are the filter's own business (no other stage has them).
    NormalizeConfig { t2s: true, pii: PiiConfig::all(false), ..Default::default() }
}

fn key(text: &str) -> String {
    Normalizer::new(true).normalize(text)
}

/// The key of text that is already simplified: no folding at all.
fn key_unfolded(text: &str) -> String {
    Normalizer::new(false).normalize(text)
}

fn extract(text: &str) -> String {
    m6_stage_extract::html::normalize(text)
}

#[test]
fn every_stage_folds_the_same() {
    let (tok, fil) = (tokenizer(), filter());
    for &(input, want_tok, want_filter) in CASES {
        assert_eq!(tok.apply(input), want_tok, "tokenizer on {input:?}");
        assert_eq!(fil.apply(input), want_filter, "filter on {input:?}");
        // The tokenizer reads the filter's output (and extract's): same tokens.
        assert_eq!(tok.apply(&fil.apply(input)), want_tok, "tokenizer after filter on {input:?}");
        assert_eq!(tok.apply(&extract(input)), want_tok, "tokenizer after extract on {input:?}");
        // Dedup's key of the input is the key of the simplified text, and every later
        // stage's output keys the same (so --against an earlier, filtered run still finds it).
        let k = key(input);
        assert_eq!(k, key_unfolded(want_tok), "dedup key of {input:?}");
        assert_eq!(key(want_filter), k, "dedup key of the filter's text for {input:?}");
        assert_eq!(key(&fil.apply(input)), k, "dedup key after filter on {input:?}");
        assert_eq!(key(&tok.apply(input)), k, "dedup key after tokenizer on {input:?}");
        assert_eq!(key(&extract(input)), k, "dedup key after extract on {input:?}");
    }
}

/// Extract joins a line break between two CJK characters with the same predicate the
/// others use, so a traditional text broken across source lines normalises like the
/// unbroken one everywhere.
#[test]
fn extract_joins_lines_with_the_shared_predicate() {
    let (tok, fil) = (tokenizer(), filter());
    for (broken, whole) in [("國學\n經典", "國學經典"), ("㑮\n國", "㑮國"), ("軟體，\nＡＰＴ", "軟體，ＡＰＴ"), ("\u{20000}\n〇", "\u{20000}〇")] {
        assert_eq!(extract(broken), whole);
        assert_eq!(tok.apply(&extract(broken)), tok.apply(whole));
        assert_eq!(fil.apply(&extract(broken)), fil.apply(whole));
        assert_eq!(key(&extract(broken)), key(whole));
    }
    // Latin words on two lines stay two words.
    assert_eq!(extract("apt\nget"), "apt get");
}

/// Characters where the foldings bite, and OpenCC phrase keys as whole pieces.
fn text() -> impl Strategy<Value = String> {
    let pool: Vec<char> = "國學經典㑮㒓薴苧乾坤隆一目瞭然不可貲計覆蓋後髮發麵著樂軟體ＡＢｃｚ０１２９　ﬁ①㍿ｶﾞ\u{F900}\u{FA0A}\u{2F800}\u{20000}e\u{301}İKΩaZ5 \n".chars().collect();
    let piece = prop_oneof![
        4 => proptest::sample::select(pool).prop_map(String::from),
        1 => proptest::sample::select(vec!["一目瞭然", "乾坤", "不可貲計", "覆蓋", "乾隆"]).prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..20).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Re-normalising another stage's output changes nothing the next stage sees.
    /// Found by this test and fixed: NFKC making a phrase (U+FA0A 覆), dropped marks
    /// joining one (瞭ﾞ然), overlapping phrases (發覆信), ｶ + line break + ﾞ.
    #[test]
    fn stages_agree_on_random_text(s in text()) {
        let (tok, fil) = (tokenizer(), filter());
        let t = tok.apply(&s);
        prop_assert_eq!(tok.apply(&t), t.clone());
        prop_assert_eq!(tok.apply(&fil.apply(&s)).split_whitespace().collect::<String>(), t.split_whitespace().collect::<String>());
        let k = key(&s);
        prop_assert_eq!(key(&k), k.clone());
        prop_assert_eq!(key(&t), k.clone());
        prop_assert_eq!(key(&fil.apply(&s)), k);
        // Extract runs first and may join lines (so 見\n覆蓋 becomes 見覆蓋, where the
        // phrase 見覆 applies): later stages see its output, and extracting it again
        // changes nothing.
        let e = extract(&s);
        prop_assert_eq!(extract(&e), e.clone());
        prop_assert_eq!(key(&tok.apply(&e)), key(&e));
        prop_assert_eq!(key(&fil.apply(&e)), key(&e));
    }
}
