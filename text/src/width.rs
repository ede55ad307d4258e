//! Full-width → half-width folding: the full-width ASCII block (U+FF01..U+FF5E) and the
//! ideographic space. NFKC does this too; this is for text that must keep everything
//! else NFKC would change, and for the filter, which folds letters and digits but
//! leaves full-width punctuation (the norm in Chinese typesetting) unless asked.

/// The half-width form of `c`: full-width letters and digits (and U+3000 → space) when
/// `alnum`, full-width punctuation when `punct`; every other character as it is.
#[inline]
pub fn half_width(c: char, alnum: bool, punct: bool) -> char {
    let u = c as u32;
    if u == 0x3000 {
        return if alnum { ' ' } else { c };
    }
    if (0xFF01..=0xFF5E).contains(&u) {
        let h = char::from_u32(u - 0xFEE0).unwrap_or(c);
        let fold = if h.is_ascii_alphanumeric() { alnum } else { punct };
        return if fold { h } else { c };
    }
    c
}

/// Appends `text` with every full-width ASCII character and U+3000 folded to `out`.
pub fn to_half_width(text: &str, out: &mut String) {
    if !text.chars().any(|c| matches!(c, '\u{FF01}'..='\u{FF5E}' | '\u{3000}')) {
        out.push_str(text);
        return;
    }
    out.extend(text.chars().map(|c| half_width(c, true, true)));
}
