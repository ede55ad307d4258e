//! The one jieba segmenter: its embedded dictionary takes ~0.2 s and tens of MB to load,
//! so dedup's word shingles, the filter's word rules, the quality classifier and every
//! tokenizer without a user dictionary share this instance.

use std::sync::OnceLock;

pub use jieba_rs::Jieba;

/// The shared segmenter with jieba's embedded dictionary (loaded on first use).
pub fn jieba() -> &'static Jieba {
    static J: OnceLock<Jieba> = OnceLock::new();
    J.get_or_init(Jieba::new)
}

/// jieba-rs 0.7's block class (`RE_HAN_DEFAULT`): the characters jieba segments as one
/// run — CJK ideographs (unified, extensions up to F, compatibility), ASCII letters and
/// digits, and `+#&._%-`. jieba cuts each run on its own, so a prefix that ends where a
/// run ends segments as it would inside the whole text. It is jieba's class, not a
/// definition of Han (see [`crate::is_han`]), and must follow jieba-rs.
pub fn in_jieba_block(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2A6DF | 0x2A700..=0x2EBEF | 0x2F800..=0x2FA1F)
        || c.is_ascii_alphanumeric()
        || "+#&._%-".contains(c)
}
