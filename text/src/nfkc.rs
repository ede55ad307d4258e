//! Unicode NFKC (compatibility composition: ligatures, circled digits, full-width forms
//! and compatibility ideographs become their plain equivalents). Most web text already
//! is NFKC, so both forms run the quick check first and skip the composing iterator.

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Appends the NFKC form of `text` to `out`.
pub fn nfkc_into(text: &str, out: &mut String) {
    if is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        out.push_str(text);
    } else {
        out.extend(text.nfkc());
    }
}

/// Calls `f` with each character of the NFKC form of `text` (no string is built).
#[inline]
pub fn for_each_nfkc(text: &str, mut f: impl FnMut(char)) {
    if is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        text.chars().for_each(f);
    } else {
        for c in text.nfkc() {
            f(c);
        }
    }
}
